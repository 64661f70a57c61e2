"""Waiting for an export task: the polling policy is data, driven by one small loop.

Like botocore's waiters (a JSON model read by one engine), :data:`EXPORT_COMPLETE`
says which statuses end the wait and how, and how long to sleep between polls.
boto3 has no waiter for DescribeExportImageTasks, and a fixed delay is wrong for
a call whose duration ranges from minutes to hours, so the delay comes from two
rules, the smaller winning:

- a bound on the lag, whatever the shape of the task's progress: never sleep
  longer than ``lag_share`` (5%) of the time the export has taken so far, nor
  less than ``lag_floor`` for that reason. Completion can come at any moment,
  but the export has lasted at least as long as we have waited, so the lag to
  notice it stays within max(lag_floor, lag_share x its duration);
- a prediction: the task's progress is mapped through a typical export's curve
  (progress reached -> fraction of the whole duration) to bound when it will
  complete. Far from the end the loop polls sparsely, near it densely. While the
  task keeps to the curve (two or more progress steps that agree) the lag bound
  is taken of the predicted duration instead of the time so far, which is what
  makes polling sparse early on; a task off the curve gets the first rule alone.
  Once the predicted end has passed without completion (a stuck or slow task)
  the delay grows with the overrun, within the first rule.

Both give way to a call budget, whatever the progress shape: the n-th describe
(n = 1, 2, ...) of a wait is made no earlier than (n + 1) x ``budget_period``
after the wait started (first describe at 2 x 30 s = 60 s by default, whatever
``first_delay`` says: it only matters with a budget below first_delay / 2). The
budget is cumulative: polls saved far from the end can be spent densely near it.

The arithmetic, with P = ``budget_period`` (30 s) and D the export's duration
(which is at least the time waited: the export started before the wait did):

- calls: every describe but the last saw the task still running, so the
  (N-1)-th was made at or after N x P and before D: N < D / P, i.e. fewer than
  120 per hour of export, the describe that notices completion included (no
  boundary call to add; a lone describe is within it for any D > P). A wait
  that times out ends with one describe at its deadline; the same count holds
  with D the time waited. A resumed wait (a new ``pulumi up`` after a timeout
  or an interrupt) starts its own budget: its waits do not overlap, so their
  sum stays within the export's duration / P.
- lag: a poll the budget delays comes less than P after the previous one, so
  completion is noticed within P (for D >= P: an export shorter than P is seen
  at 2 x P); a poll the two rules above time keeps their lag (the first
  rule's by construction, the prediction's as the tests find it).
- both bounds at once: progress can say nothing of the end (the jump shape
  sits at 98% from a tenth of the way on), and an export may end just after
  any poll, so noticing it within L(D) = max(10 s, 5% of D) whatever D takes a
  poll at most L(t) after each poll at t. L is below P = 30 s until 10 min:
  kept for every duration, those polls break 120 per hour for every export
  under 10 minutes (a 5-minute one: 26 describes for 15 s, where the budget
  allows 10), and, the calls spent, up to 32 minutes. So under 10 minutes the
  call budget wins and the lag is at most P; from 10 minutes on P <= L(D) and
  both hold. ``tests/test_waiter.py`` checks this lemma second by second, and
  both bounds on every progress shape from 1 minute to 6 hours.

Never faster than ``min_delay``; never slower than ``max_delay``, which must be
at least 2 x ``budget_period`` so that it never cuts into the budget. The
policy can be replaced wholesale, or field by field, with JSON in
``EXPORT_IMAGE_PROVIDER_WAITER`` (tests use this to poll an emulator fast: a
small ``budget_period`` with the small delays).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from .process import Cancelled

ENV_OVERRIDE = "EXPORT_IMAGE_PROVIDER_WAITER"

EXPORT_COMPLETE: dict[str, Any] = {
    "first_delay": 10.0,
    "min_delay": 2.0,
    "max_delay": 300.0,
    "near_delay": 8.0,
    "near_share": 0.04,
    "near_window": 30.0,
    "lead": 0.5,
    "jitter": 0.1,
    "lag_floor": 10.0,
    "lag_share": 0.05,
    # The n-th describe no earlier than (n + 1) x budget_period into the wait:
    # at most 3600 / 30 = 120 per hour of export, whatever the shape.
    "budget_period": 30.0,
    "acceptors": [
        ["completed", "success"],
        ["deleted", "failure"],
        ["deleting", "failure"],
        ["active", "retry"],
    ],
    # (progress reached, fraction of the export's duration when first reached): a
    # validating phase at 0%, uneven conversion steps up to the high 80s, then a
    # long tail in the 90s while the image is written to S3. The shape of the
    # emulator's curve, itself modelled on progress seen on real exports.
    "curve": [[0, 0.0], [3, 0.12], [12, 0.17], [21, 0.21], [29, 0.30], [41, 0.34], [52, 0.41], [67, 0.45],
              [80, 0.52], [85, 0.58], [87, 0.70], [90, 0.81], [94, 0.90], [98, 0.97], [100, 1.0]],
}


class TaskLike(Protocol):
    task_id: str
    status: str
    status_message: str | None
    progress: int | None


@dataclass(frozen=True)
class WaitPolicy:
    """How to wait: delays in seconds, acceptors (status, outcome), and the progress curve."""

    first_delay: float
    min_delay: float
    max_delay: float
    near_delay: float
    near_share: float
    near_window: float
    lead: float
    jitter: float
    lag_floor: float
    lag_share: float
    budget_period: float
    acceptors: tuple[tuple[str, str], ...]
    curve: tuple[tuple[float, float], ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WaitPolicy:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown waiter policy fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["acceptors"] = tuple((str(s), str(o)) for s, o in values["acceptors"])
        values["curve"] = tuple((float(p), float(f)) for p, f in values["curve"])
        policy = cls(**{k: values[k] if k in ("acceptors", "curve") else float(values[k]) for k in known})
        if policy.max_delay < 2 * policy.budget_period:
            raise ValueError(f"waiter policy: max_delay ({policy.max_delay:g}) must be at least 2 x budget_period "
                             f"({policy.budget_period:g}), or it would cut into the call budget")
        return policy

    def outcome(self, status: str) -> str:
        for expected, outcome in self.acceptors:
            if expected == status:
                return outcome
        return "failure"


def load_policy(environ: Mapping[str, str] = os.environ) -> WaitPolicy:
    """The default policy, with any fields given as JSON in ``EXPORT_IMAGE_PROVIDER_WAITER``."""
    data = dict(EXPORT_COMPLETE)
    override = environ.get(ENV_OVERRIDE)
    if override:
        data.update(json.loads(override))
    return WaitPolicy.from_dict(data)


def curve_fraction(curve: Sequence[tuple[float, float]], progress: float) -> float:
    """Fraction of the duration a typical export has used when it reaches ``progress``."""
    for (p0, f0), (p1, f1) in zip(curve, curve[1:]):
        if progress <= p1:
            return f0 + (f1 - f0) * (progress - p0) / (p1 - p0) if p1 > p0 else f1
    return curve[-1][1]


@dataclass
class Forecast:
    """Bounds on when the task will complete, narrowed by each progress step seen.

    Progress moves in steps, and a step seen at one poll was reached at some
    moment since the previous one. Through the curve, each such interval bounds
    the export's whole duration; intersecting them bounds the end. Anchored at
    the first observation, so an adopted task half way through works too.
    ``agreeing`` counts the steps since the last one that contradicted the
    others: the prediction is trusted from two on.
    """

    start: float
    start_fraction: float
    low: float = 0.0
    high: float = float("inf")
    agreeing: int = 0

    def observe(self, policy: WaitPolicy, progress: int, since: float, seen: float) -> None:
        """``progress`` was first seen at ``seen``, and was not there at ``since``."""
        share = curve_fraction(policy.curve, progress) - self.start_fraction
        if share <= 0:
            return
        low = max(self.low, (since - self.start) / share)
        high = min(self.high, (seen - self.start) / share)
        if low <= high:
            self.low, self.high, self.agreeing = low, high, self.agreeing + 1
        else:  # the task does not follow the curve: trust the newest step alone
            self.low, self.high, self.agreeing = (since - self.start) / share, (seen - self.start) / share, 1

    def end(self) -> tuple[float, float] | None:
        """Earliest and latest predicted completion time, once any step was seen."""
        if self.high == float("inf"):
            return None
        left = 1.0 - self.start_fraction
        return self.start + self.low * left, self.start + self.high * left


def next_delay(policy: WaitPolicy, forecast: Forecast, now: float, rng: Callable[[], float] = random.random) -> float:
    """How long to sleep before the next poll: within the lag bound, sparse far from the predicted end, dense near it."""
    waited = now - forecast.start
    end = forecast.end()
    horizon = waited
    if end is None:
        base = max(policy.min_delay, waited)  # no step seen yet: double the wait (the lag bound decides)
    else:
        # Near the end, poll every near_delay, or a small share of a short export's
        # duration; "near" itself is near_window, or a fifth of a short export.
        total = end[0] - forecast.start
        near = min(policy.near_delay, total * policy.near_share)
        until = end[0] - min(policy.near_window, total * policy.near_share * 5) - now
        if now >= end[1]:  # later than the curve allows: back off, within the lag bound
            base = max(near, waited * policy.lag_share)
        else:
            base = near if until <= 0 else max(near, min(until, (end[0] - now) * policy.lead))
            if forecast.agreeing >= 2:
                horizon = max(waited, total)
    base = min(base, max(policy.lag_floor, horizon * policy.lag_share))
    jittered = base * (1.0 - policy.jitter * rng())
    return min(policy.max_delay, max(policy.min_delay, jittered))


def budget_delay(policy: WaitPolicy, start: float, calls: int, now: float) -> float:
    """The least delay before the next describe that keeps the call budget, ``calls`` having been made.

    The n-th describe no earlier than (n + 1) x budget_period after ``start``:
    see the module's docstring for why (n + 1) and what it costs in lag.
    """
    return max(0.0, start + (calls + 2) * policy.budget_period - now)


class WaitFailed(Exception):
    """The task reached a status the policy calls failure."""

    def __init__(self, task: TaskLike) -> None:
        message = task.status_message or "no status message"
        super().__init__(f"export task {task.task_id} ended {task.status}: {message}")
        self.task = task


class WaitTimedOut(Exception):
    """The deadline passed; the task is left running."""

    def __init__(self, task: TaskLike, minutes: float) -> None:
        self.task = task
        super().__init__(self.explain(minutes))

    def explain(self, timeout_minutes: float) -> str:
        """The one line for the user, naming the configured ``timeout_minutes``."""
        task = self.task
        progress = f"{task.progress}%" if task.progress is not None else "unknown progress"
        return (
            f"export task {task.task_id} is still {task.status} at {progress} after timeout_minutes "
            f"({timeout_minutes:g}); it was left running: run `pulumi up` again to resume waiting for it, "
            f"or raise timeout_minutes"
        )


class TaskVanished(Exception):
    """AWS stopped reporting the task while it was being waited for."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"export task {task_id} is no longer reported by DescribeExportImageTasks")
        self.task_id = task_id


