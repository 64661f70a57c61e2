"""Orders of operations through the real Pulumi CLI: forced replacement, and two backends' stacks of one name.

``test_lifecycle_orders.py`` pins these against the provider directly; here the
engine itself decides the order (create-before-delete, or delete-before-replace
when the provider's diff asks for it), so a change in how Pulumi reads the diff
shows up. The CLI is built from upstream's Go module; the Python language host
beside it is this project's own (see the README's "Installing the Pulumi CLI").
"""

from __future__ import annotations


import pytest

from pulumi_cli import PulumiProject
from reliability_report import PROJECT_YAML
from test_cli_lifecycle import all_tasks, export_bucket, objects, outputs_of, seeded, tag_dict  # noqa: F401
from export_image_provider.ownership import CLAIM_TAG, STACK_TAG

PROGRAM = """\
import pulumi

from export_image_provider import ImageExport

config = pulumi.Config()
export = ImageExport("image", image_id=config.require("imageId"), disk_image_format="VMDK",
                     s3_bucket=config.require("bucket"), s3_prefix="orders/",
                     wait_for_completion=config.get_bool("wait") is not False)
pulumi.export("taskId", export.export_image_task_id)
"""


def project_in(tmp_path, emulator, seeded, bucket, **config):  # noqa: F811 - fixture imported above
    project = PulumiProject(tmp_path, emulator.url, files={
        "Pulumi.yaml": PROJECT_YAML.format(name="export-image-orders"), "__main__.py": PROGRAM})
    project.stack_init(imageId=seeded["image_id"], bucket=bucket, **config)
    return project


def fresh_emulator(emulator, export_seconds):
    """No tasks, exports of ``export_seconds``, and a fresh export bucket (returned)."""
    emulator.reset()
    emulator.set_config(export_seconds=export_seconds)
    return export_bucket(emulator)


def statuses(emulator):
    return {t["ExportImageTaskId"]: t["Status"] for t in all_tasks(emulator)}


def up_replace(project):
    """``pulumi up --replace`` of the ImageExport named ``image``."""
    [urn] = [r["urn"] for r in project.stack_export()["deployment"]["resources"] if r["urn"].endswith("::image")]
    return project.up("--replace", urn)


def test_up_replace_keeps_the_new_image_and_removes_the_old(emulator, seeded, tmp_path):  # noqa: F811
    bucket = fresh_emulator(emulator, export_seconds=0.5)
    project = project_in(tmp_path, emulator, seeded, bucket)
    try:
        project.up()
        old = outputs_of(project)["image"]
        up_replace(project)
        new = outputs_of(project)["image"]
        assert new["export_image_task_id"] != old["export_image_task_id"]
        assert objects(emulator, bucket) == {new["s3_key"]}, "the new image is kept, the old one deleted"
        project.refresh("--expect-no-changes")
        assert outputs_of(project)["image"]["export_image_task_id"] == new["export_image_task_id"]
    finally:
        project.teardown()


def test_up_replace_of_a_running_export_cancels_it_before_starting_the_next(emulator, seeded, tmp_path):  # noqa: F811
    """The engine never asks Diff for ``up --replace``: the create cancels the running export it replaces."""
    bucket = fresh_emulator(emulator, export_seconds=600)
    project = project_in(tmp_path, emulator, seeded, bucket, wait="false")
    try:
        project.up()
        old = outputs_of(project)["image"]
        assert old["status"] == "active"
        result = up_replace(project)
        assert "waiting for a free export slot" not in result.stdout + result.stderr
        new = outputs_of(project)["image"]
        found = statuses(emulator)
        assert found[old["export_image_task_id"]] in ("deleting", "deleted")
        assert found[new["export_image_task_id"]] == "active"
    finally:
        project.teardown()


def test_same_named_stacks_in_two_backends_keep_their_own_tasks(emulator, seeded, tmp_path):  # noqa: F811
    bucket = fresh_emulator(emulator, export_seconds=0.5)
    mine = project_in(tmp_path / "mine", emulator, seeded, bucket)
    theirs = project_in(tmp_path / "theirs", emulator, seeded, bucket)
    try:
        mine.up()
        theirs.up()
        a, b = outputs_of(mine)["image"], outputs_of(theirs)["image"]
        assert a["export_image_task_id"] != b["export_image_task_id"]
        tags = {t["ExportImageTaskId"]: tag_dict(t) for t in all_tasks(emulator)}
        assert tags[a["export_image_task_id"]][STACK_TAG] != tags[b["export_image_task_id"]][STACK_TAG]
        assert all(CLAIM_TAG in tags[o["export_image_task_id"]] for o in (a, b))
        theirs.destroy()
        assert objects(emulator, bucket) == {a["s3_key"]}, "their destroy leaves my image"
    finally:
        theirs.teardown()
        mine.teardown()


PARTIAL_PROGRAM = """\
import pulumi

from export_image_provider import ImageExport

config = pulumi.Config()
if config.get_bool("keep") is not False:
    ImageExport("image", image_id=config.require("imageId"), disk_image_format="VMDK",
                s3_bucket=config.require("bucket"), s3_prefix="partial/",
                timeout_minutes=float(config.get("timeout") or 10))
"""


@pytest.mark.parametrize("then", ["up", "remove"])
def test_an_interrupted_create_leaves_its_task_in_state(then, emulator, seeded, tmp_path):  # noqa: F811
    """A timed-out create is partial state: the next up waits for the same task; removal cancels it (defect 6)."""
    bucket = fresh_emulator(emulator, export_seconds=8)
    project = PulumiProject(tmp_path, emulator.url, files={
        "Pulumi.yaml": PROJECT_YAML.format(name="export-image-partial"), "__main__.py": PARTIAL_PROGRAM})
    project.stack_init(imageId=seeded["image_id"], bucket=bucket, timeout="0.01")
    try:
        failed = project.up(check=False)
        assert failed.code != 0 and "left running" in failed.stdout + failed.stderr
        [entry] = project.resources().values()
        [started] = all_tasks(emulator)
        assert entry["id"] == started["ExportImageTaskId"] and entry.get("initErrors"), entry
        assert CLAIM_TAG in tag_dict(started)
        if then == "up":
            project.config_set("timeout", "10")
            project.up()
            out = outputs_of(project)["image"]
            assert out["export_image_task_id"] == entry["id"] and out["status"] == "completed"
            assert [t["ExportImageTaskId"] for t in all_tasks(emulator)] == [entry["id"]]
            assert objects(emulator, bucket) == {out["s3_key"]}
        else:
            project.config_set("keep", "false")
            project.up()
            assert project.resources() == {}
            assert statuses(emulator)[entry["id"]] in ("deleting", "deleted"), "the removed resource's task is cancelled"
    finally:
        project.teardown()
