"""Widening the dynamic-provider server's worker pool past its four threads.

Pulumi runs Python dynamic providers in ``python -m pulumi.dynamic``, a gRPC
server on ``ThreadPoolExecutor(max_workers=4)``. A create that waits for an
export holds its worker for the whole export, so the fifth export of a stack
(and every check, diff and read behind it) would queue until one of the first
four finished. Nothing in Pulumi makes the pool configurable, so once the
provider is loaded in that process, this module finds the server that
``pulumi.dynamic.__main__.main()`` is serving from (its frame is still live,
waiting for shutdown), raises the pool's limit and starts the threads at once.
Raising the limit alone is not enough: the executor spawns a thread on submit
only when its idle-semaphore is zero, and that semaphore over-counts (every
finished request adds one, whether or not the thread then takes another), so
after a burst of quick checks and diffs no new thread would ever be spawned.

It touches private names of Pulumi's module, grpc's server and the executor on
purpose: :func:`widen_provider_pool` reports what it found, and the test suite
fails when a Pulumi or grpc upgrade moves them (tests/test_workers.py).
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PROVIDER_WORKERS = 64
WORKERS_ENV = "EXPORT_IMAGE_PROVIDER_WORKERS"  # 4 gives Pulumi's stock pool (benchmark baseline)

_DONE = False
_LOCK = threading.Lock()


def _serving_executor() -> ThreadPoolExecutor | None:
    """The executor of the gRPC server that pulumi.dynamic's main() started, if this is that process."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is None or spec.name != "pulumi.dynamic.__main__":
        return None
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "__main__":
                server: Any = frame.f_locals.get("server")
                pool = getattr(getattr(server, "_state", None), "thread_pool", None)
                if isinstance(pool, ThreadPoolExecutor):
                    return pool
            frame = frame.f_back
    return None


def widen_provider_pool(workers: int | None = None) -> str:
    """Raise the provider server's worker limit to ``workers``, once; returns what happened."""
    global _DONE
    workers = workers or int(os.environ.get(WORKERS_ENV, PROVIDER_WORKERS))
    with _LOCK:
        if _DONE:
            return "already widened"
        pool = _serving_executor()
        if pool is None:
            return "not in a pulumi.dynamic provider process"
        needed = ("_max_workers", "_threads", "_idle_semaphore", "_adjust_thread_count", "_shutdown_lock")
        if not all(hasattr(pool, name) for name in needed):
            return "executor lacks the internals this relies on: left at its default"
        with pool._shutdown_lock:
            pool._max_workers = max(pool._max_workers, workers)
            pool._idle_semaphore = threading.Semaphore(0)
            for _ in range(pool._max_workers - len(pool._threads)):
                pool._adjust_thread_count()
        _DONE = True
        return f"widened to {len(pool._threads)} workers"
