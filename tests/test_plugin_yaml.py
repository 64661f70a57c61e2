"""The provider plugin through the CLI: a Pulumi YAML program (examples/yaml) against the emulator.

The same lifecycle steps as tests/test_cli_lifecycle.py runs on the dynamic
resource (its helpers, reused: create, a no-change preview and up, a tag edit in
place, a format change that replaces, refresh after the image was deleted out of
band, destroy), then what only a real plugin can do: ``pulumi import`` of a task
started with boto3 outside Pulumi, adopted by the next ``up`` without a
replacement; a create past ``customTimeouts.create`` that leaves the task in the
state (partial state) for the next ``up`` to wait for; and Ctrl-C. The CLI
finds ``pulumi-resource-export-image`` on PATH (the venv's console script) and the
YAML language host that scripts/test installs (``scripts/install-pulumi --yaml``).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass

import pytest

from conftest import wait_until
from pulumi_cli import EXAMPLES, PLUGIN_TYPE, REGION, PulumiProject, kill_session, plugin_path, session_processes
from reliability_report import diagnostics, output_of, provider_errors, task_records
from test_cli_lifecycle import (  # noqa: F401 - seeded is a fixture
    OrderedSteps,
    all_tasks,
    assert_exported,
    export_bucket,
    objects,
    outputs_of,
    seeded,
    tag_dict,
    task,
)

from export_image_provider.ownership import CLAIM_TAG, RESOURCE_TAG, STACK_TAG

EXPORT_SECONDS = 0.5
SLOW_EXPORT_SECONDS = 600.0
ACCESS_KEY = "AKIAPLUGINYAMLTEST01"
SECRET_KEY = "plugin-yaml-secret-key-never-in-state"
TAGS_LINE = "        project: ${pulumi.project}\n"


def yaml_project(tmp, emulator, seeded, bucket: str) -> PulumiProject:
    """examples/yaml in ``tmp``, one stack, with the provider's region and credentials (secrets) in its config."""
    project = PulumiProject(tmp, emulator.url, source=EXAMPLES / "yaml", extra_env={"PATH": plugin_path()})
    project.resource_type = PLUGIN_TYPE
    project.stack_init(imageId=seeded["image_id"], bucket=bucket)
    project.config_set("export-image:region", REGION)
    project.run("config", "set", "--secret", "export-image:accessKey", ACCESS_KEY)
    project.run("config", "set", "--secret", "export-image:secretKey", SECRET_KEY)
    return project


def provider_state(project: PulumiProject) -> dict:
    [provider] = project.resources("pulumi:providers:export-image").values()
    return provider


@dataclass
class YamlStack(OrderedSteps):
    project: PulumiProject
    bucket: str


@pytest.fixture(scope="class")
def yaml_stack(emulator, seeded, tmp_path_factory):
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    project = yaml_project(tmp_path_factory.mktemp("plugin-yaml"), emulator, seeded, bucket)
    yield YamlStack(project=project, bucket=bucket)
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    project.teardown()
    emulator.reset()


class TestYamlLifecycle:
    def test_up_exports_with_the_config_credentials_kept_secret(self, yaml_stack, emulator):
        project = yaml_stack.project
        emulator.reset_calls()
        result = project.up()
        assert "started export task" in output_of(result)
        outs = assert_exported(emulator, project, yaml_stack.bucket, ["image"])["image"]
        assert project.stack_outputs() == {"exportImageTaskId": outs["export_image_task_id"], "status": "completed",
                                           "s3Uri": outs["s3_uri"], "s3ObjectSize": outs["s3_object_size"]}
        tags = tag_dict(task(emulator, outs["export_image_task_id"]))
        assert tags[RESOURCE_TAG] == project.resource_key("image") and CLAIM_TAG in tags
        assert tags[STACK_TAG] == provider_state(project)["inputs"]["stackIdentity"], "drawn in CheckConfig"
        exports = [c for c in emulator.call_detail() if c["action"] == "ExportImage"]
        assert exports and {c["access_key"] for c in exports} == {ACCESS_KEY}, "the provider config's credentials"
        state_files = "".join(p.read_text() for p in (project.tmp / "state").rglob("*.json"))
        assert SECRET_KEY not in state_files and ACCESS_KEY not in state_files
        assert SECRET_KEY not in json.dumps(project.stack_export())
        yaml_stack.done.add("up")

    def test_up_right_after_up_changes_nothing(self, yaml_stack):
        yaml_stack.after("up")
        yaml_stack.project.preview("--expect-no-changes")
        yaml_stack.project.up("--expect-no-changes")

    def test_tag_edit_is_an_update_in_place(self, yaml_stack, emulator):
        yaml_stack.after("up")
        project = yaml_stack.project
        before = outputs_of(project)["image"]
        project.edit("Pulumi.yaml", TAGS_LINE, TAGS_LINE + "        team: qa\n")
        assert project.planned_ops()["image"] == "update"
        project.up()
        after = project.resources()["image"]
        assert after["id"] == before["export_image_task_id"], "a tag edit must not start a new export"
        tags = tag_dict(task(emulator, after["id"]))
        assert tags["team"] == "qa" and tags[RESOURCE_TAG] == project.resource_key("image")
        assert after["outputs"]["tags"] == {"project": "export-image-yaml", "team": "qa"}
        project.preview("--expect-no-changes")

    def test_format_change_is_a_replacement(self, yaml_stack, emulator):
        yaml_stack.after("up")
        project = yaml_stack.project
        before = outputs_of(project)["image"]
        project.config_set("format", "VHD")
        assert project.planned_ops()["image"] == "replace"
        project.up()
        after = assert_exported(emulator, project, yaml_stack.bucket, ["image"])["image"]
        assert after["export_image_task_id"] != before["export_image_task_id"]
        assert after["disk_image_format"] == "VHD" and after["s3_key"].endswith(".vhd")
        present = objects(emulator, yaml_stack.bucket)
        assert before["s3_key"] not in present and after["s3_key"] in present

    def test_refresh_changes_nothing_then_drops_an_export_deleted_out_of_band(self, yaml_stack, emulator):
        yaml_stack.after("up")
        project = yaml_stack.project
        project.refresh("--expect-no-changes")
        before = outputs_of(project)["image"]
        emulator.client("s3").delete_object(Bucket=yaml_stack.bucket, Key=before["s3_key"])
        project.refresh()
        assert outputs_of(project) == {}
        project.up()
        recreated = assert_exported(emulator, project, yaml_stack.bucket, ["image"])["image"]
        assert recreated["export_image_task_id"] != before["export_image_task_id"]

    def test_destroy_leaves_no_object_and_no_active_task(self, yaml_stack, emulator):
        yaml_stack.after("up")
        project = yaml_stack.project
        project.destroy()
        assert project.resources() == {}
        assert objects(emulator, yaml_stack.bucket) == set()
        assert [t["ExportImageTaskId"] for t in all_tasks(emulator) if t["Status"] == "active"] == []


