"""Ctrl-C, a vanished engine, progress on the resource's row and one-line failures.

The first tests drive the real provider server (``python -m pulumi.dynamic``)
over gRPC with :class:`FakeEngine` as the engine: it serves the engine's ``Log``
and records each request, so the tests see what the CLI would show and where.
The last ones run the real CLI (with this project's own Python language host,
see tools/pulumi-cli) and signal it as a terminal or a CI runner does. What
"started" means comes from the emulator's own records (ExportImage calls), not
from timing.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

from conftest import wait_until
from engine import DynamicProviderProcess
from pulumi_cli import kill_session, session_processes
from reliability_report import diagnostics, new_bucket, output_of, provider_errors, register_amis, task_records
from test_concurrency import register_images
from test_provider import FAST_WAITER, props, world  # noqa: F401 - fixture

from export_image_provider import ImageExportProvider

EXPORT_IMAGE = "ec2:ExportImage"
STARTED: list = []  # CLI runs started in the background by the current test

pytest_plugins = ["reliability_report"]


@dataclass(frozen=True)
class Logged:
    severity: int
    message: str
    urn: str
    ephemeral: bool


class FakeEngine(engine_pb2_grpc.EngineServicer):
    """The engine's gRPC service as far as a provider uses it: Log, recorded."""

    def __init__(self) -> None:
        self.logged: list[Logged] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        engine_pb2_grpc.add_EngineServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def Log(self, request, context):  # noqa: N802 - gRPC's name
        self.logged.append(Logged(request.severity, request.message, request.urn, request.ephemeral))
        return empty_pb2.Empty()

    def stop(self) -> None:
        self.server.stop(0)

    def lines(self, text: str) -> list[Logged]:
        return [entry for entry in self.logged if text in entry.message]


@pytest.fixture(autouse=True)
def fresh(emulator):
    """No tasks or call counts of another test, and the emulator's start-up config."""
    emulator.reset()
    yield
    while STARTED:  # a CLI run that a failing test left behind, with its plugins
        kill_session(STARTED.pop().pid)
    emulator.reset()


@pytest.fixture
def engine():
    fake = FakeEngine()
    yield fake
    fake.stop()


def export_calls(emulator) -> int:
    """ExportImage calls served, refused ones (no free slot) included."""
    return emulator.calls().get(EXPORT_IMAGE, 0)


def exports_started(emulator) -> int:
    """Export tasks the emulator holds: each one an ExportImage that started an export."""
    return len(emulator.client("ec2").describe_export_image_tasks()["ExportImageTasks"])


def provider_process(engine: FakeEngine) -> DynamicProviderProcess:
    """The real provider server, started as the engine at ``engine`` would, and configured."""
    server = DynamicProviderProcess(ImageExportProvider(), env={"EXPORT_IMAGE_PROVIDER_WAITER": FAST_WAITER},
                                    engine=engine.address)
    server.configure({"aws:region": "us-east-1"})
    return server


@dataclass
class Creates:
    """Creates of ``e0``, ``e1``, ... sent at once, each from a thread of its own, as the engine does."""

    server: DynamicProviderProcess
    threads: list[threading.Thread]
    errors: dict[int, str]
    results: dict[int, tuple]

    def join(self, timeout: float) -> bool:
        """Whether every create has returned within ``timeout`` seconds."""
        for thread in self.threads:
            thread.join(timeout=timeout)
        return not any(thread.is_alive() for thread in self.threads)


def start_creates(emulator, engine, world, count: int, **config) -> Creates:
    emulator.reset()
    emulator.set_config(**config)
    images = register_images(emulator, count)
    creates = Creates(provider_process(engine), [], {}, {})

    def create(i: int) -> None:
        inputs, failures = creates.server.check(props(world, image_id=images[i], resource_key=f"proj/test/e{i}"))
        assert not failures
        try:
            creates.results[i] = creates.server.create(f"e{i}", inputs)
        except grpc.RpcError as error:
            creates.errors[i] = error.details()

    creates.threads = [threading.Thread(target=create, args=(i,), daemon=True) for i in range(count)]
    for thread in creates.threads:
        thread.start()
    return creates


def test_cancel_stops_queued_and_waiting_creates_with_one_line_each(world, emulator, engine):
    creates = start_creates(emulator, engine, world, 3, export_seconds=600, max_active=1)
    errors, server = creates.errors, creates.server
    try:
        wait_until(lambda: len(engine.lines("waiting for a free export slot")) >= 2, 60, "two creates queued")
        calls = export_calls(emulator)
        server.stub.Cancel(empty_pb2.Empty())
        assert creates.join(15), "a create still runs 15 s after Cancel"
        time.sleep(1)  # the provider's retry delay is 0.2 s: a queued create would have tried by now
        assert export_calls(emulator) <= calls + 1  # at most the attempt in flight when Cancel came
        assert exports_started(emulator) == 1
    finally:
        server.close()
    assert not creates.results
    assert len(errors) == 3
    for message in errors.values():
        assert "\n" not in message.strip() and "Traceback" not in message, message
    waiting = [m for m in errors.values() if "keeps running in AWS and the next `pulumi up` resumes it" in m]
    queued = [m for m in errors.values() if "cancelled before an export slot was free; nothing was started" in m]
    assert len(waiting) == 1 and len(queued) == 2, errors


