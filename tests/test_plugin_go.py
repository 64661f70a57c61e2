"""The provider plugin from Go: examples/go (the generated Go SDK, an Automation API program).

``scripts/gen-sdk`` generates the Go SDK from the plugin's schema with pkg/v3's
generator (tools/sdkgen) and builds examples/go; the session fixture runs it
once (cached: about a second when nothing changed, minutes on a cold Go cache).
The example is an Automation API inline program: the Go program registers the
resource in-process and drives the real ``pulumi`` CLI, which starts the
plugin (``pulumi-resource-export-image``, the venv's console script on PATH).
Each run gets the environment of a :class:`PulumiProject` (private
PULUMI_HOME, file backend, the emulator, the fast waiter), and the project's
directory is the example's work directory, so ``pulumi stack export`` there
reads the same stack.

What runs: create, a no-op, a tag edit in place, a format change that
replaces, refresh after the image was deleted out of band, destroy; an import
of a task started with boto3 (the ``import`` resource option: ``pulumi import``
itself needs the Go language host even without code generation), then an
``up`` that keeps it; and Ctrl-C, which the program passes on to the CLI once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_until
from pulumi_cli import (
    REGION,
    REPO_ROOT,
    PulumiError,
    PulumiProject,
    Result,
    kill_session,
    plugin_project,
    session_processes,
)
from reliability_report import provider_errors, task_records
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

from export_image_provider.ownership import RESOURCE_TAG

PROJECT = "export-image-go"  # examples/go's default -project
SDK_DIR = REPO_ROOT / ".tools" / "sdk" / "go"  # where scripts/gen-sdk writes the generated module
EXPORT_SECONDS = 0.5
SLOW_EXPORT_SECONDS = 600.0
GEN_SDK_TIMEOUT = 900.0  # a cold build of pkg/v3 and sdk/v3 takes 200-250 s here, more on a busy machine
# pytest-timeout counts fixture set-up: the first test here may wait for a cold scripts/gen-sdk.
pytestmark = pytest.mark.timeout(GEN_SDK_TIMEOUT + 300)


@pytest.fixture(scope="session")
def go_example() -> Path:
    """The example's binary, from ``scripts/gen-sdk`` (schema -> SDK -> build); cached across sessions."""
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "gen-sdk")], capture_output=True, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHON": sys.executable}, timeout=GEN_SDK_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/gen-sdk failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


# -- scripts/gen-sdk ----------------------------------------------------------------------


def struct_tags(source: str, struct: str) -> set[str]:
    """The ``pulumi:"..."`` names of the fields of Go struct ``struct`` in ``source``."""
    body = re.search(rf"(?ms)^type {struct} struct {{\n(.*?)^}}", source)
    assert body, f"no struct {struct}"
    return set(re.findall(r'pulumi:"(\w+)"', body.group(1)))


def test_the_sdk_is_generated_from_the_plugins_current_schema(go_example):
    from export_image_provider.plugin.schema import PACKAGE, RESOURCE_TOKEN, VERSION, schema

    spec = schema()
    resource = spec["resources"][RESOURCE_TOKEN]
    root = SDK_DIR / "exportimage"
    source = (root / "imageExport.go").read_text()
    assert f'ctx.RegisterResource("{RESOURCE_TOKEN}"' in source
    assert struct_tags(source, "imageExportArgs") == set(resource["inputProperties"])
    assert struct_tags(source, "ImageExport") == set(resource["properties"])
    config = (root / "config" / "config.go").read_text()
    assert set(re.findall(rf'config\.Get\w*\(ctx, "{PACKAGE}:(\w+)"\)', config)) == set(spec["config"]["variables"])
    plugin = json.loads((root / "pulumi-plugin.json").read_text())
    assert plugin == {"resource": True, "name": PACKAGE, "version": VERSION}
    assert subprocess.run(["git", "ls-files", "--error-unmatch", str(SDK_DIR)], cwd=REPO_ROOT,
                          capture_output=True).returncode != 0, "the generated SDK is never committed"


