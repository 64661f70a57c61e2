"""The export backend's view of the rest of emulated AWS, read from moto's backends.

moto keeps AMIs, buckets and roles; this module answers the prerequisite
questions of ExportImage from them (is the AMI exportable, does the service role
exist and trust VM Import/Export, is the bucket usable) and writes the exported
object into moto's S3 backend. It also keeps the two facts about AMIs that moto
drops -- encrypted source snapshots and inherited product codes -- in a
weak-keyed table beside moto's ``Ami`` objects, so they vanish with the AMI.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from moto.ec2.models import ec2_backends
from moto.iam.models import iam_backends
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

from .models import AMI_ID_RE, UNSETTLED_ERROR_CODES, ExportError, ExportRequest

VMIE_PRINCIPAL = "vmie.amazonaws.com"


@dataclass(frozen=True)
class ImageTraits:
    encrypted: bool = False
    product_codes: frozenset[str] = frozenset()


_TRAITS: weakref.WeakKeyDictionary[Any, ImageTraits] = weakref.WeakKeyDictionary()


def traits_of(ami: Any) -> ImageTraits:
    return _TRAITS.get(ami, ImageTraits())


def record_registered_image(ec2_backend: Any, image_id: str, snapshot_ids: Iterable[str]) -> None:
    """RegisterImage from snapshots: the AMI is encrypted if any snapshot is."""
    ami = ec2_backend.amis[image_id]
    encrypted = any(ec2_backend.get_snapshot(sid).encrypted for sid in snapshot_ids)
    _TRAITS[ami] = ImageTraits(encrypted=encrypted)


def record_created_image(ec2_backend: Any, image_id: str) -> None:
    """CreateImage from an instance: inherit encryption and product codes as AWS does."""
    ami = ec2_backend.amis[image_id]
    instance = getattr(ami, "instance", None)
    if instance is None:
        return
    encrypted = False
    for _device, block in instance.get_block_device_mapping:
        volume = ec2_backend.volumes.get(block.volume_id)
        encrypted = encrypted or bool(volume is not None and volume.encrypted)
    codes: set[str] = set(instance.product_codes or ())
    source = ec2_backend.amis.get(instance.image_id)
    if source is not None:
        codes |= set(source.product_codes) | traits_of(source).product_codes
        encrypted = encrypted or traits_of(source).encrypted
    _TRAITS[ami] = ImageTraits(encrypted=encrypted, product_codes=frozenset(codes))


class MotoWorld:
    """``models.World`` on moto: one process, moto's module-level backends."""

    def check_exportable(self, account_id: str, region: str, request: ExportRequest) -> None:
        self._check_image(account_id, region, request.image_id)
        self._check_role(account_id, region, request.role_name or "vmimport")
        self._check_bucket(account_id, region, request.s3_bucket)

    def _check_image(self, account_id: str, region: str, image_id: str) -> None:
        if not AMI_ID_RE.match(image_id):
            raise ExportError("InvalidAMIID.Malformed", f'Invalid id: "{image_id}" (expecting "ami-...")')
        ami = ec2_backends[account_id][region].amis.get(image_id)
        if ami is None:
            raise ExportError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
        if ami.state != "available":
            raise ExportError("InvalidAMIID.Unavailable", f"Image {image_id} is not in the available state")
        traits = traits_of(ami)
        if set(ami.product_codes) | traits.product_codes or (ami.platform or "").lower() == "windows":
            msg = f"The image {image_id} contains AWS Marketplace or third-party licensed software and is not exportable"
            raise ExportError("NotExportable", msg)
        if ami.owner_id != account_id:
            msg = f"The image {image_id} is shared from another account and cannot be exported"
            raise ExportError(UNSETTLED_ERROR_CODES["ami_not_owned"], msg)
        if traits.encrypted or getattr(ami.ebs_snapshot, "encrypted", False):
            msg = f"The image {image_id} has encrypted EBS snapshots; encrypted images cannot be exported"
            raise ExportError("InvalidParameter", msg)

    def _check_role(self, account_id: str, region: str, role_name: str) -> None:
        """The role must exist and trust vmie.amazonaws.com; its policies are not evaluated."""
        iam = iam_backends[account_id][get_partition(region)]
        role = next((r for r in iam.roles.values() if r.name == role_name), None)
        if role is None or VMIE_PRINCIPAL not in _policy_text(role.assume_role_policy_document):
            msg = f"The service role {role_name} provided does not exist or does not have sufficient permissions"
            raise ExportError("InvalidParameter", msg)

    def _check_bucket(self, account_id: str, region: str, name: str) -> None:
        codes = UNSETTLED_ERROR_CODES
        bucket = s3_backends[account_id][get_partition(region)].buckets.get(name)
        if bucket is None:
            raise ExportError(codes["bucket_missing"], f"The given S3 bucket ({name}) does not exist")
        if bucket.region_name != region:
            msg = f"The S3 bucket {name} is in {bucket.region_name}; it must be in the same Region ({region})"
            raise ExportError(codes["bucket_other_region"], msg)
        if "aws:kms" in json.dumps(bucket.encryption or {}):
            msg = f"The S3 bucket {name} uses SSE-KMS default encryption, which VM Import/Export does not support"
            raise ExportError(codes["bucket_kms"], msg)

    def put_object(self, account_id: str, region: str, bucket: str, key: str, body: bytes) -> None:
        """Write the image as S3 writes any new object: a new version if the bucket versions, under its default retention."""
        backend = s3_backends[account_id][get_partition(region)]
        target = backend.get_bucket(bucket)
        lock = {}
        if target.has_default_lock:
            lock = {"lock_mode": target.default_lock_mode, "lock_until": target.default_retention()}
        backend.put_object(bucket, key, body, **lock)


def _policy_text(document: Any) -> str:
    if isinstance(document, str):
        from urllib.parse import unquote

        return unquote(document)
    return json.dumps(document)
