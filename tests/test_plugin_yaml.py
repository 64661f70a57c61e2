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
import subprocess
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


def fresh_bucket(emulator, export_seconds: float) -> str:
    """No tasks of another test, exports taking ``export_seconds``, and an empty export bucket."""
    emulator.reset()
    emulator.set_config(export_seconds=export_seconds)
    return export_bucket(emulator)


def up_until_exporting(project: PulumiProject, emulator) -> tuple[subprocess.Popen, dict]:
    """``pulumi up`` in the background, once its export has started: the CLI and the task's record."""
    proc = project.start("up", "--yes", "--skip-preview")
    try:
        [record] = wait_until(lambda: task_records(emulator), 60, "the export started")
    except BaseException:
        kill_session(proc.pid)
        raise
    return proc, record


def provider_state(project: PulumiProject) -> dict:
    [provider] = project.resources("pulumi:providers:export-image").values()
    return provider


def test_up_uses_the_provider_config_and_keeps_the_credentials_secret(emulator, seeded, tmp_path):
    bucket = fresh_bucket(emulator, EXPORT_SECONDS)
    project = yaml_project(tmp_path, emulator, seeded, bucket)
    emulator.reset_calls()
    result = project.up()
    outs = assert_exported(emulator, project, bucket, ["image"])["image"]
    lines = diagnostics(output_of(result))["image"]  # on the resource's own row, not the stack's
    assert any(line.startswith("image: started export task") for line in lines), lines
    assert "__provider" not in json.dumps(project.resources()["image"]), "no pickled provider in the state"
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


def export_outside_pulumi(emulator, seeded, bucket: str) -> str:
    """An export started with boto3, as examples/yaml would describe it, once completed; its task id."""
    outside = emulator.client("ec2").export_image(
        ImageId=seeded["image_id"], DiskImageFormat="VMDK", RoleName="vmimport",
        S3ExportLocation={"S3Bucket": bucket, "S3Prefix": "exports/"},
        TagSpecifications=[{"ResourceType": "export-image-task",
                            "Tags": [{"Key": "project", "Value": "export-image-yaml"}]}],
    )["ExportImageTaskId"]
    wait_until(lambda: task(emulator, outside)["Status"] == "completed", 30, "the export started outside Pulumi")
    return outside


def test_import_adopts_a_task_started_outside_pulumi_without_replacing_it(emulator, seeded, tmp_path):
    bucket = fresh_bucket(emulator, EXPORT_SECONDS)
    outside = export_outside_pulumi(emulator, seeded, bucket)
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


def test_an_import_option_in_the_program_adopts_the_task_in_one_up(emulator, seeded, tmp_path):
    bucket = fresh_bucket(emulator, EXPORT_SECONDS)
    outside = export_outside_pulumi(emulator, seeded, bucket)
    project = yaml_project(tmp_path, emulator, seeded, bucket)
    project.edit("Pulumi.yaml", "    type: export-image:index:ImageExport\n",
                 f"    type: export-image:index:ImageExport\n    options:\n      import: {outside}\n")
    project.up()
    adopted = assert_exported(emulator, project, bucket, ["image"])["image"]
    assert adopted["export_image_task_id"] == outside and adopted["image_id"] == seeded["image_id"]
    assert [t["ExportImageTaskId"] for t in all_tasks(emulator)] == [outside], "no export was started"
    assert CLAIM_TAG in tag_dict(task(emulator, outside))
    project.preview("--expect-no-changes")


def test_create_past_custom_timeouts_leaves_the_task_in_state_for_the_next_up(emulator, seeded, tmp_path):
    bucket = fresh_bucket(emulator, SLOW_EXPORT_SECONDS)
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
    bucket = fresh_bucket(emulator, SLOW_EXPORT_SECONDS)
    project = yaml_project(tmp_path, emulator, seeded, bucket)
    proc, record = up_until_exporting(project, emulator)
    try:
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


CHAINED = """\
name: export-image-yaml-chained
runtime: yaml
config:
  imageId: {type: string}
  bucket: {type: string}
resources:
  first:
    type: export-image:index:ImageExport
    properties: {imageId: "${imageId}", diskImageFormat: VMDK, s3Bucket: "${bucket}", s3Prefix: first/}
  second:
    type: export-image:index:ImageExport
    properties:
      imageId: ${imageId}
      diskImageFormat: RAW
      s3Bucket: ${bucket}
      s3Prefix: after-${first.exportImageTaskId}/
      tags:
        source: ${first.exportImageTaskId}
outputs:
  secondKey: ${second.s3Key}
"""


def test_inputs_unknown_at_preview_pass_check_and_diff(emulator, seeded, tmp_path):
    bucket = fresh_bucket(emulator, EXPORT_SECONDS)
    project = plugin_project(tmp_path, emulator.url, files={"Pulumi.yaml": CHAINED})
    project.stack_init(imageId=seeded["image_id"], bucket=bucket)
    assert project.planned_ops() == {project.stack_resource_name(): "create", "first": "create", "second": "create"}
    project.up()
    outs = assert_exported(emulator, project, bucket, ["first", "second"])
    first = outs["first"]["export_image_task_id"]
    assert outs["second"]["s3_key"].startswith(f"after-{first}/") and outs["second"]["tags"] == {"source": first}
    project.preview("--expect-no-changes")
    project.destroy()


def test_a_refused_provider_config_key_fails_preview_with_its_one_line(emulator, seeded, tmp_path):
    project = yaml_project(tmp_path, emulator, seeded, "any-bucket")
    project.config_set("export-image:endpoints", '{"ec2": "http://127.0.0.1:1"}')
    result = project.preview(check=False)
    output = output_of(result)
    assert result.code != 0
    assert "export-image:endpoints: not supported by ImageExport: set AWS_ENDPOINT_URL_EC2" in output, output
    assert "Traceback" not in output


def plugin_processes(sid: int) -> list[int]:
    """The session's live ``pulumi-resource-export-image`` processes."""
    def is_plugin(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                return b"pulumi-resource-export-image" in cmdline.read()
        except OSError:
            return False

    return [pid for pid in session_processes(sid) if is_plugin(pid)]


def test_kill_9_of_the_cli_leaves_no_plugin_running_and_the_next_up_resumes(emulator, seeded, tmp_path):
    bucket = fresh_bucket(emulator, SLOW_EXPORT_SECONDS)
    project = yaml_project(tmp_path, emulator, seeded, bucket)
    proc, record = up_until_exporting(project, emulator)
    try:
        assert plugin_processes(proc.pid), "the plugin serves the up"
        os.kill(proc.pid, signal.SIGKILL)  # the CLI only: the plugin must notice the engine is gone
        killed = time.monotonic()
        # (pulumi-language-yaml checks for its engine every 5 minutes: it is killed below)
        wait_until(lambda: not plugin_processes(proc.pid), 30, "every pulumi-resource-export-image gone")
        assert time.monotonic() - killed < 30
    finally:
        kill_session(proc.pid)
    assert [t["ExportImageTaskId"] for t in task_records(emulator)] == [record["ExportImageTaskId"]]
    project.run("cancel", "--yes", project.stack)  # the killed CLI's lock
    project.refresh("--clear-pending-creates")
    emulator.advance(SLOW_EXPORT_SECONDS)
    result = project.up()
    assert f"resuming export task {record['ExportImageTaskId']}" in output_of(result)
    assert project.resources()["image"]["id"] == record["ExportImageTaskId"]
    assert len(task_records(emulator)) == 1, "no second export"
