"""The waiter's engine and policy: pure functions driven by a simulated clock.

Simulated exports follow every progress shape the emulator offers (the same
pure ``progress_at`` the emulator serves), so the waiter is not confirmed
against its own curve only. One test at the end goes through the provider to
the emulator for the timeout message.
"""

import random
from dataclasses import dataclass

import pytest
from test_provider import world  # noqa: F401 - fixture

from export_image_provider.emulator.curve import SHAPES, progress_at, stall_fraction
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

DURATIONS = (60, 300, 599, 600, 900, 1800, 3600, 4 * 3600, 6 * 3600)
SHELL_LOOP_SECONDS = 30
POLICY = load_policy({})
PERIOD = POLICY.budget_period  # 30 s: at most 120 describes per hour of export


@dataclass(frozen=True)
class Task:
    task_id: str
    status: str
    status_message: str | None = None
    progress: int | None = None


class SimulatedExport:
    """A task whose progress follows one of the emulator's shapes over ``duration`` simulated seconds."""

    def __init__(self, duration, end_status="completed", shape="realistic", stall_at=None):
        self.now = 0.0
        self.stall = None if stall_at is None else stall_fraction(stall_at, shape)
        self.duration = duration
        self.end_status = end_status
        self.shape = shape
        self.polls = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds

    def describe(self):
        self.polls.append(self.now)
        fraction = self.now / self.duration
        message, progress = progress_at(fraction if self.stall is None else min(fraction, self.stall), self.shape)
        if progress is None:
            return Task("export-ami-0123456789abcdef0", self.end_status, "ClientError: boom" if self.end_status != "completed" else None)
        return Task("export-ami-0123456789abcdef0", "active", message, int(progress))


def run(sim, timeout=10**6, policy=None, rng=lambda: 0.5, first=None):
    first = first or Task("export-ami-0123456789abcdef0", "active", "validating", 0)
    return wait_for_export(sim.describe, first, timeout, policy or POLICY, None, sim.clock, sim.sleep, rng)


def lag_bound(duration):
    return max(10.0, 0.05 * duration)


def promised_lag(duration, period=PERIOD):
    """What the waiter promises: the lag bound from 10 minutes on, the budget period below (the budget wins)."""
    return max(period, lag_bound(duration))


def forced_schedule(promise, shortest, until):
    """The sparsest polls that notice, within ``promise(duration)``, an export ending at any moment after ``shortest``.

    When progress gives no warning of the end (the jump shape after its jump, a
    stuck-looking task), an export may end just after any poll p, with duration
    about p; noticing it within promise(p) needs the next poll by p + promise(p).
    """
    polls = [shortest + promise(shortest)]
    while polls[-1] < until:
        polls.append(polls[-1] + promise(polls[-1]))
    return polls


def calls_to_notice(polls, duration):
    """Describes made until the first one at or after the end, that one included."""
    return next(i + 1 for i, t in enumerate(polls) if t >= duration)


def test_under_10_minutes_the_lag_bound_and_the_call_budget_cannot_both_hold():
    """The lemma of the waiter's docstring, in whole seconds from 1 minute to 6 hours.

    Kept for every duration, max(10 s, 5%) forces polls closer than the budget
    period until 10 minutes, so it breaks 120/h for every export under 10 minutes
    (and, having spent those calls, up to about 32 minutes). With the lag promise
    relaxed to the budget period under 10 minutes (the budget wins), the forced
    schedule keeps both: the budget everywhere, the lag bound from 10 minutes on.
    """
    assert PERIOD == 30.0 and EXPORT_COMPLETE["budget_period"] == 30.0
    strict = forced_schedule(lag_bound, PERIOD, 7 * 3600)
    assert all(calls_to_notice(strict, d) > d / PERIOD for d in range(60, 600))
    assert calls_to_notice(strict, 300) == 26 > 300 / PERIOD  # a 5-minute export: 26 calls for <= 15 s; budget 10
    relaxed = forced_schedule(promised_lag, PERIOD, 7 * 3600)
    assert all(calls_to_notice(relaxed, d) <= d / PERIOD for d in range(60, 6 * 3600 + 1))
    assert all(promised_lag(d) == lag_bound(d) for d in range(600, 6 * 3600 + 1))
    assert all(lag_bound(d) < promised_lag(d) == PERIOD for d in range(60, 600))


