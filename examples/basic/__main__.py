"""One AMI exported to S3: the smallest useful ImageExport program.

Config: imageId, bucket (required); format (VMDK), prefix (exports/).
"""

import pulumi

from export_image_provider import ImageExport

config = pulumi.Config()

export = ImageExport(
    "image",
    image_id=config.require("imageId"),
    disk_image_format=config.get("format") or "VMDK",
    s3_bucket=config.require("bucket"),
    s3_prefix=config.get("prefix") or "exports/",
)

pulumi.export("exportImageTaskId", export.export_image_task_id)
pulumi.export("status", export.status)
pulumi.export("s3Uri", export.s3_uri)
pulumi.export("s3ObjectSize", export.s3_object_size)
pulumi.export("s3Etag", export.s3_etag)