def wait_for_export(
    describe: Callable[[], TaskLike | None],
    first: TaskLike,
    timeout_seconds: float,
    policy: WaitPolicy | None = None,
    on_change: Callable[[TaskLike], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    cancelled: threading.Event | None = None,
) -> TaskLike:
    """Poll ``describe`` until the task succeeds; raise on failure, timeout or disappearance.

    ``first`` is the task as last seen (the ExportImage answer, or a describe of an
    adopted task); its progress anchors the prediction. Once ``cancelled`` is set,
    the wait ends at once with Cancelled (its argument: the task as last seen).
    """
    if cancelled is not None and sleep is time.sleep:
        sleep = cancelled.wait
    policy = policy or load_policy()
    start = clock()
    deadline = start + timeout_seconds
    forecast = Forecast(start, curve_fraction(policy.curve, first.progress or 0))
    task = first
    calls = 0
    delay = max(policy.first_delay, budget_delay(policy, start, calls, start))
    while True:
        outcome = policy.outcome(task.status)
        if outcome == "success":
            return task
        if outcome == "failure":
            raise WaitFailed(task)
        now = clock()
        if now >= deadline:
            raise WaitTimedOut(task, timeout_seconds / 60)
        if cancelled is not None and cancelled.is_set():
            raise Cancelled(task)
        polled = now
        sleep(min(delay, deadline - now))
        if cancelled is not None and cancelled.is_set():
            raise Cancelled(task)
        latest = describe()
        calls += 1
        if latest is None:
            raise TaskVanished(task.task_id)
        if on_change and (latest.status, latest.progress, latest.status_message) != (
            task.status, task.progress, task.status_message
        ):
            on_change(latest)
        now = clock()
        if latest.progress is not None and latest.progress != task.progress:
            forecast.observe(policy, latest.progress, polled, now)
        task = latest
        delay = max(next_delay(policy, forecast, now, rng), budget_delay(policy, start, calls, now))
