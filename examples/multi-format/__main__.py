"""One AMI exported three times, as VMDK, VHD and RAW, under one prefix, tagged.

AWS runs at most one export of an AMI at a time. The three resources are
declared independently anyway: the provider queues a create that AWS refuses
for that reason and starts it when the previous export finishes, so ``pulumi
up`` takes about three export durations. Nothing here works around that.

Config: imageId, bucket (required); prefix (multi-format/).
"""

import pulumi

from export_image_provider import ImageExport

config = pulumi.Config()
image_id = config.require("imageId")
bucket = config.require("bucket")
prefix = config.get("prefix") or "multi-format/"

exports = {
    fmt: ImageExport(
        f"image-{fmt.lower()}",
        image_id=image_id,
        disk_image_format=fmt,
        s3_bucket=bucket,
        s3_prefix=prefix,
        description=f"{image_id} as {fmt}",
        tags={
            "project": pulumi.get_project(),
            "stack": pulumi.get_stack(),
            "format": fmt,
        },
    )
    for fmt in ("VMDK", "VHD", "RAW")
}

for fmt, export in exports.items():
    pulumi.export(f"{fmt.lower()}Uri", export.s3_uri)
