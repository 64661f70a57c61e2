"""The examples' whole lifecycle through the real Pulumi CLI, against the emulator.

Like Pulumi's ProgramTest: each example is copied to a temporary directory and
driven with ``pulumi`` commands (see ``pulumi_cli.py``), once with a ``file://``
state backend and once with an ``s3://`` backend in the emulator. For
``examples/basic`` and ``examples/multi-format`` one stack per backend goes
through ordered steps (pytest runs a class's tests in file order, grouped by the
class-scoped parameter): up, a no-change preview, a tag edit (update in place),
a format edit (replacement), refresh (unchanged, then an object deleted out of
band), destroy, and an ``up`` killed mid-export that must be resumed rather
than duplicated. ``examples/yaml`` goes through the same steps on the provider
plugin's front door (``export-image:index:ImageExport``; its other checks are in
test_plugin_yaml.py). A step whose predecessor failed is skipped rather than run on
a stack in an unknown state. ``examples/pipeline`` runs the commands of its
workflow; a small inline program checks inputs that are unknown at preview.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import wait_until
from pulumi_cli import EXAMPLES, PulumiError, PulumiProject, plugin_project
from export_image_provider.ownership import RESOURCE_TAG
from export_image_provider.plugin.values import snake

BACKENDS = ("file", "s3")
EXPORT_SECONDS = 0.5
SLOW_EXPORT_SECONDS = 60.0
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # how the engine shows an unknown value in JSON


# -- emulator helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(emulator) -> dict[str, str]:
    from export_image_provider.emulator.seed import seed

    return seed(emulator.url)


def export_bucket(emulator) -> str:
    """A fresh export bucket (writable by the seeded vmimport role), so emptiness means something."""
    from export_image_provider.emulator.seed import seed

    return seed(emulator.url, bucket=f"exports-{uuid.uuid4().hex[:12]}")["bucket"]


def all_tasks(emulator) -> list[dict[str, Any]]:
    return emulator.client("ec2").describe_export_image_tasks()["ExportImageTasks"]


def task(emulator, task_id: str) -> dict[str, Any]:
    [found] = emulator.client("ec2").describe_export_image_tasks(ExportImageTaskIds=[task_id])["ExportImageTasks"]
    return found


def tag_dict(record: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in record.get("Tags") or []}


def tasks_tagged(emulator, resource_key: str) -> list[dict[str, Any]]:
    return [t for t in all_tasks(emulator) if tag_dict(t).get(RESOURCE_TAG) == resource_key]


def objects(emulator, bucket: str) -> set[str]:
    listed = emulator.client("s3").list_objects_v2(Bucket=bucket)
    return {o["Key"] for o in listed.get("Contents", [])}


def outputs_of(project: PulumiProject) -> dict[str, dict[str, Any]]:
    """Resource name -> outputs of each ImageExport in the stack's state, by their snake_case names
    (the provider plugin's are camelCase)."""
    return {name: {snake(k): v for k, v in r["outputs"].items()} for name, r in project.resources().items()}


def assert_exported(emulator, project: PulumiProject, bucket: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """Every named export is in state, completed, its task completed and its object at ``s3_key``."""
    outs = outputs_of(project)
    assert sorted(outs) == sorted(names)
    for name, out in outs.items():
        assert out["status"] == "completed", (name, out)
        assert out["s3_bucket"] == bucket
        assert out["s3_uri"] == f"s3://{bucket}/{out['s3_key']}"
        assert out["s3_key"].endswith(f"{out['export_image_task_id']}.{out['disk_image_format'].lower()}")
        assert task(emulator, out["export_image_task_id"])["Status"] == "completed"
    assert {o["s3_key"] for o in outs.values()} <= objects(emulator, bucket)
    return outs


# -- the examples -----------------------------------------------------------------------


@dataclass
class Example:
    """How each lifecycle step is done to one example project."""

    name: str
    resources: list[str]
    stack_outputs: Callable[[dict[str, dict[str, Any]]], dict[str, Any]]
    edit_tags: Callable[[PulumiProject], None]
    new_tags: dict[str, str]
    edit_format: Callable[[PulumiProject], None]
    replaced: str
    new_format: str
    clear_pending: str  # "import" (stack export, drop pending_operations, import) or "refresh"
    plugin: bool = False  # a program of the provider plugin (export-image:index:ImageExport), not the dynamic resource
    backends: tuple[str, ...] = BACKENDS


def _basic_tags(project: PulumiProject) -> None:
    project.edit("__main__.py", '    s3_prefix=config.get("prefix") or "exports/",\n',
                 '    s3_prefix=config.get("prefix") or "exports/",\n    tags={"team": "qa"},\n')


YAML_TAGS = "        project: ${pulumi.project}\n"  # examples/yaml's tags


def _multi_tags(project: PulumiProject) -> None:
    project.edit("__main__.py", '"format": fmt,\n', '"format": fmt,\n            "owner": "qa",\n')


def _image_outputs(outs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The stack outputs of examples/basic and examples/yaml: one export's."""
    image = outs["image"]
    return {"exportImageTaskId": image["export_image_task_id"], "status": "completed", "s3Uri": image["s3_uri"],
            "s3ObjectSize": image["s3_object_size"], "s3Etag": image["s3_etag"]}


EXAMPLE_CASES = {
    "basic": Example(
        name="basic",
        resources=["image"],
        stack_outputs=_image_outputs,
        edit_tags=_basic_tags,
        new_tags={"team": "qa"},
        edit_format=lambda project: project.config_set("format", "VHD"),
        replaced="image",
        new_format="VHD",
        clear_pending="import",
    ),
    "multi-format": Example(
        name="multi-format",
        resources=["image-vmdk", "image-vhd", "image-raw"],
        stack_outputs=lambda outs: {f"{fmt}Uri": outs[f"image-{fmt}"]["s3_uri"] for fmt in ("vmdk", "vhd", "raw")},
        edit_tags=_multi_tags,
        new_tags={"owner": "qa"},
        edit_format=lambda project: project.edit(
            "__main__.py", "disk_image_format=fmt,", 'disk_image_format={"RAW": "VHD"}.get(fmt, fmt),'
        ),
        replaced="image-raw",
        new_format="VHD",
        clear_pending="refresh",
    ),
    # The provider plugin's front door: the same steps, on a Pulumi YAML program.
    "yaml": Example(
        name="yaml",
        resources=["image"],
        stack_outputs=_image_outputs,
        edit_tags=lambda project: project.edit("Pulumi.yaml", YAML_TAGS, YAML_TAGS + "        team: qa\n"),
        new_tags={"team": "qa"},
        edit_format=lambda project: project.config_set("format", "VHD"),
        replaced="image",
        new_format="VHD",
        clear_pending="refresh",
        plugin=True,
        backends=("file",),
    ),
}


@dataclass
class OrderedSteps:
    """Steps of one stack that run in file order; a step skips when one it needs failed."""

    done: set[str] = field(default_factory=set, kw_only=True)

    def after(self, *steps: str) -> None:
        missing = [s for s in steps if s not in self.done]
        if missing:
            pytest.skip(f"an earlier step failed: {', '.join(missing)}")


@dataclass
class Stack(OrderedSteps):
    """One example's stack shared by the ordered steps of :class:`TestExampleLifecycle`."""

    example: Example
    backend: str
    project: PulumiProject
    bucket: str


@pytest.fixture(
    scope="class",
    params=[(name, backend) for name, example in EXAMPLE_CASES.items() for backend in example.backends],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def stack(request, emulator, seeded, tmp_path_factory):
    example_name, backend = request.param
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    example = EXAMPLE_CASES[example_name]
    project = (plugin_project if example.plugin else PulumiProject)(
        tmp_path_factory.mktemp(f"{example_name}-{backend}"), emulator.url,
        source=EXAMPLES / example_name, backend=backend,
    )
    project.stack_init(imageId=seeded["image_id"], bucket=bucket)
    yield Stack(example, backend, project, bucket)
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    project.teardown()
    emulator.reset()


class TestExampleLifecycle:
    def test_up_exports_every_image_and_outputs_match(self, stack, emulator):
        project, example = stack.project, stack.example
        result = project.up()
        assert "started export task" in result.stdout + result.stderr
        outs = assert_exported(emulator, project, stack.bucket, example.resources)
        assert project.stack_outputs() == example.stack_outputs(outs)
        for name, out in outs.items():
            record = task(emulator, out["export_image_task_id"])
            assert tag_dict(record)[RESOURCE_TAG] == project.resource_key(name)
        stack.done.add("up")

    def test_preview_right_after_up_expects_no_changes(self, stack):
        stack.after("up")
        stack.project.preview("--expect-no-changes")
        stack.done.add("no-changes")

    def test_tag_edit_is_an_update_in_place(self, stack, emulator):
        stack.after("up")
        project, example = stack.project, stack.example
        before = outputs_of(project)
        example.edit_tags(project)
        assert project.planned_ops() == {project.stack_resource_name(): "same"} | {
            name: "update" for name in example.resources
        }
        project.up()
        state, outs = project.resources(), outputs_of(project)
        for name in example.resources:
            task_id = before[name]["export_image_task_id"]
            after = outs[name]
            assert state[name]["id"] == after["export_image_task_id"] == task_id, "a tag edit must not start a new export"
            tags = tag_dict(task(emulator, task_id))
            assert tags.items() >= example.new_tags.items(), tags
            assert tags[RESOURCE_TAG] == project.resource_key(name), "the provider's own tags are kept"
            assert after["tags"].items() >= example.new_tags.items()
        project.preview("--expect-no-changes")
        stack.done.add("tags")

    def test_format_edit_is_a_replacement(self, stack, emulator):
        stack.after("up")
        project, example = stack.project, stack.example
        before = outputs_of(project)
        example.edit_format(project)
        ops = project.planned_ops()
        assert ops[example.replaced] == "replace"
        assert {op for name, op in ops.items() if name != example.replaced} == {"same"}
        project.up()
        after = assert_exported(emulator, project, stack.bucket, example.resources)
        old, new = before[example.replaced], after[example.replaced]
        assert new["export_image_task_id"] != old["export_image_task_id"]
        assert new["disk_image_format"] == example.new_format
        assert new["s3_key"].endswith("." + example.new_format.lower())
        present = objects(emulator, stack.bucket)
        assert old["s3_key"] not in present and new["s3_key"] in present
        for name in example.resources:
            if name != example.replaced:
                assert after[name]["export_image_task_id"] == before[name]["export_image_task_id"]
        stack.done.add("format")

    def test_refresh_changes_nothing_then_drops_an_export_deleted_out_of_band(self, stack, emulator):
        stack.after("up")
        project, example = stack.project, stack.example
        project.refresh("--expect-no-changes")
        before = outputs_of(project)
        gone = example.resources[0]
        emulator.client("s3").delete_object(Bucket=stack.bucket, Key=before[gone]["s3_key"])
        project.refresh()
        after = outputs_of(project)
        assert gone not in after
        assert after == {name: out for name, out in before.items() if name != gone}
        result = project.up()
        assert "started export task" in result.stdout + result.stderr
        recreated = assert_exported(emulator, project, stack.bucket, example.resources)
        assert recreated[gone]["export_image_task_id"] != before[gone]["export_image_task_id"]
        stack.done.add("refresh")

    def test_destroy_leaves_no_object_and_no_active_task(self, stack, emulator):
        stack.after("up")
        project = stack.project
        project.destroy()
        assert project.resources() == {}
        assert objects(emulator, stack.bucket) == set()
        assert [t["ExportImageTaskId"] for t in all_tasks(emulator) if t["Status"] == "active"] == []
        stack.done.add("destroy")

    def test_killed_up_is_resumed_without_a_duplicate_export(self, stack, emulator):
        stack.after("destroy")
        project, example = stack.project, stack.example
        keys = {name: project.resource_key(name) for name in example.resources}
        existing = {t["ExportImageTaskId"] for t in all_tasks(emulator)}

        def new_tasks(name: str) -> list[dict[str, Any]]:
            return [t for t in tasks_tagged(emulator, keys[name]) if t["ExportImageTaskId"] not in existing]

        emulator.set_config(export_seconds=SLOW_EXPORT_SECONDS)
        proc = project.start("up", "--yes", "--skip-preview")
        try:
            [started] = wait_until(lambda: [t for n in example.resources for t in new_tasks(n)], 60,
                                   "the killed up's ExportImage")
        finally:
            project.kill(proc)
        assert started["Status"] == "active"
        assert project.pending_operations(), "the killed up should have left its pending creates in state"

        # The killed CLI still holds the stack's lock; Pulumi's error says to remove it with `pulumi cancel`.
        locked = project.refresh(check=False)
        assert locked.code != 0 and "pulumi cancel" in locked.stdout + locked.stderr, locked
        project.run("cancel", "--yes", project.stack)
        if example.clear_pending == "import":
            state = project.stack_export()
            state["deployment"].pop("pending_operations")
            project.stack_import(state)
        else:
            project.refresh("--clear-pending-creates")
        assert project.pending_operations() == []

        # Later exports are quick again; the one already running finishes now.
        emulator.set_config(export_seconds=EXPORT_SECONDS)
        emulator.control("POST", "advance", {"seconds": SLOW_EXPORT_SECONDS})
        result = project.up()
        assert f"resuming export task {started['ExportImageTaskId']}" in result.stdout + result.stderr
        outs = assert_exported(emulator, project, stack.bucket, example.resources)
        for name in example.resources:
            assert [t["ExportImageTaskId"] for t in new_tasks(name)] == [outs[name]["export_image_task_id"]]
        assert outs[started_name(started, keys)]["export_image_task_id"] == started["ExportImageTaskId"]
        project.preview("--expect-no-changes")
        stack.done.add("interrupt")


def started_name(record: dict[str, Any], keys: dict[str, str]) -> str:
    [name] = [n for n, key in keys.items() if tag_dict(record).get(RESOURCE_TAG) == key]
    return name


# -- inputs unknown at preview -------------------------------------------------------------

UNKNOWN_PROJECT = """\
name: export-image-unknown-inputs
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: venv
"""

UNKNOWN_PROGRAM = """\
import pulumi

from export_image_provider import ImageExport

config = pulumi.Config()
first = ImageExport(
    "first",
    image_id=config.require("imageId"),
    disk_image_format="VMDK",
    s3_bucket=config.require("bucket"),
    s3_prefix="first/",
)
# Known only once `first` exists: a preview sees an unknown prefix and tags.
second = ImageExport(
    "second",
    image_id=config.require("imageId"),
    disk_image_format="RAW",
    s3_bucket=config.require("bucket"),
    s3_prefix=first.export_image_task_id.apply(lambda task_id: f"after-{task_id}/"),
    tags=first.s3_key.apply(lambda key: {"source": key.replace("/", "_")}),
)
pulumi.export("firstTaskId", first.export_image_task_id)
pulumi.export("secondKey", second.s3_key)
"""


@dataclass
class Chained(OrderedSteps):
    """A stack of two exports, the second's inputs computed from the first's outputs."""

    project: PulumiProject
    bucket: str

    def edit_first_format(self) -> None:
        if "edited" not in self.done:
            self.project.edit("__main__.py", 'disk_image_format="VMDK",', 'disk_image_format="VHD",')
            self.done.add("edited")


@pytest.fixture(scope="class", params=BACKENDS)
def chained(request, emulator, seeded, tmp_path_factory):
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    project = PulumiProject(
        tmp_path_factory.mktemp(f"unknown-{request.param}"), emulator.url,
        files={"Pulumi.yaml": UNKNOWN_PROJECT, "__main__.py": UNKNOWN_PROGRAM}, backend=request.param,
    )
    project.stack_init(imageId=seeded["image_id"], bucket=bucket)
    yield Chained(project, bucket)
    project.teardown()
    emulator.reset()


def assert_chained(emulator, chained: Chained) -> dict[str, dict[str, Any]]:
    outs = assert_exported(emulator, chained.project, chained.bucket, ["first", "second"])
    first = outs["first"]
    assert outs["second"]["s3_prefix"] == f"after-{first['export_image_task_id']}/"
    assert outs["second"]["tags"] == {"source": first["s3_key"].replace("/", "_")}
    assert chained.project.stack_outputs() == {
        "firstTaskId": first["export_image_task_id"], "secondKey": outs["second"]["s3_key"],
    }
    return outs


class TestInputsUnknownAtPreview:
    def test_preview_plans_both_creates(self, chained, emulator):
        project = chained.project
        try:
            steps = {s["urn"].rsplit("::", 1)[1]: s for s in project.preview_json()["steps"]}
        finally:
            assert all_tasks(emulator) == [], "a preview must not start anything"
        assert steps["first"]["op"] == "create" and steps["second"]["op"] == "create"
        assert steps["second"]["newState"]["inputs"]["s3_prefix"] == UNKNOWN
        project.preview()  # the human-readable preview copes too

    def test_up_resolves_them(self, chained, emulator):
        chained.project.up()
        assert_chained(emulator, chained)
        chained.project.preview("--expect-no-changes")
        chained.done.add("up")

    def test_replacing_the_first_previews_replacing_the_second(self, chained):
        chained.after("up")
        chained.edit_first_format()
        # first's new task id is unknown, so is second's prefix: a replacement of both.
        assert chained.project.planned_ops() == {
            chained.project.stack_resource_name(): "same", "first": "replace", "second": "replace",
        }

    def test_up_replaces_both_and_destroy_leaves_nothing(self, chained, emulator):
        chained.after("up")
        before = outputs_of(chained.project)
        chained.edit_first_format()
        chained.project.up()
        after = assert_chained(emulator, chained)
        assert after["first"]["disk_image_format"] == "VHD"
        for name in ("first", "second"):
            assert after[name]["export_image_task_id"] != before[name]["export_image_task_id"]
        assert objects(emulator, chained.bucket) == {after["first"]["s3_key"], after["second"]["s3_key"]}
        chained.project.destroy()
        assert objects(emulator, chained.bucket) == set()


# -- examples/pipeline: the workflow's commands ---------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_pipeline_workflow_commands(backend, emulator, seeded, tmp_path):
    """What .github/workflows/image-export.yml runs: login, stack select --create, preview --diff, up."""
    emulator.reset()
    emulator.set_config(export_seconds=EXPORT_SECONDS)
    bucket = export_bucket(emulator)
    stack_name = "prod"  # the workflow's default STACK
    project = PulumiProject(tmp_path, emulator.url, source=EXAMPLES / "pipeline", backend=backend,
                            stack=stack_name, login=True)
    try:
        # Committed stack config, as the README's one-time setup writes it.
        project.login()
        project.run("stack", "select", "--create", stack_name)
        project.run("config", "set-all", "--plaintext", f"imageId={seeded['image_id']}", "--plaintext", f"bucket={bucket}")
        project.run("config", "set-all", "--path", "--plaintext", "formats[0]=VMDK", "--plaintext", "formats[1]=VHD")

        # pull request: preview only, nothing started
        preview = project.run("preview", "--stack", stack_name, "--diff")
        assert "image-vmdk" in preview.stdout and "image-vhd" in preview.stdout
        assert all_tasks(emulator) == []

        # push to main
        project.run("up", "--yes", "--stack", stack_name)
        outs = assert_exported(emulator, project, bucket, ["image-vmdk", "image-vhd"])
        assert project.stack_outputs() == {
            f"{fmt}{kind}": outs[f"image-{fmt}"][field_]
            for fmt in ("vmdk", "vhd")
            for kind, field_ in (("TaskId", "export_image_task_id"), ("Uri", "s3_uri"))
        }
        for out in outs.values():
            assert tag_dict(task(emulator, out["export_image_task_id"]))["pulumi-stack"] == stack_name
        project.run("preview", "--stack", stack_name, "--diff", "--expect-no-changes")

        # a pull request that adds a tag: an in-place update
        project.config_set("tags.team", "qa", path=True)
        assert project.planned_ops("--stack", stack_name) == {
            project.stack_resource_name(): "same", "image-vmdk": "update", "image-vhd": "update",
        }
        project.up("--stack", stack_name)
        for name, out in outputs_of(project).items():
            assert out["export_image_task_id"] == outs[name]["export_image_task_id"]
            assert tag_dict(task(emulator, out["export_image_task_id"]))["team"] == "qa"

        project.destroy("--stack", stack_name)
        assert objects(emulator, bucket) == set()
        assert [t for t in all_tasks(emulator) if t["Status"] == "active"] == []
    finally:
        project.teardown()
        emulator.reset()
