"""N exports of N AMIs into one bucket, or the same number of no-op dynamic resources.

Config: ``kind`` (``export`` or ``noop``), ``images`` (JSON list of AMI ids),
``bucket``. The no-op provider is defined here, so it is pickled by value like a
typical inline dynamic provider: the baseline for the provider's own overhead.
"""

import json

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

from export_image_provider import ImageExport

config = pulumi.Config()
images = json.loads(config.require("images"))


class NoopProvider(ResourceProvider):
    def create(self, props):
        return CreateResult(props["image_id"], dict(props))

    def diff(self, _id, olds, news):
        return DiffResult(changes=any(olds.get(k) != v for k, v in news.items() if k != "__provider"))


class Noop(Resource):
    def __init__(self, name, props):
        super().__init__(NoopProvider(), name, props)


for i, image in enumerate(images):
    if config.require("kind") == "noop":
        Noop(f"noop-{i}", {"image_id": image, "s3_bucket": config.require("bucket")})
    else:
        ImageExport(f"export-{i}", image_id=image, disk_image_format="VMDK", s3_bucket=config.require("bucket"),
                    s3_prefix="bench/", tags={"benchmark": "yes"})