def check_bounds(sim, label):
    """Both promises of the waiter on one simulated export (duration = its real, not round, duration)."""
    calls, lag = len(sim.polls), sim.now - sim.duration
    assert lag >= 0, label
    assert calls <= sim.duration / PERIOD, f"{label}: {calls} describes in {sim.duration:.0f}s, over 120/h"
    assert lag <= promised_lag(sim.duration), f"{label}: lag {lag:.1f}s, last polls {sim.polls[-5:]}"
    if sim.duration >= 600:
        assert lag <= lag_bound(sim.duration), label
    assert all(b - a >= POLICY.min_delay for a, b in zip(sim.polls, sim.polls[1:])), label


@pytest.mark.parametrize("duration", DURATIONS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_both_bounds_hold_whatever_the_shape(shape, duration):
    """<= 120 describes per hour of export, lag <= max(10 s, 5%) from 10 minutes and <= the budget period below."""
    for i in range(3):  # real durations are no round numbers: a pseudo-random part of 30 s more
        sim = SimulatedExport(duration + random.Random(f"{duration}/{i}").uniform(0, 30), shape=shape)
        task = run(sim, rng=random.Random(i).random)
        assert task.status == "completed"
        check_bounds(sim, f"{shape} {sim.duration:.0f}s")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_resumed_wait_keeps_both_bounds(shape):
    """A wait that times out, then a new ``pulumi up`` 10 minutes later resumes it: one budget over the export."""
    sim = SimulatedExport(3000 + 13, shape=shape)
    with pytest.raises(WaitTimedOut) as timed_out:
        run(sim, timeout=1000)
    sim.now += 600
    resumed = sim.now
    task = run(sim, first=timed_out.value.task)
    assert task.status == "completed"
    check_bounds(sim, f"{shape} resumed")
    again = [t - resumed for t in sim.polls if t > resumed]
    assert again[0] >= 2 * PERIOD  # the resumed wait starts its own budget


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_nth_describe_comes_no_earlier_than_n_plus_1_budget_periods(shape):
    """The schedule the call bound rests on, jitter included (the floor is applied after it)."""
    for duration in (300, 3600):
        sim = SimulatedExport(duration + 7, shape=shape)
        run(sim, rng=random.Random(duration).random)
        assert all(t >= (n + 1) * PERIOD for n, t in enumerate(sim.polls, start=1)), sim.polls[:5]


def test_the_first_describe_waits_for_the_budget_not_for_first_delay():
    sim = SimulatedExport(3600)
    run(sim)
    assert sim.polls[0] == 2 * PERIOD  # not first_delay (10 s): the budget's first slot
    quick = load_policy({"EXPORT_IMAGE_PROVIDER_WAITER": '{"budget_period": 1, "first_delay": 10}'})
    sim = SimulatedExport(3600)
    run(sim, policy=quick)
    assert sim.polls[0] == 10.0  # a budget below first_delay / 2: first_delay decides


def test_a_timed_out_wait_keeps_the_budget_with_its_describe_at_the_deadline():
    for timeout in (45, 61, 100, 600, 3599):
        sim = SimulatedExport(10 * 3600, shape="jump")
        with pytest.raises(WaitTimedOut):
            run(sim, timeout=timeout)
        assert sim.polls[-1] == pytest.approx(timeout)
        assert len(sim.polls) <= timeout / PERIOD, (timeout, sim.polls)


def test_max_delay_may_not_cut_into_the_budget():
    with pytest.raises(ValueError, match=r"max_delay \(50\) must be at least 2 x budget_period \(30\)"):
        load_policy({"EXPORT_IMAGE_PROVIDER_WAITER": '{"max_delay": 50}'})
    assert load_policy({"EXPORT_IMAGE_PROVIDER_WAITER": '{"max_delay": 0.5, "budget_period": 0.25}'}).max_delay == 0.5


@pytest.mark.parametrize("duration", [d for d in DURATIONS if d >= 900])
def test_the_typical_export_is_noticed_far_sooner_than_by_a_30_second_loop(duration):
    """From 15 minutes the budget has room for the prediction's dense polls near the end; below, polls keep to its grid."""
    sim = SimulatedExport(duration + 17, shape="realistic")
    run(sim)
    assert sim.now - sim.duration <= SHELL_LOOP_SECONDS / 3
    if duration >= 3600:
        assert len(sim.polls) <= 0.7 * sim.duration / SHELL_LOOP_SECONDS


def test_a_stuck_export_is_polled_less_and_less_often_within_the_lag_bound():
    """Stuck at 98% of a 10-minute export for two hours: past the predicted end, delays grow with the time waited."""
    sim = SimulatedExport(600, shape="realistic", stall_at=98)
    with pytest.raises(WaitTimedOut):
        run(sim, timeout=2 * 3600)
    polls = list(sim.polls)
    assert sim.describe().progress == 98
    assert len(polls) <= 100  # every 8 s for 2 hours would be 864
    overdue = [(a, b) for a, b in zip(polls, polls[1:]) if a >= 600]
    assert all(b - a <= lag_bound(a) + 1e-9 for a, b in overdue)
    assert polls[-2] - polls[-3] >= 0.04 * polls[-3]


def test_failure_raises_with_the_status_message():
    with pytest.raises(WaitFailed, match="ended deleted: ClientError: boom"):
        run(SimulatedExport(100, end_status="deleted"))


def test_timeout_names_the_task_and_leaves_it_running():
    sim = SimulatedExport(10_000)
    with pytest.raises(WaitTimedOut, match=r"export-ami-0123456789abcdef0 is still active at \d+% after "
                       r"timeout_minutes \(10\); it was left running"):
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
    assert next_delay(policy, forecast, 100.0, lambda: 0.0) == policy.lag_floor  # no step yet: the lag bound
    assert next_delay(policy, forecast, 1000.0, lambda: 0.0) == 1000 * policy.lag_share
    forecast.observe(policy, 41, 330.0, 350.0)  # 41% is reached at 34% of the duration
    forecast.observe(policy, 52, 390.0, 410.0)  # 52% at 41%: the two agree
    low, high = forecast.end()
    assert 390 / 0.41 <= low <= high <= 410 / 0.41
    assert next_delay(policy, forecast, 420.0, lambda: 0.0) == pytest.approx(low * policy.lag_share)
    assert next_delay(policy, forecast, low - 30, lambda: 0.0) == policy.near_delay


def test_an_off_curve_task_gets_the_lag_bound_of_the_time_so_far():
    policy = load_policy({})
    forecast = Forecast(0.0, 0.0)
    forecast.observe(policy, 41, 330.0, 350.0)
    forecast.observe(policy, 98, 390.0, 410.0)  # far faster than the curve says: the steps disagree
    assert forecast.agreeing == 1
    assert next_delay(policy, forecast, 300.0, lambda: 0.0) == pytest.approx(300 * policy.lag_share)


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


def test_the_curve_rises_with_progress_from_zero_to_one():
    curve = WaitPolicy.from_dict(EXPORT_COMPLETE).curve
    assert curve[0] == (0.0, 0.0) and curve[-1] == (100.0, 1.0)
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(curve, curve[1:])), curve


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


