"""Many exports at once, through the real provider server (``python -m pulumi.dynamic``).

The server serves on four threads; workers.py widens that, and the overlap test
fails if a Pulumi or grpc upgrade moves what workers.py reaches for. Creates
that hit AWS's limits wait in arrival order; concurrent reads share describes.
None of these depend on how fast the machine is: exports last far longer than
any test runs (600 s of emulator time) and end when the test moves the
emulator's clock, and what is asserted is the emulator's own record of tasks.
Timeouts below only stop a broken run from hanging.
"""

from __future__ import annotations

import threading
import time

from conftest import wait_until
from engine import DynamicProviderProcess
from test_provider import FAST_WAITER, props, world  # noqa: F401 - fixture

from export_image_provider import ImageExportProvider
from export_image_provider.workers import widen_provider_pool

EXPORTS = 8
LONG = 600  # emulator seconds: no export ends before the test moves the emulator's clock
GUARD = 120  # wall-clock seconds before a wait that should end is called broken


def test_widening_is_a_no_op_outside_the_provider_process():
    assert widen_provider_pool() == "not in a pulumi.dynamic provider process"


def register_images(emulator, count):
    ec2 = emulator.client("ec2")
    return [
        ec2.register_image(Name=f"concurrency-{i}-{time.time_ns()}", Architecture="x86_64",
                           RootDeviceName="/dev/xvda", VirtualizationType="hvm")["ImageId"]
        for i in range(count)
    ]


def join_all(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + GUARD
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def active_tasks(emulator) -> int:
    return sum(t["Status"] == "active" for t in emulator.control("GET", "tasks")["tasks"])


def test_creates_beyond_four_run_at_once_in_the_provider_server(world, emulator):
    emulator.reset()
    emulator.set_config(export_seconds=LONG, max_active=EXPORTS)
    images = register_images(emulator, EXPORTS)
    server = DynamicProviderProcess(ImageExportProvider(), env={"EXPORT_IMAGE_PROVIDER_WAITER": FAST_WAITER})
    try:
        server.configure({"aws:region": "us-east-1"})
        results: dict[int, tuple[str, dict]] = {}

        def create(i: int) -> None:
            inputs, failures = server.check(props(world, image_id=images[i]))
            assert not failures
            results[i] = server.create(f"e{i}", inputs)

        threads = [threading.Thread(target=create, args=(i,), daemon=True) for i in range(EXPORTS)]
        for thread in threads:
            thread.start()
        # Every create waits for its export, which cannot end before the clock moves: all
        # EXPORTS are active at once only if the server runs all the creates at once.
        try:
            all_active = wait_until(lambda: active_tasks(emulator) == EXPORTS, GUARD, "every export active")
        except AssertionError:
            all_active = False
        emulator.advance(LONG)
        join_all(threads)
    finally:
        server.close()
    assert all_active, f"only {active_tasks(emulator)} exports ran at once\n" + "".join(server.stderr)
    assert len(results) == EXPORTS, "".join(server.stderr)
    assert all(outs["status"] == "completed" for _, outs in results.values())


def test_creates_over_the_limit_wait_for_a_slot_in_arrival_order(world, emulator):
    emulator.reset()
    emulator.set_config(export_seconds=LONG, max_active=2)
    images = register_images(emulator, 5)
    server = DynamicProviderProcess(ImageExportProvider(), env={"EXPORT_IMAGE_PROVIDER_WAITER": FAST_WAITER})
    try:
        server.configure({"aws:region": "us-east-1"})
        inputs = [server.check(props(world, image_id=image))[0] for image in images]
        results: dict[int, tuple[str, dict]] = {}
        threads = []
        for i in range(5):
            threads.append(threading.Thread(target=lambda i=i: results.__setitem__(i, server.create(f"l{i}", inputs[i])),
                                            daemon=True))
            threads[-1].start()
            # Arrival order is the point: each create is let in once the one before it
            # has started an export or is waiting for a slot.
            said = "waiting for a free export slot" if i >= 2 else "started export task"
            name = inputs[i]["resource_key"].rsplit("/", 1)[-1]
            wait_until(lambda: any(said in line and name in line for line in server.stderr), GUARD,
                       f"create {i}: {said}", interval=0.02)
        # Two slots: each move of the clock ends the running exports and lets the next ones in.
        for started in (2, 4, 5):
            wait_until(lambda n=started: len(emulator.control("GET", "tasks")["tasks"]) >= n, GUARD,
                       f"{started} exports started")
            emulator.advance(LONG)
        join_all(threads)
    finally:
        server.close()
    assert sorted(results) == list(range(5)), "".join(server.stderr)
    described = emulator.client("ec2").describe_export_image_tasks()["ExportImageTasks"]  # in creation order
    by_id = {t["ExportImageTaskId"]: t for t in emulator.control("GET", "tasks")["tasks"]}
    assert [images.index(by_id[t["ExportImageTaskId"]]["ImageId"]) for t in described] == [0, 1, 2, 3, 4]


def test_concurrent_reads_share_one_describe(world, emulator):
    emulator.reset()
    emulator.set_config(export_seconds=0, max_active=20)
    images = register_images(emulator, 12)
    # Reads that arrive within the batch window, or while its describe is in flight, share it; a
    # window far longer than starting twelve threads takes keeps this from depending on the machine.
    server = DynamicProviderProcess(ImageExportProvider(), env={"EXPORT_IMAGE_PROVIDER_WAITER": FAST_WAITER,
                                                                "EXPORT_IMAGE_PROVIDER_BATCH_WINDOW": "2"})
    try:
        server.configure({"aws:region": "us-east-1"})
        created = [server.create(f"r{i}", server.check(props(world, image_id=image))[0])
                   for i, image in enumerate(images)]
        emulator.reset_calls()
        reads: list[tuple[str, dict]] = []
        threads = [threading.Thread(target=lambda c=c: reads.append(server.read("r", *c))) for c in created]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.close()
    assert sorted(r[0] for r in reads) == sorted(c[0] for c in created)
    describes = emulator.calls().get("ec2:DescribeExportImageTasks", 0)
    assert 1 <= describes <= 2, describes
