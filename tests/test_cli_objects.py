"""The image's outputs used downstream, destroy in a versioned bucket, retain_on_delete and refresh drift, through the CLI.

One stack (file backend) in a versioned bucket of the emulator, two exports:
``image`` (VMDK) and ``raw``, whose tags are computed from ``image``'s
``s3_object_size`` and ``s3_etag``. The steps run in file order and share the
stack; a step whose predecessor failed is skipped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from pulumi_cli import PulumiProject
from reliability_report import PROJECT_YAML
from test_cli_lifecycle import EXPORT_SECONDS, OrderedSteps, outputs_of, seeded, tag_dict, task  # noqa: F401
from test_object_outputs import versions

PROGRAM = """\
import pulumi

from export_image_provider import ImageExport

config = pulumi.Config()
common = {"image_id": config.require("imageId"), "s3_bucket": config.require("bucket")}
keep = pulumi.ResourceOptions(retain_on_delete=config.get_bool("keepImage") or False)
image = ImageExport("image", disk_image_format="VMDK", s3_prefix="vmdk/", opts=keep, **common)
# Downstream: the second export is tagged with the first image's size and ETag.
raw = ImageExport("raw", disk_image_format="RAW", s3_prefix="raw/", **common,
                  tags={"vmdk-etag": image.s3_etag, "vmdk-bytes": image.s3_object_size.apply(str)})
pulumi.export("size", image.s3_object_size)
pulumi.export("etag", image.s3_etag)
pulumi.export("version", image.s3_version_id)
"""


@dataclass
class Stack(OrderedSteps):
    project: PulumiProject
    bucket: str
    retained_task: str = ""
    retained: tuple = ()


@pytest.fixture(scope="module")
def stack(emulator, seeded, tmp_path_factory):  # noqa: F811 - the fixture imported above
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = f"versioned-{uuid.uuid4().hex[:12]}"
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    project = PulumiProject(tmp_path_factory.mktemp("objects"), emulator.url,
                            files={"Pulumi.yaml": PROJECT_YAML.format(name="export-image-objects"),
                                   "__main__.py": PROGRAM})
    project.stack_init(imageId=seeded["image_id"], bucket=bucket)
    yield Stack(project, bucket)
    project.teardown()
    emulator.reset()


def test_up_outputs_the_image_and_a_downstream_resource_uses_them(stack, emulator):
    project = stack.project
    project.up()
    outs = outputs_of(project)
    found = emulator.client("s3").head_object(Bucket=stack.bucket, Key=outs["image"]["s3_key"])
    assert project.stack_outputs() == {
        "size": found["ContentLength"], "etag": found["ETag"].strip('"'), "version": found["VersionId"],
    }
    tags = tag_dict(task(emulator, outs["raw"]["export_image_task_id"]))
    assert tags["vmdk-etag"] == found["ETag"].strip('"') and tags["vmdk-bytes"] == str(found["ContentLength"])
    assert outs["raw"]["tags"] == {"vmdk-etag": tags["vmdk-etag"], "vmdk-bytes": tags["vmdk-bytes"]}
    project.preview("--expect-no-changes")
    stack.done.add("up")


def test_destroy_keeps_a_retained_image_and_leaves_nothing_of_the_other(stack, emulator):
    stack.after("up")
    project = stack.project
    before = outputs_of(project)
    project.config_set("keepImage", "true")
    project.up()
    project.destroy()
    assert project.resources() == {}, "destroy forgets both resources"
    image, raw = before["image"], before["raw"]
    assert versions(emulator, stack.bucket, image["s3_key"]) == ([image["s3_version_id"]], [])
    assert versions(emulator, stack.bucket, raw["s3_key"]) == ([], []), "no version and no delete marker left"
    stack.retained_task = image["export_image_task_id"]
    stack.retained = (image["s3_key"], image["s3_version_id"])
    stack.done.add("destroy")


def test_refresh_notices_an_image_overwritten_out_of_band(stack, emulator):
    stack.after("destroy")
    project = stack.project
    retained = stack.retained_task
    project.up()
    before = outputs_of(project)
    assert before["image"]["export_image_task_id"] != retained, "a retained image is no longer this stack's"
    retained_key, retained_version = stack.retained
    assert retained_version in versions(emulator, stack.bucket, retained_key)[0], "and is never deleted by it"
    key = before["raw"]["s3_key"]
    emulator.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=b"not the export")
    result = project.refresh()
    assert f"raw: s3://{stack.bucket}/{key} was replaced out of band" in result.stdout + result.stderr
    assert sorted(outputs_of(project)) == ["image"]
