"""The provider plugin through the CLI: Pulumi YAML programs (examples/yaml) against the emulator.

The lifecycle steps the dynamic resource goes through (create, a no-change
preview, a tag edit in place, a format change that replaces, refresh after the
image was deleted out of band, destroy, an ``up`` killed with SIGKILL and
resumed) run on examples/yaml in tests/test_cli_lifecycle.py (its ``yaml``
case). Here is what only a real plugin does: provider config (region,
credentials as secrets, the stack's identity drawn in CheckConfig); ``pulumi
import`` of a task started with boto3 outside Pulumi, adopted by the next
``up`` without a replacement; a create past ``customTimeouts.create`` that
leaves the task in the state (partial state) for the next ``up`` to wait for;
and Ctrl-C. The CLI finds ``pulumi-resource-export-image`` on PATH (the venv's
console script) and the YAML language host that scripts/test installs
(``scripts/install-pulumi --yaml``).
"""

from __future__ import annotations

import json
import os
import signal
import time

from conftest import wait_until
from pulumi_cli import EXAMPLES, PLUGIN_TYPE, REGION, PulumiProject, kill_session, plugin_project, session_processes
from reliability_report import diagnostics, output_of, provider_errors, task_records
from test_cli_lifecycle import (  # noqa: F401 - seeded is a fixture
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


def yaml_project(tmp, emulator, seeded, bucket: str) -> PulumiProject:
    """examples/yaml in ``tmp``, one stack, with the provider's region and credentials (secrets) in its config."""
    project = plugin_project(tmp, emulator.url, source=EXAMPLES / "yaml")
    project.stack_init(imageId=seeded["image_id"], bucket=bucket)
    project.config_set("export-image:region", REGION)
    project.run("config", "set", "--secret", "export-image:accessKey", ACCESS_KEY)
    project.run("config", "set", "--secret", "export-image:secretKey", SECRET_KEY)
    return project


def provider_state(project: PulumiProject) -> dict:
    [provider] = project.resources("pulumi:providers:export-image").values()
    return provider


def test_up_uses_the_provider_config_and_keeps_the_credentials_secret(emulator, seeded, tmp_path):
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    project = yaml_project(tmp_path, emulator, seeded, bucket)
    emulator.reset_calls()
    project.up()
    outs = assert_exported(emulator, project, bucket, ["image"])["image"]
    tags = tag_dict(task(emulator, outs["export_image_task_id"]))
    assert tags[STACK_TAG] == provider_state(project)["inputs"]["stackIdentity"], "drawn in CheckConfig, kept"
    exports = [c for c in emulator.call_detail() if c["action"] == "ExportImage"]
    assert exports and {c["access_key"] for c in exports} == {ACCESS_KEY}, "the provider config's credentials"
    state_files = "".join(p.read_text() for p in (project.tmp / "state").rglob("*.json"))
    assert SECRET_KEY not in state_files and ACCESS_KEY not in state_files
    assert SECRET_KEY not in json.dumps(project.stack_export())
    project.config_set("format", "RAW")  # a replacement keeps the stack's identity
    project.up()
    replaced = outputs_of(project)["image"]["export_image_task_id"]
    assert tag_dict(task(emulator, replaced))[STACK_TAG] == tags[STACK_TAG]
    project.destroy()
    assert objects(emulator, bucket) == set()


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