def test_timeout_after_a_slot_wait_names_the_configured_timeout_minutes(world, emulator):
    """The slot wait used part of timeout_minutes; the message still names the setting, not what was left."""
    from test_concurrency import register_images
    from test_provider import props

    from export_image_provider import ImageExportProvider

    emulator.reset()
    emulator.set_config(export_seconds=1, max_active=1)
    first, second = register_images(emulator, 2)
    provider = ImageExportProvider()
    provider.create(props(world, image_id=first, wait_for_completion=False))
    emulator.set_config(export_seconds=600)
    with pytest.raises(Exception) as raised:
        provider.create(props(world, image_id=second, timeout_minutes=0.05))
    assert "is still active" in str(raised.value) and "after timeout_minutes (0.05);" in str(raised.value)
    assert "waiting for a free export slot" not in str(raised.value)


@pytest.mark.parametrize("shape, at, expected", [
    ("jump", 0.2, ("converting", "98")), ("late", 0.5, ("validating", "0")), ("steps", 0.35, ("converting", "30")),
    ("classic", 0.1, ("validating", "0")), ("realistic", 0.1, ("validating", "0")), ("realistic", 0.25, ("updating", "21")),
])
def test_the_emulator_serves_the_progress_curve_it_is_set_to(world, emulator, shape, at, expected):
    emulator.reset()
    emulator.set_config(export_seconds=1000, progress_curve=shape)
    ec2 = emulator.client("ec2")
    task_id = ec2.export_image(ImageId=world["image_id"], DiskImageFormat="VMDK",
                               S3ExportLocation={"S3Bucket": world["bucket"]})["ExportImageTaskId"]
    emulator.advance(1000 * at)
    [record] = ec2.describe_export_image_tasks(ExportImageTaskIds=[task_id])["ExportImageTasks"]
    assert (record["StatusMessage"], record["Progress"]) == expected
    emulator.reset()


