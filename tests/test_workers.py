"""Exports past the dynamic provider's four workers, through the real provider server.

``python -m pulumi.dynamic`` serves on four threads; workers.py widens that. This
pins it against the server itself: if a Pulumi or grpc upgrade moves what
workers.py reaches for, the overlap test fails rather than exports silently
queueing again.
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


def test_creates_beyond_four_run_at_once_in_the_provider_server(world, emulator):
    emulator.reset()
    emulator.set_config(export_seconds=4, max_active=EXPORTS)
    ec2 = emulator.client("ec2")
    images = [
        ec2.register_image(Name=f"overlap-{i}-{time.time_ns()}", Architecture="x86_64",
                           RootDeviceName="/dev/xvda", VirtualizationType="hvm")["ImageId"]
        for i in range(EXPORTS)
    ]
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
