"""Everything an export needs, in one stack: the bucket, the vmimport role, the export.

The bucket is an ``aws.s3.Bucket`` (pulumi-aws 7's non-deprecated bucket; it
gets S3's default SSE-S3 encryption, which ExportImage accepts -- SSE-KMS it
does not). The role comes from :class:`VmImportRole`. The export takes the
bucket's name and the component's ``role_name`` as inputs, so Pulumi creates
it only after the bucket, the role and the role's policy exist: no
``depends_on`` is needed.

Config: imageId (required); format (VMDK), roleName (vmimport).

``program()`` is called when Pulumi runs this file as ``__main__``; the unit
test (tests/test_prerequisites.py) imports the file and calls it under mocks.
"""

import pulumi
import pulumi_aws as aws

from export_image_provider import ImageExport
from export_image_provider.prerequisites import VmImportRole


def program() -> dict[str, pulumi.Output]:
    config = pulumi.Config()

    bucket = aws.s3.Bucket(
        "exports",
        # The bucket exists only for this stack's exports. `pulumi destroy`
        # deletes each exported image, but VM Import/Export can leave a small
        # write-verification object next to it; force_destroy lets the bucket go
        # anyway. Drop it if the bucket may hold anything else.
        force_destroy=True,
    )
    role = VmImportRole(
        "vmimport",
        buckets=[bucket.bucket],
        role_name=config.get("roleName") or "vmimport",
    )
    export = ImageExport(
        "image",
        image_id=config.require("imageId"),
        disk_image_format=config.get("format") or "VMDK",
        s3_bucket=bucket.bucket,
        s3_prefix="exports/",
        role_name=role.role_name,
        tags={"stack": pulumi.get_stack()},
    )

    outputs = {
        "bucket": bucket.bucket,
        "roleArn": role.role_arn,
        "exportImageTaskId": export.export_image_task_id,
        "s3Uri": export.s3_uri,
    }
    for name, value in outputs.items():
        pulumi.export(name, value)
    return {"bucket": bucket, "role": role, "export": export}


if __name__ == "__main__":
    program()