def test_progress_curve_is_a_cli_flag_and_refuses_unknown_names(emulator):
    import subprocess
    import sys
    import urllib.error

    from conftest import REPO_ROOT, EmulatorProcess

    with pytest.raises(urllib.error.HTTPError) as refused:
        emulator.set_config(progress_curve="sigmoid")
    assert "progress_curve must be one of realistic, classic, jump, late, steps" in refused.value.read().decode()
    other = EmulatorProcess("--progress-curve", "steps")
    try:
        assert other.get_config()["progress_curve"] == "steps"
    finally:
        other.stop()
    bad = subprocess.run([sys.executable, "-m", "export_image_provider.emulator", "--progress-curve", "sigmoid"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--progress-curve: invalid choice: 'sigmoid'" in bad.stderr


def test_the_waiters_curve_is_the_emulators_realistic_shape():
    """The prediction assumes the shape the emulator serves by default (itself modelled on real exports)."""
    served = [(0, 0.0)] + [(progress, fraction) for fraction, progress in SHAPES["realistic"]] + [(100, 1.0)]
    assert list(WaitPolicy.from_dict(EXPORT_COMPLETE).curve) == [(float(p), float(f)) for p, f in served]


def test_past_the_curves_last_point_the_fraction_is_its_last():
    """A policy whose curve stops short of 100% (an override) predicts no further than its last point."""
    assert curve_fraction(((0.0, 0.0), (25.0, 0.3), (50.0, 0.5)), 80) == 0.5


def test_the_curve_interpolates_between_its_points():
    curve = WaitPolicy.from_dict(EXPORT_COMPLETE).curve  # ... (67, 0.45), (80, 0.52) ...
    assert curve_fraction(curve, 74) == pytest.approx(0.45 + 0.07 * 7 / 13)


def test_a_vertical_step_of_the_curve_gives_its_upper_fraction():
    """Time passing at 0% (a validating phase drawn as a step): progress 0 is reached at the step's top."""
    assert curve_fraction(((0.0, 0.0), (0.0, 0.1), (100.0, 1.0)), 0) == 0.1


def test_the_policy_is_immutable():
    """One policy is shared by every wait of the provider process, across threads."""
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.max_delay = 1.0


def test_the_first_describe_comes_after_first_delay_when_the_budget_allows():
    """With a budget period overridden below it, first_delay (10 s) decides the first describe."""
    sim = SimulatedExport(600)
    run(sim, policy=WaitPolicy.from_dict({**EXPORT_COMPLETE, "budget_period": 1.0}))
    assert sim.polls[0] == 10.0


def test_a_wait_behind_its_budget_gets_no_extra_delay():
    from export_image_provider.waiter import budget_delay

    assert budget_delay(POLICY, start=1000.0, calls=0, now=1100.0) == 0.0
    assert budget_delay(POLICY, start=1000.0, calls=1, now=1050.0) == 40.0  # the 2nd describe no earlier than 90 s


def test_a_wait_without_a_cancel_event_sleeps_on_the_clock():
    quick = WaitPolicy.from_dict({**EXPORT_COMPLETE, "first_delay": 0.01, "budget_period": 0.001, "max_delay": 0.02})
    first = Task("export-ami-0123456789abcdef0", "active", "validating", 0)
    done = Task("export-ami-0123456789abcdef0", "completed")
    assert wait_for_export(lambda: done, first, 60, quick) == done


def test_a_step_not_above_the_anchor_is_ignored():
    """An adopted task anchored at 25% that reports 25% again tells nothing about the duration."""
    forecast = Forecast(start=1000.0, start_fraction=0.25)
    forecast.observe(HALVES, 25, since=1010.0, seen=1020.0)
    assert (forecast.low, forecast.high, forecast.agreeing, forecast.end()) == (0.0, float("inf"), 0, None)


HALVES = WaitPolicy.from_dict({**EXPORT_COMPLETE, "curve": [[0, 0.0], [25, 0.25], [50, 0.5], [100, 1.0]]})


def test_each_agreeing_step_narrows_the_forecast_and_counts():
    """Bounds on the duration: (since - start) / share and (seen - start) / share, intersected (exact here)."""
    forecast = Forecast(start=1000.0, start_fraction=0.0)
    forecast.observe(HALVES, 25, since=1012.5, seen=1025.0)
    assert (forecast.low, forecast.high, forecast.agreeing) == (50.0, 100.0, 1)
    forecast.observe(HALVES, 50, since=1050.0, seen=1075.0)  # 100..150: meets the first at exactly 100
    assert (forecast.low, forecast.high, forecast.agreeing) == (100.0, 100.0, 2)
    assert forecast.end() == (1100.0, 1100.0)


def test_a_step_seen_at_the_first_poll_bounds_the_duration_from_zero():
    forecast = Forecast(start=1000.0, start_fraction=0.0)
    forecast.observe(HALVES, 25, since=1000.0, seen=1025.0)
    assert (forecast.low, forecast.high, forecast.agreeing) == (0.0, 100.0, 1)


def test_a_contradicting_step_restarts_the_count_from_itself():
    forecast = Forecast(start=1000.0, start_fraction=0.0)
    forecast.observe(HALVES, 25, since=1012.5, seen=1025.0)  # 50..100
    forecast.observe(HALVES, 50, since=1100.0, seen=1110.0)  # 200..220: disagrees
    assert (forecast.low, forecast.high, forecast.agreeing) == (200.0, 220.0, 1)


def test_an_adopted_task_predicts_only_the_part_left():
    """Anchored at 25% (adopted half way): a step to 50% took a quarter of the duration; 3/4 were left."""
    forecast = Forecast(start=1000.0, start_fraction=0.25)
    forecast.observe(HALVES, 50, since=1025.0, seen=1050.0)
    assert (forecast.low, forecast.high) == (100.0, 200.0)
    assert forecast.end() == (1075.0, 1150.0)


def agreed(start, duration):
    return Forecast(start=start, start_fraction=0.0, low=duration, high=duration, agreeing=2)


@pytest.mark.parametrize("forecast, now, expected", [
    # Far from the end of a 1000 s export: half the time left (80 s x lead 0.5), under the lag bound (50 s).
    (agreed(1000.0, 1000.0), 1920.0, 40.0),
    # Within the near window of a 100 s export: near = min(near_delay 8, 4% of 100 s) = 4 s.
    (agreed(1000.0, 100.0), 1085.0, 4.0),
    # At the latest predicted end: back off already, to 5% of the 100 s waited (5 s), not near (4 s).
    (agreed(1000.0, 100.0), 1100.0, 5.0),
    # Past the predicted end: back off to 5% of the time waited (150 s: 7.5 s), under the 10 s floor.
    (agreed(1000.0, 100.0), 1150.0, 7.5),
    # Near the end of a 40 s export: 4% is 1.6 s, raised to min_delay.
    (agreed(1000.0, 40.0), 1039.0, 2.0),
    # No step seen yet: the lag bound of the time waited, at least its floor.
    (Forecast(start=1000.0, start_fraction=0.0), 1100.0, 10.0),
    # Far from the end of a 6-hour export: the lag bound (1080 s) is capped by max_delay.
    (agreed(1000.0, 21600.0), 4600.0, 300.0),
    # 20 s before the near window of a 1000 s export (the last 30 s): those 20 s.
    (agreed(1000.0, 1000.0), 1950.0, 20.0),
    # Within the near window (the last 30 s) of a 1000 s export: near_delay.
    (agreed(1000.0, 1000.0), 1980.0, 8.0),
    # Just before the near window of a 100 s export (a fifth of it, 20 s): the 5 s left until it.
    (agreed(1000.0, 100.0), 1075.0, 5.0),
    # Ends predicted between 1900 and 2100: lead applies to the earliest (80 s left: 40 s).
    (Forecast(start=1000.0, start_fraction=0.0, low=900.0, high=1100.0, agreeing=2), 1820.0, 40.0),
])
def test_next_delay_on_worked_examples(forecast, now, expected):
    """Hand-computed from the policy's numbers (no jitter), on a clock that does not start at zero."""
    assert next_delay(POLICY, forecast, now, rng=lambda: 0.0) == pytest.approx(expected)


def test_next_delay_below_a_second_when_min_delay_allows():
    """A 20 s export 0.9 s before its near window (4 s), with min_delay overridden to 0.1 s: 0.9 s, not near (0.8 s)."""
    fine = WaitPolicy.from_dict({**EXPORT_COMPLETE, "min_delay": 0.1})
    assert next_delay(fine, agreed(1000.0, 20.0), 1015.1, rng=lambda: 0.0) == pytest.approx(0.9)


def test_a_cancellable_wait_sleeps_on_the_cancel_event():
    """With ``cancelled`` and the default sleep, the waiter sleeps on the event, so a cancel ends the sleep at once."""
    import threading

    class Recorded(threading.Event):
        def __init__(self):
            super().__init__()
            self.waits = []

        def wait(self, timeout=None):
            self.waits.append(timeout)
            self.set()
            return True

    cancelled = Recorded()
    quick = WaitPolicy.from_dict({**EXPORT_COMPLETE, "first_delay": 0.01, "budget_period": 0.01, "max_delay": 0.02})
    first = Task("export-ami-0123456789abcdef0", "active", "validating", 0)
    with pytest.raises(Exception) as raised:
        wait_for_export(lambda: first, first, 60, quick, cancelled=cancelled)
    assert type(raised.value).__name__ == "Cancelled" and len(cancelled.waits) == 1
