"""ImageExport driven through Pulumi's Automation API, with the same CLI, against the emulator.

Two ways programs run under the Automation API: an inline program (a Python
function in this process, with the project settings given in code) and a local
program (``examples/basic`` copied to a temporary directory, as ``work_dir``).
Both use the CLI that ``pulumi_cli.pulumi_bin_dir`` finds, passed as
``PulumiCommand(root=...)`` (the API runs ``<root>/bin/pulumi``; it accepts any
CLI from 3.1.0 on), a private ``PULUMI_HOME`` and a ``file://`` backend.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pulumi
import pytest
from pulumi import automation as auto

from export_image_provider import ImageExport
from pulumi_cli import EXAMPLES, IMAGE_EXPORT_TYPE, PulumiProject, pulumi_bin_dir, venv_dir

EXPORT_SECONDS = 0.5


@pytest.fixture
def world(emulator) -> dict[str, str]:
    from export_image_provider.emulator.seed import seed

    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    yield seed(emulator.url, bucket=f"auto-exports-{uuid.uuid4().hex[:12]}")
    emulator.reset()


def objects(emulator, bucket: str) -> set[str]:
    return {o["Key"] for o in emulator.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])}


def task_tags(emulator, task_id: str) -> dict[str, str]:
    [task] = emulator.client("ec2").describe_export_image_tasks(ExportImageTaskIds=[task_id])["ExportImageTasks"]
    return {t["Key"]: t["Value"] for t in task.get("Tags") or []}


def options(project: PulumiProject, monkeypatch, **kwargs: Any) -> auto.LocalWorkspaceOptions:
    # PulumiCommand runs `pulumi version` with this process's environment: keep it off ~/.pulumi.
    monkeypatch.setenv("PULUMI_HOME", str(project.home))
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "1")
    return auto.LocalWorkspaceOptions(
        pulumi_home=str(project.home),
        env_vars=project.env,
        pulumi_command=auto.PulumiCommand(root=str(pulumi_bin_dir().parent)),
        **kwargs,
    )


def exported(stack: auto.Stack) -> dict[str, dict[str, Any]]:
    resources = stack.export_stack().deployment.get("resources") or []
    return {r["urn"].rsplit("::", 1)[1]: r["outputs"] for r in resources if r["type"] == IMAGE_EXPORT_TYPE}


def test_inline_program_up_preview_refresh_destroy(emulator, world, tmp_path, monkeypatch):
    tags = {"team": "platform"}

    def program() -> None:
        export = ImageExport(
            "inline",
            image_id=world["image_id"],
            disk_image_format="RAW",
            s3_bucket=world["bucket"],
            s3_prefix="automation/",
            tags=dict(tags),
        )
        pulumi.export("taskId", export.export_image_task_id)
        pulumi.export("s3Key", export.s3_key)
        pulumi.export("status", export.status)

    project_yaml = "name: export-image-automation\nruntime:\n  name: python\n  options:\n    virtualenv: venv\n"
    project = PulumiProject(tmp_path, emulator.url, files={"Pulumi.yaml": project_yaml})
    settings = auto.ProjectSettings(
        name="export-image-automation",
        runtime=auto.ProjectRuntimeInfo(name="python", options={"virtualenv": str(venv_dir())}),
    )
    # An inline program has no language host to read runtime.options.virtualenv, so the
    # dynamic-provider shim runs `python3` from PATH: the venv's, as when the venv is active.
    project.env["PATH"] = os.pathsep.join([str(venv_dir() / "bin"), project.env["PATH"]])
    stack = auto.create_or_select_stack(
        "auto", project_name=settings.name, program=program,
        opts=options(project, monkeypatch, project_settings=settings),
    )
    try:
        up = stack.up(on_output=lambda _line: None)
        # The stack, its hidden StackIdentity and the export.
        assert up.summary.result == "succeeded" and up.summary.resource_changes == {"create": 3}
        outputs = {name: value.value for name, value in up.outputs.items()}
        task_id = outputs["taskId"]
        assert outputs == {"taskId": task_id, "s3Key": f"automation/{task_id}.raw", "status": "completed"}
        assert objects(emulator, world["bucket"]) == {outputs["s3Key"]}
        assert task_tags(emulator, task_id)["team"] == "platform"

        preview = stack.preview(expect_no_changes=True)
        assert preview.change_summary == {"same": 3}

        tags["team"] = "data"  # the program is re-run by the next operation: an update in place
        preview = stack.preview()
        assert preview.change_summary == {"same": 2, "update": 1}
        up = stack.up()
        assert up.summary.resource_changes == {"same": 2, "update": 1}
        assert up.outputs["taskId"].value == task_id
        assert task_tags(emulator, task_id)["team"] == "data"

        refresh = stack.refresh(expect_no_changes=True)
        assert refresh.summary.result == "succeeded"
        assert exported(stack)["inline"]["tags"] == {"team": "data"}

        destroy = stack.destroy()
        assert destroy.summary.resource_changes == {"delete": 3}
        assert objects(emulator, world["bucket"]) == set()
    finally:
        stack.workspace.remove_stack("auto", force=True)


def test_local_program_of_the_basic_example(emulator, world, tmp_path, monkeypatch):
    project = PulumiProject(tmp_path, emulator.url, source=EXAMPLES / "basic")
    stack = auto.create_or_select_stack("auto", work_dir=str(project.dir), opts=options(project, monkeypatch))
    try:
        stack.set_all_config({
            "imageId": auto.ConfigValue(world["image_id"]),
            "bucket": auto.ConfigValue(world["bucket"]),
            "format": auto.ConfigValue("VHD"),
        })
        preview = stack.preview()
        assert preview.change_summary == {"create": 3}  # the stack, its StackIdentity, the export
        assert emulator.client("ec2").describe_export_image_tasks()["ExportImageTasks"] == []

        up = stack.up()
        outputs = {name: value.value for name, value in up.outputs.items()}
        task_id = outputs["exportImageTaskId"]
        key = f"exports/{task_id}.vhd"
        found = emulator.client("s3").head_object(Bucket=world["bucket"], Key=key)
        assert outputs == {"exportImageTaskId": task_id, "status": "completed", "s3Uri": f"s3://{world['bucket']}/{key}",
                           "s3ObjectSize": found["ContentLength"], "s3Etag": found["ETag"].strip('"')}
        assert objects(emulator, world["bucket"]) == {key}
        assert stack.preview(expect_no_changes=True).change_summary == {"same": 3}

        stack.destroy()
        assert objects(emulator, world["bucket"]) == set()
        assert exported(stack) == {}
    finally:
        stack.workspace.remove_stack("auto", force=True)
