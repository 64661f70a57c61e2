"""The program the image-export workflow deploys: exports of one AMI, all from stack config.

Config (in the committed ``Pulumi.<stack>.yaml``, so a pull request that
changes the AMI or the formats shows the replacement in its preview):

- ``imageId`` (required): the AMI to export.
- ``bucket`` (required): the export bucket.
- ``prefix`` (``pipeline/``): S3 key prefix.
- ``formats`` (``["VMDK"]``): any of VMDK, VHD, RAW.
- ``roleName`` (``vmimport``): the VM Import/Export service role.
- ``tags`` (``{}``): extra tags for the export tasks.
"""

import pulumi

from export_image_provider import ImageExport

config = pulumi.Config()
image_id = config.require("imageId")
formats = config.get_object("formats") or ["VMDK"]
tags = {"pulumi-stack": pulumi.get_stack(), **(config.get_object("tags") or {})}

for fmt in formats:
    export = ImageExport(
        f"image-{fmt.lower()}",
        image_id=image_id,
        disk_image_format=fmt,
        s3_bucket=config.require("bucket"),
        s3_prefix=config.get("prefix") or "pipeline/",
        role_name=config.get("roleName"),
        tags=tags,
    )
    pulumi.export(f"{fmt.lower()}TaskId", export.export_image_task_id)
    pulumi.export(f"{fmt.lower()}Uri", export.s3_uri)
