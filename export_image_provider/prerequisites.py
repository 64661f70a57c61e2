"""VmImportRole: the ``vmimport`` service role that ExportImage needs, as a component.

ExportImage does not write to S3 with the caller's credentials: the VM
Import/Export service (``vmie.amazonaws.com``) assumes a service role -- by
default one named ``vmimport`` -- and copies the image into the bucket with that
role. Without it, or without the bucket in its policy, the export fails at once
with ``InvalidParameter: The service role vmimport provided does not exist or
does not have sufficient permissions``. This module creates that role with the
trust policy and permissions exactly as the VM Import/Export User Guide
documents them ("Required service role"), so a program can set up everything an
export needs in the same stack.

This module needs ``pulumi-aws`` (the ``export-image-provider[aws]`` extra).
``export_image_provider/__init__.py`` does not import it, so programs that only
use :class:`~export_image_provider.ImageExport` (and the dynamic-provider
process) never load ``pulumi_aws``::

    from export_image_provider.prerequisites import VmImportRole
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Optional

import pulumi

try:
    import pulumi_aws as aws
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "export_image_provider.prerequisites needs pulumi-aws: "
        "pip install 'export-image-provider[aws]' (or pulumi-aws)"
    ) from exc

TYPE_TOKEN = "export-image-provider:index:VmImportRole"
DEFAULT_ROLE_NAME = "vmimport"
"""ExportImage's ``RoleName`` defaults to this name, so a role with it needs no ``role_name`` on exports."""

VMIE_SERVICE_PRINCIPAL = "vmie.amazonaws.com"
EXTERNAL_ID = "vmimport"
"""AWS documents the condition as ``"sts:Externalid": "vmimport"`` whatever the role's name."""

BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:GetBucketAcl")
EC2_ACTIONS = ("ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:Describe*")


def trust_policy() -> dict[str, Any]:
    """The role's trust policy: only VM Import/Export may assume it, and only with the external id ``vmimport``.

    The external id condition is what AWS documents; it keeps the role from being
    assumed on behalf of anything but VM Import/Export requests.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": VMIE_SERVICE_PRINCIPAL},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:Externalid": EXTERNAL_ID}},
            }
        ],
    }


def permissions_policy(buckets: Sequence[str]) -> dict[str, Any]:
    """The role's permissions: the documented S3 actions on each export bucket, and the EC2 actions on ``*``.

    The S3 actions are granted on the bucket itself (location, ACL, listing) and
    on its objects (``bucket/*``: the image is written there); nothing outside
    the named buckets. The EC2 actions are the ones AWS lists for the role; they
    support no resource-level restriction that the service documents, hence ``*``.
    """
    if not buckets:
        raise ValueError("VmImportRole needs at least one bucket")
    resources: list[str] = []
    for bucket in buckets:
        resources += [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": list(BUCKET_ACTIONS), "Resource": resources},
            {"Effect": "Allow", "Action": list(EC2_ACTIONS), "Resource": "*"},
        ],
    }


class VmImportRole(pulumi.ComponentResource):
    """The VM Import/Export service role (``vmimport``) with access to the given export buckets.

    Children: an ``aws.iam.Role`` named ``role_name`` (default ``vmimport``;
    ExportImage looks the role up by name, so no random suffix is added) and an
    inline ``aws.iam.RolePolicy`` with the permissions. ``role_name`` is an
    output that resolves only after *both* exist, so an ``ImageExport`` that
    takes ``role_name=vm_import_role.role_name`` waits for the policy too and
    never starts an export with a role that cannot yet write to the bucket.

    A role name is global to the account: only one stack per account can own the
    ``vmimport`` role. Stacks that share an account pass a different
    ``role_name`` here and the same one to their exports.
    """

    role_name: pulumi.Output[str]
    """The role's name, for ``ImageExport(role_name=...)``; depends on the role and its policy."""
    role_arn: pulumi.Output[str]
    """The role's ARN (for ``iam:PassRole`` grants to whoever runs the exports)."""

    def __init__(
        self,
        resource_name: str,
        buckets: pulumi.Input[Sequence[pulumi.Input[str]]],
        role_name: Optional[pulumi.Input[str]] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        """Create the role.

        :param buckets: names (not ARNs) of the buckets exports write to; at least one.
        :param role_name: the role's name; ``vmimport`` (ExportImage's default) when omitted.
        """
        super().__init__(TYPE_TOKEN, resource_name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{resource_name}-role",
            name=role_name if role_name is not None else DEFAULT_ROLE_NAME,
            description="VM Import/Export service role: lets vmie.amazonaws.com write exported images to S3",
            assume_role_policy=json.dumps(trust_policy()),
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{resource_name}-policy",
            role=role.name,
            policy=pulumi.Output.from_input(buckets).apply(lambda names: json.dumps(permissions_policy(names))),
            opts=child,
        )
        # Output.all carries the dependencies of both: consumers of role_name wait for the policy.
        self.role_name = pulumi.Output.all(role.name, policy.id).apply(lambda values: values[0])
        self.role_arn = role.arn
        self.register_outputs({"role_name": self.role_name, "role_arn": self.role_arn})
