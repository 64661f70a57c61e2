"""Many exports at once, through the real provider server (``python -m pulumi.dynamic``).

The server serves on four threads; workers.py widens that, and the overlap test
fails if a Pulumi or grpc upgrade moves what workers.py reaches for. Creates
that hit AWS's limits wait in arrival order; concurrent reads share describes.
None of these depend on how fast the machine is.
"""

from __future__ import annotations

import threading
import time

from engine import DynamicProviderProcess
from test_provider import FAST_WAITER, props, world  # noqa: F401 - fixture

from export_image_provider import ImageExportProvider
from export_image_provider.workers import widen_provider_pool

EXPORTS = 8


def test_widening_is_a_no_op_outside_the_provider_process():
    assert widen_provider_pool() == "not in a pulumi.dynamic provider process"


def register_images(emulator, count):
    ec2 = emulator.client("ec2")
    return [
        ec2.register_image(Name=f"concurrency-{i}-{time.time_ns()}", Architecture="x86_64",
                           RootDeviceName="/dev/xvda", VirtualizationType="hvm")["ImageId"]
        for i in range(count)
    ]


def test_creates_beyond_four_run_at_once_in_the_provider_server(world, emulator):
    emulator.reset()
    emulator.set_config(export_seconds=4, max_active=EXPORTS)
    ec2 = emulator.client("ec2")
    images = register_images(emulator, EXPORTS)
    server = DynamicProviderProcess(ImageExportProvider(), env={"EXPORT_IMAGE_PROVIDER_WAITER": FAST_WAITER})
    try:
        server.configure({"aws:region": "us-east-1"})
        results: dict[int, tuple[str, dict]] = {}

        def create(i: int) -> None:
            inputs, failures = server.check(props(world, image_id=images[i]))
            assert not failures
            results[i] = server.create(f"e{i}", inputs)

        threads = [threading.Thread(target=create, args=(i,)) for i in range(EXPORTS)]
        for thread in threads:
            thread.start()
        most_active = 0
        while any(t.is_alive() for t in threads):
            described = ec2.describe_export_image_tasks()["ExportImageTasks"]
            most_active = max(most_active, sum(t["Status"] == "active" for t in described))
            time.sleep(0.1)
        for thread in threads:
            thread.join()
    finally:
        server.close()
    assert len(results) == EXPORTS, "".join(server.stderr)
    assert all(outs["status"] == "completed" for _, outs in results.values())
    assert most_active == EXPORTS, f"only {most_active} exports ran at once\n" + "".join(server.stderr)


def test_creates_over_the_limit_wait_for_a_slot_in_arrival_order(world, emulator):
    emulator.reset()
    emulator.set_config(export_seconds=8, max_active=2)  # long enough that no slot frees while arrivals are staged
    images = register_images(emulator, 5)
    server = DynamicProviderProcess(ImageExportProvider(), env={"EXPORT_IMAGE_PROVIDER_WAITER": FAST_WAITER})
    try:
        server.configure({"aws:region": "us-east-1"})
        inputs = [server.check(props(world, image_id=image))[0] for image in images]
        results: dict[int, tuple[str, dict]] = {}
        threads = []
        for i in range(5):
            threads.append(threading.Thread(target=lambda i=i: results.__setitem__(i, server.create(f"l{i}", inputs[i]))))
            threads[-1].start()
            # Arrival order is the point: each create is let in once the one before it
            # has started an export or is waiting for a slot.
            wait_for = "waiting for a free export slot" if i >= 2 else "started export task"
            deadline = time.monotonic() + 20
            while sum(wait_for in line and inputs[i]["resource_key"].rsplit("/", 1)[-1] in line
                      for line in server.stderr) == 0:
                assert time.monotonic() < deadline, "".join(server.stderr)
                time.sleep(0.02)
        for thread in threads:
            thread.join()
    finally:
        server.close()
    assert sorted(results) == list(range(5)), "".join(server.stderr)
    described = emulator.control("GET", "tasks")["tasks"]
    assert sorted(t["ImageId"] for t in described) == sorted(images)
    starts = [line for line in server.stderr if "started export task" in line]
    order = [next(i for i in range(5) if f" of {images[i]} " in line) for line in starts]
    assert order == [0, 1, 2, 3, 4], starts


def test_concurrent_reads_share_one_describe(world, emulator):
    emulator.reset()
    emulator.set_config(export_seconds=0, max_active=20)
    images = register_images(emulator, 12)
    server = DynamicProviderProcess(ImageExportProvider(), env={"EXPORT_IMAGE_PROVIDER_WAITER": FAST_WAITER})
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
