"""The reliability tests' shared fixtures, and the generator of ``tests/RELIABILITY.md``.

``test_reliability.py`` (faults, kills, destroy, expiry, adoption, secrets and
permissions) and ``test_bad_input.py`` load this module with
``pytest_plugins = ["reliability_report"]``. It provides

* fixtures and helpers to run small inline programs through the real Pulumi CLI
  against the session's emulator (:func:`program`, the ``make_project`` fixture,
  :func:`task_records`, :func:`objects`, :func:`register_amis`, ...);
* a session-wide collector: each reliability test is decorated with
  ``@report_row(scenario=..., injected=..., checked=...)`` (bad-input rows:
  ``@report_row(kind="bad_input")`` and a ``row`` parameter with ``label``,
  ``argument`` and ``where``), and records what it measured with the
  ``reliability`` fixture (``reliability.detail("10/10 exports ...")``,
  ``reliability.message(line)``). The outcome of each test comes from pytest's
  own reports.

At session end, if any reliability test ran and ``RELIABILITY_REPORT`` names a
file, the collected table is written there. A test run never writes the tracked
``tests/RELIABILITY.md``: ``scripts/reliability-report`` runs both test files
with ``RELIABILITY_REPORT`` set to a temporary file and moves it into place.

(PYTEST_DONT_REWRITE: the test modules import helpers from here before pytest
loads it as a plugin; it has no asserts to rewrite.)
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pulumi_cli import PulumiProject

REPORT_ENV = "RELIABILITY_REPORT"  # where a session writes the table; unset: nowhere
RESOURCE_TAG = "export-image-provider:resource"

# -- inline programs ----------------------------------------------------------------------

PROJECT_YAML = """\
name: {name}
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: venv
"""

PROGRAM = """\
import pulumi

from export_image_provider import ImageExport

RESOURCES = {resources}

for name, kwargs in RESOURCES:
    export = ImageExport(name, **kwargs)
    pulumi.export(name, export.export_image_task_id)
