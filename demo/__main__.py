"""The repository's demo: one AMI from config exported as VMDK and VHD, tagged.

``scripts/demo`` runs it end to end against the local emulator; against AWS,
set ``imageId`` and ``bucket`` and run ``pulumi up`` at the repository root.
"""

import pulumi

from export_image_provider import ImageExport

config = pulumi.Config()
image_id = config.require("imageId")
bucket = config.require("bucket")

for fmt in ("VMDK", "VHD"):
    export = ImageExport(
        f"demo-{fmt.lower()}",
        image_id=image_id,
        disk_image_format=fmt,
        s3_bucket=bucket,
        s3_prefix="demo/",
        description=f"export-image-provider demo: {image_id} as {fmt}",
        tags={"purpose": "demo", "format": fmt},
    )
    pulumi.export(f"{fmt.lower()}TaskId", export.export_image_task_id)
    pulumi.export(f"{fmt.lower()}Status", export.status)
    pulumi.export(f"{fmt.lower()}Uri", export.s3_uri)