def test_gen_sdk_again_changes_nothing(go_example):
    built = go_example.stat().st_mtime_ns
    again = subprocess.run([str(REPO_ROOT / "scripts" / "gen-sdk")], capture_output=True, text=True, cwd=REPO_ROOT,
                           env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == str(go_example)
    assert [line for line in again.stderr.splitlines() if "unchanged" in line] == [
        "gen-sdk: tools/sdkgen unchanged", f"gen-sdk: Go SDK unchanged ({SDK_DIR})", "gen-sdk: examples/go unchanged",
    ], again.stderr
    assert go_example.stat().st_mtime_ns == built


# -- running the example -------------------------------------------------------------------


class GoProgram:
    """examples/go on one stack of a :class:`PulumiProject`'s environment and directory."""

    def __init__(self, binary: Path, project: PulumiProject, **config: str) -> None:
        self.binary = binary
        self.project = project
        self.config = config  # passed with every run: the work directory keeps it too, but runs stay explicit

    def argv(self, op: str, *extra: str, **config: str) -> list[str]:
        pairs = [a for k, v in {**self.config, **config}.items() for a in ("-config", f"{k}={v}")]
        return [str(self.binary), "-op", op, "-stack", self.project.stack, "-project", PROJECT,
                "-workdir", str(self.project.dir), *pairs, *extra]

    def run(self, op: str, *extra: str, check: bool = True, timeout: float = 300.0, **config: str) -> Result:
        argv = self.argv(op, *extra, **config)
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=self.project.dir, env=self.project.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            result = Result(argv, proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            stdout, stderr = proc.communicate()
            result = Result(argv, -1, stdout, stderr + f"\n(killed: still running after {timeout:g}s)")
        result.seconds = time.monotonic() - started
        self.project.history.append(result)
        if check and result.code != 0:
            raise PulumiError(result)
        return result

    def changes(self, op: str, **config: str) -> dict[str, int]:
        """Run ``op``; the engine's change counts from the program's JSON summary (its last stdout line)."""
        result = self.run(op, **config)
        return summary(result)["changes"]

    def teardown(self) -> None:
        """Best effort: destroy through the program (``pulumi destroy`` here would need the Go host), drop the stack."""
        if self.run("destroy", check=False, timeout=120).code != 0:
            self.project.pulumi("cancel", "--yes", self.project.stack, timeout=60)
            self.run("destroy", check=False, timeout=120)
        self.project.pulumi("stack", "rm", "--yes", "--force", self.project.stack, timeout=60)

    def start(self, op: str) -> subprocess.Popen:
        """The program in the background, in a session of its own (a terminal's foreground group);
        :meth:`PulumiProject.output_of` reads what it printed."""
        stem = self.project.logs / f"{len(self.project.history):02d}-go-{op}"
        with open(f"{stem}.out", "w") as out, open(f"{stem}.err", "w") as err:
            proc = subprocess.Popen(self.argv(op), cwd=self.project.dir, env=self.project.env,
                                    start_new_session=True, stdout=out, stderr=err)
        proc.log_stem = stem  # type: ignore[attr-defined]
        return proc


def summary(result: Result) -> dict[str, Any]:
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise PulumiError(result, "printed no JSON summary") from None


def go_program(binary: Path, tmp: Path, emulator, image_id: str, bucket: str, **config: str) -> GoProgram:
    project = plugin_project(tmp, emulator.url, files={"Pulumi.yaml": f"name: {PROJECT}\nruntime: go\n"})
    return GoProgram(binary, project, imageId=image_id, bucket=bucket, **{"export-image:region": REGION}, **config)


# -- the lifecycle, in order on one stack ------------------------------------------------


@dataclass
class GoStack(OrderedSteps):
    """The stack the ordered steps of :class:`TestGoLifecycle` share."""

    program: GoProgram
    bucket: str
    tasks: dict[str, str] = field(default_factory=dict)  # step -> the export task it made


@pytest.fixture(scope="class")
def stack(go_example, emulator, seeded, tmp_path_factory):
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    program = go_program(go_example, tmp_path_factory.mktemp("go-lifecycle"), emulator, seeded["image_id"], bucket)
    yield GoStack(program=program, bucket=bucket)
    program.teardown()


class TestGoLifecycle:
    def test_up_exports(self, stack, emulator):
        go, project = stack.program, stack.program.project
        assert go.changes("up") == {"create": 2}  # the stack and the image
        out = assert_exported(emulator, project, stack.bucket, ["image"])["image"]
        assert out["s3_key"] == f"exports/{out['export_image_task_id']}.vmdk"
        assert objects(emulator, stack.bucket) == {out["s3_key"]}
        assert tag_dict(task(emulator, out["export_image_task_id"]))[RESOURCE_TAG] == project.resource_key("image")
        stack.tasks["up"] = out["export_image_task_id"]
        stack.done.add("up")

    def test_up_again_changes_nothing(self, stack, emulator):
        stack.after("up")
        calls = emulator.calls().get("ec2:ExportImage", 0)
        assert stack.program.changes("preview") == {"same": 2}
        assert stack.program.changes("up") == {"same": 2}
        assert emulator.calls().get("ec2:ExportImage", 0) == calls
        stack.done.add("no-op")

    def test_tag_edit_is_an_update_in_place(self, stack, emulator):
        stack.after("up")
        go = stack.program
        assert go.changes("up", tags='{"team": "qa"}') == {"same": 1, "update": 1}
        go.config["tags"] = '{"team": "qa"}'
        assert outputs_of(go.project)["image"]["export_image_task_id"] == stack.tasks["up"], "the same task"
        assert tag_dict(task(emulator, stack.tasks["up"]))["team"] == "qa"
        stack.done.add("tags")

    def test_format_change_is_a_replacement(self, stack, emulator):
        stack.after("tags")
        go = stack.program
        assert go.changes("up", format="RAW") == {"same": 1, "replace": 1}
        go.config["format"] = "RAW"
        out = assert_exported(emulator, go.project, stack.bucket, ["image"])["image"]
        assert out["export_image_task_id"] != stack.tasks["up"] and out["s3_key"].endswith(".raw")
        assert objects(emulator, stack.bucket) == {out["s3_key"]}, "the VMDK image went with the old resource"
        assert tag_dict(task(emulator, out["export_image_task_id"]))["team"] == "qa"
        stack.tasks["replace"] = out["export_image_task_id"]
        stack.done.add("replace")

    def test_refresh_changes_nothing_then_drops_an_image_deleted_out_of_band(self, stack, emulator):
        stack.after("replace")
        go = stack.program
        assert go.changes("refresh") == {"same": 2}
        emulator.client("s3").delete_object(Bucket=stack.bucket, Key=outputs_of(go.project)["image"]["s3_key"])
        changes = go.changes("refresh")
        assert changes.get("delete") == 1, changes
        assert go.project.resources() == {}, "refresh forgot the export whose image is gone"
        assert go.changes("up") == {"same": 1, "create": 1}, "the next up exports it again"
        out = assert_exported(emulator, go.project, stack.bucket, ["image"])["image"]
        assert out["export_image_task_id"] not in stack.tasks.values()
        stack.done.add("refresh")

    def test_destroy_leaves_no_object_and_no_state(self, stack, emulator):
        stack.after("up")
        assert stack.program.changes("destroy") == {"delete": 2}
        assert objects(emulator, stack.bucket) == set()
        assert stack.program.project.resources() == {}


# -- import and Ctrl-C -------------------------------------------------------------------


def export_outside_pulumi(emulator, image_id: str) -> tuple[str, str]:
    """A fresh bucket, and a VMDK export into it started with boto3 (not Pulumi), completed."""
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    outside = emulator.client("ec2").export_image(
        ImageId=image_id, DiskImageFormat="VMDK", RoleName="vmimport",
        S3ExportLocation={"S3Bucket": bucket, "S3Prefix": "exports/"},
        TagSpecifications=[{"ResourceType": "export-image-task", "Tags": [{"Key": "team", "Value": "ops"}]}],
    )["ExportImageTaskId"]
    wait_until(lambda: task(emulator, outside)["Status"] == "completed", 30, "the export started outside Pulumi")
    return bucket, outside


def test_import_adopts_a_task_started_outside_pulumi_and_up_keeps_it(go_example, emulator, seeded, tmp_path):
    bucket, outside = export_outside_pulumi(emulator, seeded["image_id"])
    program = go_program(go_example, tmp_path, emulator, seeded["image_id"], bucket, tags='{"team": "ops"}')
    try:
        changes = summary(program.run("import", "-id", outside))["changes"]
        assert changes.get("import") == 1 and "replace" not in changes, changes
        assert changes.get("create") == 1, "only the stack is created"
        adopted = assert_exported(emulator, program.project, bucket, ["image"])["image"]
        assert adopted["export_image_task_id"] == outside
        assert [t["ExportImageTaskId"] for t in all_tasks(emulator)] == [outside], "no export was started"
        assert tag_dict(task(emulator, outside))[RESOURCE_TAG] == program.project.resource_key("image")

        assert program.changes("up") == {"same": 2}, "the next up keeps the adopted task"
        assert program.changes("destroy") == {"delete": 2}
        assert objects(emulator, bucket) == set()
    finally:
        program.teardown()


def test_import_into_a_program_that_wants_another_format_is_refused_not_replaced(go_example, emulator, seeded,
                                                                                tmp_path):
    bucket, outside = export_outside_pulumi(emulator, seeded["image_id"])
    program = go_program(go_example, tmp_path, emulator, seeded["image_id"], bucket, format="RAW")
    try:
        refused = program.run("import", "-id", outside, check=False)
        assert refused.code != 0
        assert "previously-imported resources that still specify an ID may not be replaced" in refused.stderr, refused
        assert [t["ExportImageTaskId"] for t in all_tasks(emulator)] == [outside], "no export was started"
        assert task(emulator, outside)["Status"] == "completed" and objects(emulator, bucket) == {
            f"exports/{outside}.vmdk"}, "the adopted export is untouched"
    finally:
        program.teardown()


def test_ctrl_c_is_passed_on_once_stops_the_wait_and_destroy_cancels_the_task(go_example, emulator, seeded, tmp_path):
    emulator.reset()
    emulator.set_config(export_seconds=SLOW_EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    program = go_program(go_example, tmp_path, emulator, seeded["image_id"], bucket)
    try:
        proc = program.start("up")
        try:
            [record] = wait_until(lambda: task_records(emulator), 120, "the export started")
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the program's foreground group
            interrupted = time.monotonic()
            proc.wait(timeout=60)
            returned = time.monotonic() - interrupted
        finally:
            kill_session(proc.pid)
        output = PulumiProject.output_of(proc)
        assert proc.returncode != 0 and returned < 30, output
        assert "interrupt passed on to 1 pulumi command(s)" in output
        # The CLI heard one Ctrl-C (a graceful cancel), not two (a second one terminates at once).
        assert "^C received; cancelling." in output and "received; terminating" not in output, output
        assert "cancelled while waiting for export task" in provider_errors(output)["image"], output
        wait_until(lambda: not session_processes(proc.pid), 15, "every process of the run gone")
        kept = program.project.resources()["image"]
        assert kept["id"] == record["ExportImageTaskId"] and kept.get("initErrors"), "partial state keeps the task"
        assert [t["Status"] for t in task_records(emulator)] == ["active"]

        assert program.changes("destroy") == {"delete": 2}  # removing the resource cancels its export
        [cancelled] = task_records(emulator)
        assert cancelled["Status"] in ("deleting", "deleted"), cancelled
        assert program.project.resources() == {}
    finally:
        program.teardown()