"""


def program(resources: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """A ``__main__.py`` declaring one ImageExport per (name, keyword arguments); values must repr() as Python."""
    return PROGRAM.format(resources=repr([(name, dict(kwargs)) for name, kwargs in resources]))


def _project_factory(tmp_path_factory, emulator) -> Callable[..., PulumiProject]:
    def make(name: str, resources: Iterable[tuple[str, Mapping[str, Any]]], *, stack: str = "test",
             extra_env: Mapping[str, str] | None = None, init: bool = True) -> PulumiProject:
        project = PulumiProject(
            tmp_path_factory.mktemp(name), emulator.url, stack=stack, extra_env=extra_env,
            files={"Pulumi.yaml": PROJECT_YAML.format(name=name), "__main__.py": program(resources)},
        )
        if init:
            project.stack_init()
        return project

    return make


@pytest.fixture
def make_project(tmp_path_factory, emulator) -> Callable[..., PulumiProject]:
    """``make_project(name, resources, stack="test", extra_env=None, init=True)``: an inline project, stack initialised.

    The project name goes into every resource key (``project/stack/name``), so
    each scenario uses its own name and never resumes another scenario's tasks.
    Projects are not torn down: their state lives in a temporary directory, their
    buckets are fresh, and the scenario resets the emulator's tasks.
    """
    return _project_factory(tmp_path_factory, emulator)


@pytest.fixture(scope="module")
def make_project_module(tmp_path_factory, emulator) -> Callable[..., PulumiProject]:
    """:func:`make_project` for module-scoped fixtures."""
    return _project_factory(tmp_path_factory, emulator)


def set_program(project: PulumiProject, resources: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    (project.dir / "__main__.py").write_text(program(resources))


# -- the emulated account -----------------------------------------------------------------


def register_amis(emulator, count: int, label: str) -> list[str]:
    """``count`` fresh exportable AMIs (AWS allows one active export per AMI)."""
    ec2 = emulator.client("ec2")
    return [
        ec2.register_image(Name=f"rel-{label}-{i}-{uuid.uuid4().hex[:6]}", Architecture="x86_64",
                           RootDeviceName="/dev/xvda", VirtualizationType="hvm")["ImageId"]
        for i in range(count)
    ]


def new_bucket(emulator, label: str, region: str = "us-east-1") -> str:
    """A fresh, empty bucket, so that what is in it after a scenario means something."""
    name = f"rel-{label}-{uuid.uuid4().hex[:10]}"
    s3 = emulator.client("s3", region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def task_records(emulator) -> list[dict[str, Any]]:
    """Every export task, straight from the emulator (``/_emulator/tasks``: not an AWS call, never faulted)."""
    return emulator.control("GET", "tasks")["tasks"]


def tag_dict(record: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in record.get("Tags") or []}


def tasks_of(emulator, resource_key: str) -> list[dict[str, Any]]:
    return [t for t in task_records(emulator) if tag_dict(t).get(RESOURCE_TAG) == resource_key]


def objects(emulator, bucket: str) -> set[str]:
    listed = emulator.client("s3").list_objects_v2(Bucket=bucket)
    return {o["Key"] for o in listed.get("Contents", [])}


def output_of(result: Any) -> str:
    return f"{result.stdout}\n{result.stderr}"


def provider_errors(output: str) -> dict[str, str]:
    """Resource name -> the provider's error line, from the CLI's ``Diagnostics:`` section.

    The CLI prints the provider's error under ``<type> (<name>):``; the provider
    answers with its one-line message (export_image_provider/process.py), and a
    traceback (a bug) would end with ``Exception: <message>``: the last line.
    """
    found: dict[str, str] = {}
    section = output.split("\nDiagnostics:\n", 1)[-1]
    blocks = re.split(r"(?m)^  \S+ \(([^)]+)\):\n", section)
    for name, body in zip(blocks[1::2], blocks[2::2]):
        lines = [line.strip() for line in body.split("\n\n")[0].splitlines() if line.strip()]
        if not lines:
            continue
        last = lines[-1]
        if last.startswith("error: "):
            last = last[len("error: "):]
        found[name] = last
    return found


def diagnostics(output: str) -> dict[str, list[str]]:
    """Resource name -> the lines of its block in the CLI's ``Diagnostics:`` section."""
    section = re.split(r"\n(?:Outputs|Resources):\n", output.split("\nDiagnostics:\n", 1)[-1])[0]
    blocks = re.split(r"(?m)^  \S+ \(([^)]+)\):\n", section)
    return {name: [line.strip() for line in body.splitlines() if line.strip()]
            for name, body in zip(blocks[1::2], blocks[2::2])}


# -- the collector ------------------------------------------------------------------------


@dataclass
class Entry:
    nodeid: str
    kind: str  # "scenario" or "bad_input"
    scenario: str = ""
    injected: str = ""
    checked: str = ""
    label: str = ""
    argument: str = ""
    where: str = ""
    details: list[str] = field(default_factory=list)
    message: str = ""
    outcome: str = "not run"
    seconds: float = 0.0


class Collector:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.ran = False

    def register(self, item: pytest.Item) -> None:
        meta = getattr(getattr(item, "function", None), "report_row", None)
        if meta is None:
            return
        kw = dict(meta)
        entry = Entry(nodeid=item.nodeid, kind=kw.get("kind", "scenario"), scenario=kw.get("scenario", ""),
                      injected=kw.get("injected", ""), checked=kw.get("checked", ""))
        row = getattr(item, "callspec", None) and item.callspec.params.get("row")
        if row is not None:
            entry.label, entry.argument, entry.where = row.label, row.argument, row.where
        if entry.kind == "scenario" and hasattr(item, "callspec"):
            params = {k: getattr(v, "name", v) for k, v in item.callspec.params.items()}
            entry.scenario = entry.scenario.format(**params)
        self.entries[item.nodeid] = entry

    def update(self, report: pytest.TestReport) -> None:
        entry = self.entries.get(report.nodeid)
        if entry is None:
            return
        self.ran = True
        entry.seconds += report.duration
        if hasattr(report, "wasxfail"):
            if report.skipped:
                entry.outcome = "xfail (known issue: " + report.wasxfail.removeprefix("reason: ") + ")"
            elif report.passed:
                entry.outcome = "XPASS"
            else:
                entry.outcome = "XPASS(strict): failed"
            return
        if report.when == "call":
            entry.outcome = {"passed": "pass", "failed": "FAIL", "skipped": "skipped"}[report.outcome]
        elif report.failed:
            entry.outcome = f"ERROR in {report.when}"
        elif report.skipped and report.when == "setup":
            entry.outcome = "skipped"