def test_import_adopts_a_task_started_outside_pulumi_without_replacing_it(emulator, seeded, tmp_path):
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    outside = emulator.client("ec2").export_image(
        ImageId=seeded["image_id"], DiskImageFormat="VMDK", RoleName="vmimport",
        S3ExportLocation={"S3Bucket": bucket, "S3Prefix": "exports/"},
        TagSpecifications=[{"ResourceType": "export-image-task",
                            "Tags": [{"Key": "project", "Value": "export-image-yaml"}]}],
    )["ExportImageTaskId"]
    wait_until(lambda: task(emulator, outside)["Status"] == "completed", 30, "the export started outside Pulumi")
    project = yaml_project(tmp_path, emulator, seeded, bucket)

    project.run("import", PLUGIN_TYPE, "image", outside, "--yes", "--generate-code=false")
    imported = project.resources()["image"]
    assert imported["id"] == outside
    assert imported["outputs"]["s3Key"] == f"exports/{outside}.vmdk" and imported["outputs"]["status"] == "completed"
    assert "imageId" not in imported["inputs"], "AWS's task records carry no AMI id: nothing to import"

    assert project.planned_ops()["image"] == "update", "adopted in place (identity tags), not replaced"
    project.up()
    adopted = assert_exported(emulator, project, bucket, ["image"])["image"]
    assert adopted["export_image_task_id"] == outside and adopted["image_id"] == seeded["image_id"]
    assert [t["ExportImageTaskId"] for t in all_tasks(emulator)] == [outside], "no export was started"
    tags = tag_dict(task(emulator, outside))
    assert tags[RESOURCE_TAG] == project.resource_key("image") and CLAIM_TAG in tags, "owned as a create owns it"
    project.preview("--expect-no-changes")
    project.destroy()
    assert objects(emulator, bucket) == set()


def test_create_past_custom_timeouts_leaves_the_task_in_state_for_the_next_up(emulator, seeded, tmp_path):
    emulator.reset()
    emulator.set_config(export_seconds=SLOW_EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    project = yaml_project(tmp_path, emulator, seeded, bucket)
    project.edit("Pulumi.yaml", "    type: export-image:index:ImageExport\n",
                 "    type: export-image:index:ImageExport\n    options:\n      customTimeouts:\n        create: 3s\n")
    failed = project.up(check=False)
    output = output_of(failed)
    assert failed.code != 0
    [record] = task_records(emulator)
    assert record["Status"] == "active"
    line = provider_errors(output)["image"]
    assert "after customTimeouts.create (3s)" in line and "Traceback" not in "\n".join(diagnostics(output)["image"])
    kept = project.resources()["image"]
    assert kept["id"] == record["ExportImageTaskId"] and kept.get("initErrors"), "partial state: the task id is kept"
    assert project.pending_operations() == []

    emulator.advance(SLOW_EXPORT_SECONDS)  # the export completes; the next up waits for the same task (Update)
    project.up()
    done = project.resources()["image"]
    assert done["id"] == record["ExportImageTaskId"] and done["outputs"]["status"] == "completed"
    assert not done.get("initErrors")
    assert len(task_records(emulator)) == 1, "no second export"


def test_ctrl_c_stops_the_wait_keeps_the_task_and_destroy_cancels_it(emulator, seeded, tmp_path):
    emulator.reset()
    emulator.set_config(export_seconds=SLOW_EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    project = yaml_project(tmp_path, emulator, seeded, bucket)
    proc = project.start("up", "--yes", "--skip-preview")
    try:
        [record] = wait_until(lambda: task_records(emulator), 60, "the export started")
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the CLI's process group
        interrupted = time.monotonic()
        proc.wait(timeout=60)
        returned = time.monotonic() - interrupted
    finally:
        kill_session(proc.pid)
    output = project.output_of(proc)
    assert proc.returncode != 0 and returned < 30, output
    assert "cancelled while waiting for export task" in provider_errors(output)["image"], output
    wait_until(lambda: not session_processes(proc.pid), 15, "every process of the run gone")
    kept = project.resources()["image"]
    assert kept["id"] == record["ExportImageTaskId"] and kept.get("initErrors")
    assert [t["Status"] for t in task_records(emulator)] == ["active"]

    project.destroy()  # removing the resource cancels its export
    [cancelled] = task_records(emulator)
    assert cancelled["Status"] in ("deleting", "deleted"), cancelled
    assert project.resources() == {}
