"""The waiter's engine and policy: pure functions driven by a simulated clock."""

from dataclasses import dataclass

import pytest

from export_image_provider.waiter import (
    EXPORT_COMPLETE,
    Forecast,
    TaskVanished,
    WaitFailed,
    WaitPolicy,
    WaitTimedOut,
    curve_fraction,
    load_policy,
    next_delay,
    wait_for_export,
)


@dataclass(frozen=True)
class Task:
    task_id: str
    status: str
    status_message: str | None = None
    progress: int | None = None


class SimulatedExport:
    """A task whose progress follows the policy's own curve over ``duration`` simulated seconds."""

    def __init__(self, duration, end_status="completed"):
        self.now = 0.0
        self.duration = duration
        self.end_status = end_status
        self.polls = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds

    def describe(self):
        self.polls.append(self.now)
        if self.now >= self.duration:
            return Task("export-ami-0123456789abcdef0", self.end_status, "ClientError: boom" if self.end_status != "completed" else None)
        fraction = self.now / self.duration
        curve = EXPORT_COMPLETE["curve"]
        progress = 0
        for p, f in curve:
            if f <= fraction:
                progress = p
        return Task("export-ami-0123456789abcdef0", "active", "converting", int(min(progress, 99)))


def run(sim, timeout=10**6, policy=None):
    first = Task("export-ami-0123456789abcdef0", "active", "validating", 0)
    return wait_for_export(sim.describe, first, timeout, policy or load_policy({}), None, sim.clock, sim.sleep, lambda: 0.5)


@pytest.mark.parametrize("duration", [60, 3600, 4 * 3600])
def test_completion_is_noticed_soon_after_it_happens(duration):
    sim = SimulatedExport(duration)
    task = run(sim)
    assert task.status == "completed"
    assert sim.now - duration <= 10
    assert all(b - a >= load_policy({}).min_delay for a, b in zip(sim.polls, sim.polls[1:]))


def test_failure_raises_with_the_status_message():
    with pytest.raises(WaitFailed, match="ended deleted: ClientError: boom"):
        run(SimulatedExport(100, end_status="deleted"))


def test_timeout_names_the_task_and_leaves_it_running():
    sim = SimulatedExport(10_000)
    with pytest.raises(WaitTimedOut, match="export-ami-0123456789abcdef0 is still active.*left running"):
        run(sim, timeout=600)
    assert sim.now == pytest.approx(600)


def test_vanished_task_is_reported():
    first = Task("export-ami-0123456789abcdef0", "active", "validating", 0)
    with pytest.raises(TaskVanished):
        wait_for_export(lambda: None, first, 100, load_policy({}), None, lambda: 0.0, lambda s: None)


def test_progress_changes_are_reported_once_each():
    sim = SimulatedExport(600)
    seen = []
    first = Task("export-ami-0123456789abcdef0", "active", "validating", 0)
    wait_for_export(sim.describe, first, 10**6, load_policy({}), seen.append, sim.clock, sim.sleep, lambda: 0.5)
    keys = [(t.status, t.progress, t.status_message) for t in seen]
    assert len(keys) == len(set(keys)) and keys[-1][0] == "completed"


def test_delay_is_sparse_far_from_the_end_and_dense_near_it():
    policy = load_policy({})
    forecast = Forecast(0.0, 0.0)
    assert next_delay(policy, forecast, 100.0, lambda: 0.0) == 100.0  # no step seen yet: double the wait
    forecast.observe(policy, 52, 390.0, 410.0)  # 52% is reached at 41% of the duration
    low, high = forecast.end()
    assert 390 / 0.41 <= low <= high <= 410 / 0.41
    assert next_delay(policy, forecast, 420.0, lambda: 0.0) == pytest.approx((low - 420) * policy.lead)
    assert next_delay(policy, forecast, low - 30, lambda: 0.0) == policy.near_delay


def test_forecast_narrows_with_each_step_and_survives_an_off_curve_task():
    policy = load_policy({})
    forecast = Forecast(0.0, 0.0)
    forecast.observe(policy, 12, 100.0, 200.0)
    wide = forecast.end()
    forecast.observe(policy, 52, 380.0, 400.0)
    narrow = forecast.end()
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    forecast.observe(policy, 98, 401.0, 402.0)  # far faster than the curve says: newest step wins
    assert forecast.end()[1] < narrow[0]


def test_curve_interpolates_and_ends_at_one():
    curve = WaitPolicy.from_dict(EXPORT_COMPLETE).curve
    assert curve_fraction(curve, 0) == 0.0
    assert curve_fraction(curve, 100) == 1.0
    assert 0.35 < curve_fraction(curve, 70) < 0.55


def test_policy_fields_can_be_overridden_by_environment_json():
    policy = load_policy({"EXPORT_IMAGE_PROVIDER_WAITER": '{"first_delay": 0.1, "min_delay": 0.05}'})
    assert policy.first_delay == 0.1 and policy.min_delay == 0.05
    assert policy.max_delay == EXPORT_COMPLETE["max_delay"]
    with pytest.raises(ValueError, match="unknown waiter policy fields: speed"):
        load_policy({"EXPORT_IMAGE_PROVIDER_WAITER": '{"speed": 1}'})


def test_unlisted_status_is_failure():
    assert load_policy({}).outcome("exploded") == "failure"
    assert load_policy({}).outcome("active") == "retry"