_COLLECTOR = Collector()


class Recorder:
    """What one reliability test measured, for the report."""

    def __init__(self, entry: Entry | None) -> None:
        self._entry = entry

    def detail(self, text: str) -> None:
        if self._entry is not None:
            self._entry.details.append(text)

    def message(self, text: str) -> None:
        if self._entry is not None:
            self._entry.message = text


@pytest.fixture
def reliability(request) -> Recorder:
    return Recorder(_COLLECTOR.entries.get(request.node.nodeid))


def report_row(**meta: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make the decorated test a row of the report: ``scenario``, ``injected``, ``checked`` or ``kind="bad_input"``.

    ``scenario`` may name a test parameter in braces (``"kill at {moment}"``).
    """

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.report_row = meta  # type: ignore[attr-defined]
        return function

    return mark


def pytest_itemcollected(item: pytest.Item) -> None:
    _COLLECTOR.register(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    _COLLECTOR.update(report)
    return report


def pytest_deselected(items: list[pytest.Item]) -> None:
    # Deselected tests (-k, -m) stay out of the report rather than showing as "not run".
    for item in items:
        _COLLECTOR.entries.pop(item.nodeid, None)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(REPORT_ENV)
    if _COLLECTOR.ran and target:
        Path(target).write_text(render(_COLLECTOR))


# -- the report ---------------------------------------------------------------------------


def _cell(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|") or " "


def _pulumi_cli() -> str:
    try:
        from pulumi_cli import REPO_ROOT, describe_cli

        return describe_cli().replace(f"{REPO_ROOT}/", "")
    except Exception:  # noqa: BLE001 - the report must not fail the session
        return "Pulumi CLI: unknown"


def render(collector: Collector) -> str:
    entries = list(collector.entries.values())
    scenarios = [e for e in entries if e.kind == "scenario"]
    rows = [e for e in entries if e.kind == "bad_input"]
    counts: dict[str, int] = {}
    for entry in entries:
        key = entry.outcome.split(" (", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    tally = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    spent = sum(e.seconds for e in entries)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability: faults and bad input",
        "",
        "Generated by `scripts/reliability-report` (a run of `tests/test_reliability.py` and",
        "`tests/test_bad_input.py`, collected by `tests/reliability_report.py`); do not edit.",
        "",
        f"- date: {now}",
        f"- {_pulumi_cli()}; file:// state backend, against the ExportImage emulator",
        f"- Python: {platform.python_version()}",
        f"- tests: {len(entries)} ({tally}); {spent:.0f} s in these tests",
        "",
    ]
    if scenarios:
        lines += [
            "## Scenarios",
            "",
            "| scenario | injected | checked | result | measured |",
            "|---|---|---|---|---|",
        ]
        for e in scenarios:
            measured = "; ".join(e.details) + (f" ({e.seconds:.1f} s)" if e.seconds else "")
            lines.append(f"| {_cell(e.scenario)} | {_cell(e.injected)} | {_cell(e.checked)} | "
                         f"{_cell(e.outcome)} | {_cell(measured, 600)} |")
        lines.append("")
    if rows:
        lines += [
            "## Bad input",
            "",
            "Rows knowable from the inputs must fail at `pulumi preview` with zero AWS calls, naming the",
            "argument and the fix (the CLI's line is shown). Rows only AWS can know fail at `pulumi up`",
            "with the provider's one-line message (shown) and leave no state and no task.",
            "",
            "| # | input | argument | rejected at | message | result |",
            "|---|---|---|---|---|---|",
        ]
        for number, e in enumerate(rows, 1):
            lines.append(f"| {number} | {_cell(e.label)} | `{e.argument}` | {e.where} | {_cell(e.message, 500)} | "
                         f"{_cell(e.outcome)} |")
        lines.append("")
    return "\n".join(lines)
