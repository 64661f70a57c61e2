"""Waiting for a free export slot: in arrival order, and never behind another AMI.

AWS runs at most 5 export tasks per region at once by default, and one per
AMI. A create that hits either limit is not wrong, only early, so it waits in a
per-region queue and starts when a slot frees. The two limits queue apart:

- a create refused by the region limit waits behind every earlier create still
  waiting for the region (first come, first served, only the oldest retries);
- a create refused by the per-AMI rule waits only behind earlier creates of the
  same AMI: other AMIs' creates pass it while region slots are free.

Slots free when an export of this process ends (:meth:`SlotQueue.release`
wakes the queue at once) or elsewhere (noticed by retrying after a delay).
Attempts are made one at a time, so two creates never race for one slot out of
their arrival order.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .aws import ExportError
from .process import Cancelled

T = TypeVar("T")

REGION, AMI = "region", "ami"

# (code, words in the lower-cased message, which limit): the refusals that mean
# "a limit is reached, try later". AWS's wording is unsettled (facts file):
# ResourceLimitExceeded is EC2's convention for the task limit; the emulator
# answers IncorrectState "... in progress" for the AMI. Any other refusal, an
# unknown wording of these codes included, is not a slot error: the create
# fails at once with AWS's one line (code and message), and nothing waits.
# Recognised waits end at the create's deadline (timeout_minutes) at the latest.
SLOT_ERRORS: tuple[tuple[str, str, str], ...] = (
    ("ResourceLimitExceeded", "", REGION),
    ("IncorrectState", "in progress", AMI),
)


def slot_error_kind(error: ExportError) -> str | None:
    """Which limit refused the create (REGION or AMI), or None when it is not a slot error."""
    message = error.message.lower()
    return next((kind for code, words, kind in SLOT_ERRORS if error.code == code and words in message), None)


def is_slot_error(error: ExportError) -> bool:
    return slot_error_kind(error) is not None


@dataclass(eq=False)
class _Entry:
    ami: str
    order: int
    kind: str | None = None  # None until refused: it may still take a region slot
    tried_at_generation: int = -1
    retry_at: float = 0.0


class SlotQueue:
    """Creates waiting for a slot in one region (see the module docstring for the order)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: list[_Entry] = []
        self._busy = False
        self._generation = 0
        self._orders = itertools.count()

    def start(
        self,
        attempt: Callable[[], T],
        deadline: float,
        retry_delay: float,
        on_wait: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        image_id: str,
        cancelled: threading.Event | None = None,
    ) -> T:
        """``attempt()`` now, or once its turn comes and a slot may be free; ExportError on other failures.

        TimeoutError when ``deadline`` (on ``clock``) passes first; Cancelled, instead of
        attempting, once ``cancelled`` is set (wake the queue with :meth:`release`).
        """
        with self._changed:
            entry = _Entry(image_id, next(self._orders))
            self._waiting.append(entry)
            ahead = sum(e.ami == image_id or not self._waits_on_ami(e) for e in self._earlier(entry))
        if ahead:
            on_wait(f"{ahead} earlier export(s) of this stack waiting")
        told = bool(ahead)
        try:
            while True:
                generation = self._await_turn(entry, deadline, clock, cancelled)
                try:
                    return attempt()
                except ExportError as error:
                    kind = slot_error_kind(error)
                    if kind is None:
                        raise
                    if not told:
                        on_wait(f"{error.code}: {error.message}")
                        told = True
                    with self._changed:
                        entry.kind, entry.retry_at, entry.tried_at_generation = kind, clock() + retry_delay, generation
                finally:
                    with self._changed:
                        self._busy = False
                        self._changed.notify_all()
        finally:
            with self._changed:
                self._waiting.remove(entry)
                self._generation += 1
                self._changed.notify_all()

    def _await_turn(
        self, entry: _Entry, deadline: float, clock: Callable[[], float], cancelled: threading.Event | None
    ) -> int:
        """Block until ``entry`` may attempt; mark the queue busy and return the generation then."""
        with self._changed:
            while True:
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled()
                now = clock()
                if now >= deadline:
                    raise TimeoutError("no export slot became free before the timeout")
                if not self._busy and self._may_try(entry, now) and not any(
                    self._may_try(e, now) for e in self._waiting if e.order < entry.order
                ):
                    self._busy = True
                    return self._generation
                # Only our own retry time passes unannounced; every other change notifies.
                due = entry.kind is not None and entry.tried_at_generation == self._generation and entry.retry_at > now
                self._changed.wait(min(deadline, entry.retry_at if due else deadline) - now)

    def _earlier(self, entry: _Entry) -> list[_Entry]:
        return [e for e in self._waiting if e.order < entry.order]

    def _waits_on_ami(self, entry: _Entry) -> bool:
        """Refused by the per-AMI rule, or queued behind an earlier create of its AMI."""
        return entry.kind == AMI or any(e.ami == entry.ami for e in self._earlier(entry))

    def _may_try(self, entry: _Entry, now: float) -> bool:
        """Its turn (nothing it must wait behind) and worth trying (new, released since, or due)."""
        for other in self._earlier(entry):
            if other.ami == entry.ami or not self._waits_on_ami(other):
                return False
        return entry.kind is None or entry.tried_at_generation != self._generation or now >= entry.retry_at

    def release(self) -> None:
        """An export of this process ended: let the waiting creates try now."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()


_QUEUES: dict[str, SlotQueue] = {}
_QUEUES_LOCK = threading.Lock()


def queue_for(region: str) -> SlotQueue:
    with _QUEUES_LOCK:
        return _QUEUES.setdefault(region, SlotQueue())
