"""The export backend's view of the rest of emulated AWS, read from moto's backends.

moto keeps AMIs, buckets and roles; this module answers the prerequisite
questions of ExportImage from them (is the AMI exportable, does the service role
exist, trust VM Import/Export with its external id and allow what an export
does -- evaluated with moto's IAM policy engine --, is the bucket usable) and
writes the exported object into moto's S3 backend. In the ``caller_policy``
mode it also checks the caller's iam:PassRole on the service role. It also keeps the two facts about AMIs that moto
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
from moto.iam.access_control import IAMPolicy, PermissionResult, create_access_key
from moto.iam.models import iam_backends
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

from .models import AMI_ID_RE, UNSETTLED_ERROR_CODES, ExportError, ExportRequest
from .unsettled import ROLE_PERMISSIONS, SERVICE_EXTERNAL_ID

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
        role = self._check_role(account_id, region, request)
        self._check_bucket(account_id, region, request.s3_bucket)
        self._check_role_permissions(role, request)

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

    def _check_role(self, account_id: str, region: str, request: ExportRequest) -> Any:
        """The role must exist and let vmie.amazonaws.com assume it with its external id."""
        role_name = request.role_name or "vmimport"
        iam = iam_backends[account_id][get_partition(region)]
        role = next((r for r in iam.roles.values() if r.name == role_name), None)
        if role is None or not trusts_vmie(_policy_json(role.assume_role_policy_document)):
            raise ExportError("InvalidParameter", _role_refusal(role_name))
        return role

    def _check_role_permissions(self, role: Any, request: ExportRequest) -> None:
        """The role's policies must allow what an export does to the bucket and the snapshots."""
        policies = [*role.policies.values(), *role.managed_policies.values()]
        key = f"{request.s3_prefix or ''}export-ami-00000000000000000.{request.disk_image_format.lower()}"
        arns = {"bucket": f"arn:aws:s3:::{request.s3_bucket}", "object": f"arn:aws:s3:::{request.s3_bucket}/{key}",
                "*": "*"}
        for action, kind in ROLE_PERMISSIONS:
            if not allowed(policies, action, arns[kind]):
                raise ExportError("InvalidParameter", _role_refusal(role.name))

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


def _role_refusal(role_name: str) -> str:
    return f"The service role {role_name} provided does not exist or does not have sufficient permissions"


def _policy_json(document: Any) -> dict[str, Any]:
    if isinstance(document, str):
        from urllib.parse import unquote

        return json.loads(unquote(document))
    return dict(document)


def allowed(policies: Iterable[Any], action: str, resource: str, conditions: dict[str, str] | None = None) -> bool:
    """IAM's rule, by moto's policy engine: some statement allows, none denies."""
    permitted = False
    for policy in policies:
        result = IAMPolicy(policy).is_action_permitted(action, resource, None, conditions)
        if result == PermissionResult.DENIED:
            return False
        permitted = permitted or result == PermissionResult.PERMITTED
    return permitted


def trusts_vmie(trust: dict[str, Any]) -> bool:
    """Does the trust policy let vmie.amazonaws.com assume the role, presenting sts:ExternalId vmimport?"""
    statements = trust.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        services = (statement.get("Principal") or {}).get("Service") or []
        actions = statement.get("Action") or []
        if statement.get("Effect") != "Allow" or VMIE_PRINCIPAL not in (
                [services] if isinstance(services, str) else services):
            continue
        if "sts:AssumeRole" not in ([actions] if isinstance(actions, str) else actions):
            continue
        if _external_id_matches(statement.get("Condition") or {}):
            return True
    return False


def _external_id_matches(conditions: dict[str, Any]) -> bool:
    from fnmatch import fnmatchcase

    for operator, pairs in conditions.items():
        for key, values in pairs.items():
            if key.lower() != "sts:externalid":
                continue  # other condition keys: taken as met (unsettled.SERVICE_EXTERNAL_ID)
            values = [values] if isinstance(values, str) else values
            if operator.startswith("StringLike"):
                ok = any(fnmatchcase(SERVICE_EXTERNAL_ID, v) for v in values)
            else:
                ok = operator.startswith("StringEquals") and SERVICE_EXTERNAL_ID in values
            if not ok:
                return False
    return True


def check_pass_role(response: Any, role_name: str) -> None:
    """caller_policy mode: the caller needs iam:PassRole on the service role, passed to vmie.amazonaws.com."""
    access_key = response.headers.get("Authorization", "").partition("Credential=")[2].partition("/")[0]
    partition = get_partition(response.region)
    try:
        caller = create_access_key(account_id=response.current_account, partition=partition,
                                   access_key_id=access_key, headers=response.headers)
    except Exception:  # noqa: BLE001 - moto refused the request before we could get here otherwise
        return
    role_arn = f"arn:{partition}:iam::{response.current_account}:role/{role_name}"
    if not allowed(caller.collect_policies(), "iam:PassRole", role_arn, {"iam:PassedToService": VMIE_PRINCIPAL}):
        raise ExportError("UnauthorizedOperation", f"You are not authorized to perform this operation. User: "
                          f"{caller.arn} is not authorized to perform: iam:PassRole on resource: {role_arn}", 403)
