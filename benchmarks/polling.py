"""Polling cost and lag: the provider's waiter against a 30-second shell loop, for every progress shape.

Both wait for emulated exports over real HTTP (boto3 to the emulator); what
differs is when they poll. The provider's waiter runs against every shape of
the emulator's ``progress_curve`` (its own curve is only one of them); the
shell loop polls blind, so its figures do not depend on the shape and it runs
on the default one. For the long cases the emulator and the waiters share a
simulated clock, so a 4-hour export takes a second; the 60-second case runs on
the wall clock (default shape only). Lag is the time from the task's completion
to the waiter noticing it; calls are DescribeExportImageTasks calls.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from export_image_provider.aws import AwsGateway, ExportTask
from export_image_provider.emulator import start_emulator
from export_image_provider.emulator.curve import DEFAULT_SHAPE, SHAPES
from export_image_provider.emulator.seed import seed
from export_image_provider.spec import to_spec
from export_image_provider.waiter import load_policy, wait_for_export

SHELL_LOOP_SECONDS = 30.0


class SimulatedClock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class Result:
    calls: int
    lag: float
    duration: float  # the export's own, not the round figure of its row


def shell_loop(describe: Callable[[], ExportTask | None], first: ExportTask, clock: Callable[[], float],
               sleep: Callable[[float], None]) -> ExportTask:
    """What people run today: ``while not completed: sleep 30; describe``."""
    task = first
    while task.status == "active":
        sleep(SHELL_LOOP_SECONDS)
        task = describe() or task
    return task


def _one(emulator, world, duration: float, clock: Callable[[], float], sleep: Callable[[float], None],
         waiter: str, image_id: str, shape: str) -> Result:
    emulator.set_config(export_seconds=duration, max_active=50, progress_curve=shape)
    gateway = AwsGateway("us-east-1")
    spec = to_spec({"image_id": image_id, "disk_image_format": "VMDK", "s3_bucket": world["bucket"]})
    first = gateway.start_export(spec, f"bench-{time.time_ns()}", {})
    calls = 0

    def describe() -> ExportTask | None:
        nonlocal calls
        calls += 1
        return gateway.describe_many([first.task_id]).get(first.task_id)

    if waiter == "provider":
        task = wait_for_export(describe, first, 10 * duration + 600, load_policy({}), None, clock, sleep)
    else:
        task = shell_loop(describe, first, clock, sleep)
    assert task.status == "completed", task
    record = next(t for b in emulator.backends._backends.values() for t in b.tasks.values()
                  if t.task_id == first.task_id)
    return Result(calls, clock() - record.deadline, duration)


def measure(durations_simulated: tuple[float, ...] = (300.0, 600.0, 900.0, 3600.0, 4 * 3600.0), live: float | None = 60.0,
            repeats: int = 3, shapes: tuple[str, ...] = tuple(SHAPES)) -> list[dict[str, object]]:
    """Rows of (duration, shape, waiter, calls per hour, worst lag) for the polling table."""
    cases = [(d, shape, "provider") for d in durations_simulated for shape in shapes]
    cases += [(d, DEFAULT_SHAPE, "shell loop") for d in durations_simulated]
    rows: list[dict[str, object]] = []
    saved = dict(os.environ)
    clock = SimulatedClock()
    emulator = start_emulator(clock=clock)
    try:
        os.environ.update(AWS_ENDPOINT_URL=emulator.url, AWS_ACCESS_KEY_ID="testing",
                          AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
        world = seed(emulator.url)
        ec2 = AwsGateway("us-east-1").ec2
        images = [ec2.register_image(Name=f"poll-{i}", Architecture="x86_64", RootDeviceName="/dev/xvda",
                                     VirtualizationType="hvm")["ImageId"] for i in range(len(cases) * repeats + 2)]
        if live:
            emulator.backends.clock = time.monotonic
            emulator.backends.offset = 0.0
            for waiter in ("provider", "shell loop"):
                result = _one(emulator, world, live, time.monotonic, time.sleep, waiter, images.pop(), DEFAULT_SHAPE)
                rows.append(_row(live, "wall", DEFAULT_SHAPE, waiter, [result]))
        emulator.backends.clock = clock
        for duration, shape, waiter in cases:
            # Real durations are not multiples of the shell loop's 30 s: each repeat adds
            # the same pseudo-random part of a period for both waiters.
            extras = [random.Random(f"{duration}/{i}").uniform(0, SHELL_LOOP_SECONDS) for i in range(repeats)]
            results = [_one(emulator, world, duration + extra, clock, clock.sleep, waiter, images.pop(), shape)
                       for extra in extras]
            rows.append(_row(duration, "simulated", shape, waiter, results))
    finally:
        emulator.stop()
        os.environ.clear()
        os.environ.update(saved)
    return rows


def _row(duration: float, clock: str, shape: str, waiter: str, results: list[Result]) -> dict[str, object]:
    """The worst of the repeats; describes per hour of each export's own duration (30 s more at most)."""
    calls = max(r.calls for r in results)
    return {
        "duration_s": duration,
        "clock": clock,
        "shape": shape,
        "waiter": waiter,
        "describe_calls": calls,
        "calls_per_hour": max(r.calls * 3600 / r.duration for r in results),
        "worst_lag_s": max(r.lag for r in results),
        "mean_lag_s": sum(r.lag for r in results) / len(results),
    }