def test_progress_is_logged_on_each_resource_row(world, emulator, engine):
    creates = start_creates(emulator, engine, world, 2, export_seconds=3, max_active=1)
    try:
        assert creates.join(120)
    finally:
        creates.server.close()
    assert not creates.errors and len(creates.results) == 2
    for i in range(2):
        urn = DynamicProviderProcess.urn(f"e{i}")
        mine = [entry for entry in engine.logged if entry.urn == urn]
        assert all(entry.message.startswith(f"e{i}: ") and f"e{i}: e{i}" not in entry.message for entry in mine), mine
        kept = [entry.message for entry in mine if not entry.ephemeral]
        assert len(kept) == 2, kept
        assert "started export task" in kept[0] and "completed: s3://" in kept[1]
        assert any(" active " in entry.message and entry.ephemeral for entry in mine), mine
    assert not [entry for entry in engine.logged if not entry.urn], "a line without its resource"
    assert not [e for e in engine.logged if e.severity == engine_pb2.WARNING], "process.py/workers.py failed"
    queued = engine.lines("waiting for a free export slot")
    assert queued and all(entry.ephemeral for entry in queued)


# Stands in for a Pulumi or grpc upgrade that changes what workers.py reaches for: the server's
# pool is no longer a ThreadPoolExecutor.
OTHER_POOL = """
import concurrent.futures, grpc

class Pool(concurrent.futures.Executor):
    def __init__(self, inner):
        self.inner = inner

    def submit(self, *args, **kwargs):
        return self.inner.submit(*args, **kwargs)

    def shutdown(self, *args, **kwargs):
        return self.inner.shutdown(*args, **kwargs)

_server = grpc.server
grpc.server = lambda pool, *args, **kwargs: _server(Pool(pool), *args, **kwargs)
"""


def test_a_pool_that_cannot_be_widened_is_a_warning_on_the_resource(world, emulator, engine, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(OTHER_POOL)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    server = DynamicProviderProcess(ImageExportProvider(), env={"PYTHONPATH": path}, engine=engine.address)
    try:
        server.configure({"aws:region": "us-east-1"})
        server.check(props(world))
    finally:
        server.close()
    warnings = [e for e in engine.logged if e.severity == engine_pb2.WARNING]
    assert len(warnings) == 1 and warnings[0].urn == DynamicProviderProcess.urn("r"), engine.logged
    assert "worker pool could not be widened (the server's thread pool was not found)" in warnings[0].message


def test_failure_is_answered_with_its_one_line(world, emulator, engine):
    emulator.reset()
    emulator.set_config(export_seconds=2, fail_at_progress=30)
    server = provider_process(engine)
    try:
        inputs, _ = server.check(props(world, resource_key="proj/test/broken"))
        with pytest.raises(grpc.RpcError) as failed:
            server.create("broken", inputs)
    finally:
        server.close()
    message = failed.value.details()
    assert message.startswith("broken: export task export-ami-") and " ended deleted: " in message, message
    assert "\n" not in message.strip() and "Traceback" not in message


def test_provider_exits_and_starts_nothing_when_the_engine_is_gone(world, emulator, engine):
    creates = start_creates(emulator, engine, world, 2, export_seconds=600, max_active=1)
    server = creates.server
    try:
        wait_until(lambda: engine.lines("waiting for a free export slot"), 60, "a create queued")
        engine.stop()
        wait_until(lambda: any("is gone" in line for line in server.stderr), 15, "the provider noticing")
        first = emulator.client("ec2").describe_export_image_tasks()["ExportImageTasks"][0]["ExportImageTaskId"]
        emulator.client("ec2").cancel_export_task(ExportTaskId=first)  # a slot frees after the engine went away
        server.proc.wait(timeout=15)
        assert exports_started(emulator) == 1
    finally:
        server.close()


# -- through the CLI ----------------------------------------------------------------------------------
# The CLI and its plugins (language host, provider) run in one session, the plugins in process
# groups of their own; a terminal's Ctrl-C reaches the CLI's group only, which is what killpg does.


def exports(emulator, label: str, count: int) -> list[tuple[str, dict]]:
    amis = register_amis(emulator, count, label)
    bucket = new_bucket(emulator, label)
    return [(f"x{i}", {"image_id": ami, "disk_image_format": "VMDK", "s3_bucket": bucket})
            for i, ami in enumerate(amis)]


def start_up_of_queued_exports(emulator, make_project, label: str, count: int = 6, active: int = 2):
    """``pulumi up`` of ``count`` exports of which ``active`` run and the rest wait for a slot."""
    emulator.set_config(export_seconds=600, max_active=active)
    project = make_project(label, exports(emulator, label, count))
    emulator.reset_calls()
    proc = project.start("up", "--yes", "--skip-preview", "--parallel", "16")
    STARTED.append(proc)

    def queued() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"pulumi up ended early:\n{project.output_of(proc)}")
        return len(task_records(emulator)) == active and export_calls(emulator) > count

    wait_until(queued, 120, f"{active} exports running and the rest queued")
    return project, proc


