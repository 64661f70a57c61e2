"""The slot queue: per-AMI waits never hold back other AMIs; each kind of wait keeps arrival order.

Most tests drive SlotQueue directly with a fake region (a pure component: the
attempt function raises ExportError as the gateway would). The last one goes
through the provider to the emulator and reads the order of task creation from
DescribeExportImageTasks (it lists tasks in creation order). Threads are
sequenced by what the queue has done (attempts recorded), never by sleeping.
"""

from __future__ import annotations

import threading
import time

import pytest
from test_concurrency import register_images
from test_provider import props, world  # noqa: F401 - fixture

from export_image_provider import ImageExportProvider
from export_image_provider.aws import ExportError
from export_image_provider.slots import AMI, REGION, SlotQueue, is_slot_error, slot_error_kind

LONG = 60.0  # deadline and join guard: never reached when the queue behaves


class FakeRegion:
    """AWS's two limits, with the emulator's wording: one active export per AMI, ``limit`` per region."""

    def __init__(self, limit: int = 5) -> None:
        self.limit = limit
        self.active: set[str] = set()
        self.started: list[str] = []
        self.attempts: list[str] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def attempt(self, ami: str, name: str):
        def call() -> str:
            with self.lock:
                self.attempts.append(name)
                self.changed.notify_all()
                if ami in self.active:
                    raise ExportError("ExportImage", "IncorrectState", f"An export of image {ami} is already in progress")
                if len(self.active) >= self.limit:
                    raise ExportError("ExportImage", "ResourceLimitExceeded", "You have reached the maximum")
                self.active.add(ami)
                self.started.append(name)
                self.changed.notify_all()
                return name
        return call

    def finish(self, ami: str) -> None:
        with self.lock:
            self.active.discard(ami)

    def wait_attempts(self, name: str, count: int = 1) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.attempts.count(name) >= count, LONG), self.attempts


class Create(threading.Thread):
    """One create waiting in ``queue``; ``result`` is the started name or the exception."""

    def __init__(self, queue: SlotQueue, region: FakeRegion, ami: str, name: str, retry: float = LONG,
                 deadline: float = LONG) -> None:
        super().__init__(daemon=True)
        self.args_ = (queue, region.attempt(ami, name), time.monotonic() + deadline, retry, ami)
        self.waits: list[str] = []
        self.result: object = None
        self.start()

    def run(self) -> None:
        queue, attempt, deadline, retry, ami = self.args_
        try:
            self.result = queue.start(attempt, deadline, retry, self.waits.append, image_id=ami)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            self.result = error

    def done(self) -> object:
        self.join(LONG)
        assert not self.is_alive(), "create still waiting"
        return self.result


def test_a_create_waiting_on_its_ami_does_not_hold_back_other_amis():
    queue, region = SlotQueue(), FakeRegion(limit=5)
    region.active.add("ami-x")  # a stalled export of ami-x, started elsewhere
    second_format = Create(queue, region, "ami-x", "x-raw")
    region.wait_attempts("x-raw")
    others = [Create(queue, region, ami, ami) for ami in ("ami-y", "ami-z")]
    assert [c.done() for c in others] == ["ami-y", "ami-z"]
    assert second_format.is_alive() and region.started == ["ami-y", "ami-z"]
    region.finish("ami-x")
    queue.release()
    assert second_format.done() == "x-raw"
    assert second_format.waits == ["IncorrectState: An export of image ami-x is already in progress"]


def test_creates_of_one_ami_start_in_arrival_order():
    queue, region = SlotQueue(), FakeRegion(limit=5)
    region.active.add("ami-x")
    first = Create(queue, region, "ami-x", "x-1")
    region.wait_attempts("x-1")
    second = Create(queue, region, "ami-x", "x-2")
    other = Create(queue, region, "ami-y", "y")
    assert other.done() == "y"
    assert other.waits == []  # nothing it waits behind: ami-x's creates wait on their AMI
    assert "x-2" not in region.attempts  # queued behind x-1, not tried
    region.finish("ami-x")
    queue.release()
    assert first.done() == "x-1"
    region.wait_attempts("x-2")
    assert second.is_alive()
    region.finish("ami-x")
    queue.release()
    assert second.done() == "x-2"
    assert region.started == ["y", "x-1", "x-2"]
    assert second.waits[0] == "1 earlier export(s) of this stack waiting"


def test_creates_refused_by_the_region_limit_start_in_arrival_order():
    queue, region = SlotQueue(), FakeRegion(limit=1)
    region.active.add("ami-elsewhere")
    creates = []
    for name in ("a", "b", "c"):
        creates.append(Create(queue, region, f"ami-{name}", name))
        if name == "a":
            region.wait_attempts("a")
    assert region.attempts == ["a"]  # b and c wait behind a without trying
    for started, ami in enumerate(("ami-elsewhere", "ami-a", "ami-b"), start=1):
        region.finish(ami)
        queue.release()
        with region.changed:
            assert region.changed.wait_for(lambda n=started: len(region.started) >= n, LONG)
    assert [c.done() for c in creates] == ["a", "b", "c"]
    assert region.started == ["a", "b", "c"]


