"""Waiting for a free export slot, in arrival order.

AWS runs at most 5 export tasks per region at once by default, and one per
AMI. A create that hits either limit is not wrong, only early, so it waits in a
per-region queue and starts when a slot frees, first come first served. Slots
free when an export of this process ends (:func:`release` wakes the queue at
once) or elsewhere (noticed by retrying after a delay).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from .aws import ExportError
from .process import Cancelled

T = TypeVar("T")

# The (code, words in the message) pairs that mean "a limit is reached, try later".
# The codes are unsettled in AWS's documents: ResourceLimitExceeded is EC2's
# convention for the task limit; the emulator answers IncorrectState for the AMI.
SLOT_ERRORS: tuple[tuple[str, str], ...] = (
    ("ResourceLimitExceeded", ""),
    ("IncorrectState", "in progress"),
)


def is_slot_error(error: ExportError) -> bool:
    return any(error.code == code and words in error.message.lower() for code, words in SLOT_ERRORS)


class SlotQueue:
    """Creates waiting for a slot in one region; only the oldest one retries."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()

    def start(
        self,
        attempt: Callable[[], T],
        deadline: float,
        retry_delay: float,
        on_wait: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        cancelled: threading.Event | None = None,
    ) -> T:
        """``attempt()`` now, or when a slot frees, in arrival order; ExportError on other failures.

        Once ``cancelled`` is set (wake the queue with :meth:`release`), raises Cancelled instead of attempting.
        """
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            ahead = len(self._waiting) - 1
        try:
            waited = ahead > 0
            if waited:
                on_wait(f"{ahead} earlier export(s) of this stack waiting")
            while True:
                with self._changed:
                    while self._waiting[0] is not ticket and not (cancelled and cancelled.is_set()):
                        self._changed.wait(max(0.0, deadline - clock()))
                        if clock() >= deadline:
                            raise TimeoutError("no export slot became free before the timeout")
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled()
                try:
                    return attempt()
                except ExportError as error:
                    if not is_slot_error(error):
                        raise
                    if not waited:
                        on_wait(f"{error.code}: {error.message}")
                        waited = True
                if clock() + retry_delay >= deadline:
                    raise TimeoutError("no export slot became free before the timeout")
                with self._changed:
                    self._changed.wait(retry_delay)
        finally:
            with self._changed:
                self._waiting.remove(ticket)
                self._changed.notify_all()

    def release(self) -> None:
        """An export of this process ended: let the oldest waiter try now."""
        with self._changed:
            self._changed.notify_all()


_QUEUES: dict[str, SlotQueue] = {}
_QUEUES_LOCK = threading.Lock()


def queue_for(region: str) -> SlotQueue:
    with _QUEUES_LOCK:
        return _QUEUES.setdefault(region, SlotQueue())