def test_ctrl_c_starts_nothing_more_and_up_returns_within_seconds(world, emulator, make_project):
    project, proc = start_up_of_queued_exports(emulator, make_project, "int-ctrl-c")
    calls = export_calls(emulator)
    os.killpg(proc.pid, signal.SIGINT)
    interrupted = time.monotonic()
    proc.wait(timeout=120)
    returned = time.monotonic() - interrupted
    output = project.output_of(proc)
    time.sleep(1)
    assert export_calls(emulator) <= calls + 1 and len(task_records(emulator)) == 2, output
    assert proc.returncode != 0
    assert returned < 30, f"pulumi up returned {returned:.1f} s after Ctrl-C (the exports take 600 s)"
    errors = {name: line for name, line in provider_errors(output).items() if name.startswith("x")}
    assert sorted(errors) == [f"x{i}" for i in range(6)], output
    assert sum(line.endswith("cancelled before an export slot was free; nothing was started")
               for line in errors.values()) == 4, errors
    assert sum("keeps running in AWS and the next `pulumi up` resumes it" in line for line in errors.values()) == 2
    blocks = diagnostics(output)
    assert not any("Traceback" in line for name in errors for line in blocks[name]), blocks
    wait_until(lambda: not session_processes(proc.pid), 15, "every process of the run gone")
    assert project.pending_operations() == []
    # The two started exports are in the state as partial state (not initialised), with their tasks.
    kept = project.resources()
    assert sorted(r["id"] for r in kept.values()) == sorted(t["ExportImageTaskId"] for t in task_records(emulator))
    assert all(r.get("initErrors") for r in kept.values()), kept

    emulator.advance(600)  # the two running exports complete; the next up waits for them (Update)
    emulator.set_config(export_seconds=1, max_active=5)
    output = output_of(project.up())
    state = project.resources()
    assert len(state) == 6 and all(r["outputs"]["status"] == "completed" for r in state.values())
    assert all(state[name]["id"] == r["id"] for name, r in kept.items()), "the same two tasks, not new ones"
    assert len(task_records(emulator)) == 6
    blocks = {name: lines for name, lines in diagnostics(output).items() if name.startswith("x")}
    assert all(len(lines) <= 2 for lines in blocks.values()), blocks  # at most a start and a completion line
    assert project.pending_operations() == []


def test_kill_9_of_the_cli_leaves_no_process_and_starts_nothing(world, emulator, make_project):
    project, proc = start_up_of_queued_exports(emulator, make_project, "int-kill-9")
    running = [t["ExportImageTaskId"] for t in task_records(emulator)]
    os.kill(proc.pid, signal.SIGKILL)  # the CLI only: its plugins are left to notice
    killed = time.monotonic()
    ec2 = emulator.client("ec2")
    for task_id in running:  # slots free at once: an orphan would start the queued exports now
        ec2.cancel_export_task(ExportTaskId=task_id)
    wait_until(lambda: not session_processes(proc.pid), 30, "every process of the killed run gone")
    gone_after = time.monotonic() - killed
    time.sleep(1)
    assert sorted(t["ExportImageTaskId"] for t in task_records(emulator)) == sorted(running)
    assert gone_after < 30

    # Recovery as the README says: the lock and the pending creates the killed run left, then up.
    assert len(project.pending_operations()) == 6
    project.run("cancel", "--yes", project.stack)
    project.refresh("--clear-pending-creates")
    emulator.set_config(export_seconds=1, max_active=5)
    project.up()
    state = project.resources()
    assert len(state) == 6 and all(r["outputs"]["status"] == "completed" for r in state.values())
    assert project.pending_operations() == []
    assert len([t for t in task_records(emulator) if t["Status"] == "completed"]) == 6


def test_event_log_binds_progress_to_each_export(world, emulator, make_project):
    emulator.set_config(export_seconds=3, max_active=5)
    resources = exports(emulator, "int-events", 3)
    project = make_project("int-events", resources, extra_env={"PULUMI_DEBUG_COMMANDS": "true"})  # --event-log
    events_file = project.tmp / "events.jsonl"
    project.up("--event-log", str(events_file))
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    said = [e["diagnosticEvent"] for e in events if "diagnosticEvent" in e]
    for name, _ in resources:
        mine = [d for d in said if d.get("urn", "").endswith(f"::{name}")]
        progress = [d for d in mine if d.get("ephemeral")]
        kept = [d["message"].strip() for d in mine if not d.get("ephemeral")]
        assert any(" active " in d["message"] for d in progress), mine
        assert len(kept) == 2 and "started export task" in kept[0] and "completed: s3://" in kept[1], kept
        assert all(d["message"].startswith(f"{name}: ") for d in mine)
    assert not [d for d in said if "export-ami-" in d["message"] and "ImageExport" not in d.get("urn", "")], said