def test_an_ami_wait_keeps_its_place_among_region_waits():
    queue, region = SlotQueue(), FakeRegion(limit=1)
    region.active.update({"ami-x"})  # the region's one slot, held by ami-x
    x2 = Create(queue, region, "ami-x", "x-2")
    region.wait_attempts("x-2")
    y = Create(queue, region, "ami-y", "y")
    region.wait_attempts("y")  # ami-x's wait does not hold y back: y tries, and the region refuses it
    region.finish("ami-x")
    queue.release()
    assert x2.done() == "x-2" and y.is_alive()  # x-2 was refused first: first to try
    region.finish("ami-x")
    queue.release()
    assert y.done() == "y"
    assert region.started == ["x-2", "y"]


def test_while_one_attempt_runs_a_due_create_neither_attempts_nor_spins():
    """Attempts are made one at a time; a create whose retry falls due meanwhile sleeps until woken."""
    queue, region = SlotQueue(), FakeRegion(limit=5)
    region.active.add("ami-x")
    clock_calls = []

    def clock() -> float:
        clock_calls.append(1)
        return time.monotonic()

    def run_x() -> None:
        queue.start(region.attempt("ami-x", "x"), time.monotonic() + LONG, 0.05, lambda _line: None, clock,
                    image_id="ami-x")

    inside, leave = threading.Event(), threading.Event()

    def slow_attempt() -> str:
        inside.set()
        leave.wait(LONG)
        return "y"

    x = threading.Thread(target=run_x, daemon=True)
    x.start()
    region.wait_attempts("x")
    y = threading.Thread(target=queue.start, args=(slow_attempt, time.monotonic() + LONG, LONG, lambda _line: None),
                         kwargs={"image_id": "ami-y"}, daemon=True)
    y.start()
    assert inside.wait(LONG)
    attempts, calls = region.attempts.count("x"), len(clock_calls)
    with region.changed:  # an observation window: x's retry falls due within it
        assert not region.changed.wait_for(lambda: region.attempts.count("x") > attempts, 0.5)
    assert len(clock_calls) - calls < 10
    leave.set()
    region.finish("ami-x")
    queue.release()
    for create in (x, y):
        create.join(LONG)
        assert not create.is_alive()
    assert region.started == ["x"]


@pytest.mark.parametrize("code, message", [
    ("IncorrectState", "Image ami-x is currently being exported by export-ami-0123456789abcdef0"),
    ("ConcurrentTagAccess", "The export task limit was reached"),
    ("InvalidParameter", "The service role vmimport provided does not exist"),
])
def test_an_unknown_refusal_fails_at_once_with_one_line(code, message):
    queue = SlotQueue()
    calls = []

    def attempt():
        calls.append(1)
        raise ExportError("ExportImage", code, message)

    with pytest.raises(ExportError) as raised:
        queue.start(attempt, time.monotonic() + LONG, LONG, lambda _: None, image_id="ami-x")
    assert calls == [1]
    assert str(raised.value) == f"ExportImage failed: {code}: {message}" and "\n" not in str(raised.value)


def test_a_recognised_wait_ends_at_the_deadline():
    queue, region = SlotQueue(), FakeRegion(limit=0)
    with pytest.raises(TimeoutError, match="no export slot became free"):
        queue.start(region.attempt("ami-x", "x"), time.monotonic() + 0.3, 0.1, lambda _: None, image_id="ami-x")


@pytest.mark.parametrize("code, message, kind", [
    ("ResourceLimitExceeded", "You have reached the maximum of 5 export tasks in progress in us-east-1", REGION),
    ("ResourceLimitExceeded", "any wording at all", REGION),
    ("IncorrectState", "An export of image ami-0123456789abcdef0 is already in progress: export-ami-1", AMI),
    ("IncorrectState", "The task export-ami-1 is completed and cannot be cancelled", None),
    ("InvalidAMIID.NotFound", "The image id '[ami-1]' does not exist", None),
])
def test_slot_errors_are_told_apart_by_code_and_words(code, message, kind):
    assert slot_error_kind(ExportError("ExportImage", code, message)) == kind
    assert is_slot_error(ExportError("ExportImage", code, message)) == (kind is not None)


def test_through_the_provider_another_amis_create_starts_while_a_same_ami_create_waits(world, emulator):
    """A stalled export of AMI x; a second format of x waits; an export of AMI y starts meanwhile."""
    emulator.reset()
    emulator.set_config(export_seconds=2, max_active=5, stall_at_progress=50)
    x, y = register_images(emulator, 2)
    ec2 = emulator.client("ec2")
    provider = ImageExportProvider()
    stalled = provider.create(props(world, image_id=x, wait_for_completion=False)).id
    results: dict[str, object] = {}

    def create(label: str, **changes: object) -> threading.Thread:
        def run() -> None:
            try:
                results[label] = provider.create(props(world, wait_for_completion=False, **changes)).id
            except Exception as error:  # noqa: BLE001 - reported below
                results[label] = error
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    same_ami = create("x-raw", image_id=x, disk_image_format="raw")
    deadline = time.monotonic() + LONG
    while sum(c["action"] == "ExportImage" for c in emulator.call_detail()) < 2:  # x-raw was refused once
        assert time.monotonic() < deadline and same_ami.is_alive(), results
        time.sleep(0.05)
    other_ami = create("y", image_id=y)
    other_ami.join(LONG)
    ec2.cancel_export_task(ExportTaskId=stalled)
    same_ami.join(LONG)
    created = [t["ExportImageTaskId"] for t in ec2.describe_export_image_tasks()["ExportImageTasks"]]
    assert created == [stalled, results["y"], results["x-raw"]], results
