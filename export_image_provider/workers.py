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
purpose: :func:`widen_provider_pool` reports what it found,
:func:`prepare_provider_process` turns anything that did not work (here and in
process.py) into warnings the provider shows on the resource, and the test suite
fails when a Pulumi or grpc upgrade moves them (tests/test_concurrency.py,
tests/test_interrupt.py).
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .process import in_provider_process, install

PROVIDER_WORKERS = 64
WORKERS_ENV = "EXPORT_IMAGE_PROVIDER_WORKERS"  # 4 gives Pulumi's stock pool (benchmark baseline)

_DONE = False
_LOCK = threading.Lock()


def _serving_server() -> Any:
    """The gRPC server that pulumi.dynamic's main() started, if this is that process."""
    if not in_provider_process():
        return None
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "__main__":
                server = frame.f_locals.get("server")
                if server is not None:
                    return server
            frame = frame.f_back
    return None


def _serving_executor() -> ThreadPoolExecutor | None:
    pool = getattr(getattr(_serving_server(), "_state", None), "thread_pool", None)
    return pool if isinstance(pool, ThreadPoolExecutor) else None


def widen_provider_pool(workers: int | None = None) -> str:
    """Raise the provider server's worker limit to ``workers``, once; returns what happened."""
    global _DONE
    workers = workers or int(os.environ.get(WORKERS_ENV, PROVIDER_WORKERS))
    with _LOCK:
        if _DONE:
            return "already widened"
        if not in_provider_process():
            return "not in a pulumi.dynamic provider process"
        pool = _serving_executor()
        if pool is None:
            return "the server's thread pool was not found"
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


def prepare_provider_process() -> list[str]:
    """Widen the pool and install process.py's hooks; what did not work, as warnings for the user."""
    if not in_provider_process():
        return []
    warnings = []
    outcome = widen_provider_pool()
    if not outcome.startswith(("widened", "already")):
        warnings.append(f"the provider's worker pool could not be widened ({outcome}): exports beyond the "
                        "fourth, and reads and diffs behind them, wait for a free worker")
    warnings += [f"{problem}: Ctrl-C, progress on the resource's row or one-line errors may not work "
                 "with this Pulumi SDK (see export_image_provider/process.py)" for problem in install(_serving_server())]
    return warnings
