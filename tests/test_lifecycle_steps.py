"""Steps of the lifecycle one at a time, against the emulator over HTTP: what a wait says while it waits,
what it does when AWS drops the record under it, a delete whose cancel comes too late and never ends,
a finished export waking a create that waits for a slot, and the words of a refused adoption."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import uuid

import pytest

from export_image_provider.aws import AwsGateway
from export_image_provider.emulator.unsettled import RECORD_RETENTION_SECONDS
from export_image_provider.image import S3Object
from export_image_provider.lifecycle import (ExportFailed, ExportState, adoptable, create_export, delete_export, read_export,
                                             replaced, update_export, wait_until_exported)
from export_image_provider.spec import to_spec
from export_image_provider.waiter import load_policy
from test_aws_gateway import replay, unknown_ids
from test_concurrency import register_images
from test_provider import FAST_WAITER, props
from test_provider import fresh_tasks, world  # noqa: F401 - pytest fixtures

WEEK_AND_A_DAY = RECORD_RETENTION_SECONDS + 24 * 3600


def spec_of(world, **changes):
    return to_spec(props(world, **changes))


def test_a_wait_reports_progress_and_status_message(world, emulator):
    emulator.set_config(export_seconds=2.0)
    spec, gateway, lines = spec_of(world), AwsGateway("us-east-1"), []
    started = create_export(dataclasses.replace(spec, wait_for_completion=False), gateway, lines.append)
    task = gateway.describe(started.task_id)
    wait_until_exported(spec, task, gateway, lines.append)
    reports = [line for line in lines if f"{task.task_id} active" in line]
    assert reports and all(re.fullmatch(rf".*: {task.task_id} active \d+%( \S.*)?", line) for line in reports), lines
    assert any(re.fullmatch(rf".*: {task.task_id} active \d+% [a-z].*", line) for line in reports), lines  # AWS's words
    assert not any("None" in line for line in lines), lines
    assert lines[-1].endswith(f"{task.task_id} completed: s3://{spec.s3_bucket}/{spec.s3_key(task.task_id)}")


def test_a_wait_follows_the_policy_it_is_given(world, emulator):
    """Here one that accepts an active task: the wait ends at once, without a describe."""
    emulator.set_config(export_seconds=60.0)
    spec, gateway = spec_of(world, wait_for_completion=False), AwsGateway("us-east-1")
    task = gateway.describe(create_export(spec, gateway, lambda line: None).task_id)
    accept_active = load_policy({"EXPORT_IMAGE_PROVIDER_WAITER": json.dumps({"acceptors": [["active", "success"]]})})
    emulator.reset_calls()
    assert wait_until_exported(spec, task, gateway, lambda line: None, accept_active).status == "active"
    assert emulator.calls().get("ec2:DescribeExportImageTasks", 0) == 0


@pytest.mark.parametrize("versioned", [True, False])
def test_a_read_names_both_objects_when_the_image_was_replaced_out_of_band(world, emulator, versioned):
    s3, bucket = emulator.client("s3"), f"steps-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    spec, task_id = spec_of(world, s3_bucket=bucket), unknown_ids(1)[0]  # a record AWS dropped
    first = s3.put_object(Bucket=bucket, Key=spec.s3_key(task_id), Body=b"the exported image")
    second = s3.put_object(Bucket=bucket, Key=spec.s3_key(task_id), Body=b"something else")
    known = S3Object(18, first["ETag"].strip('"'), first.get("VersionId"), "2026-12-01T00:00:00Z")
    lines = []
    assert read_export(spec, task_id, AwsGateway("us-east-1"), {}, known, lines.append) is None
    if versioned:
        change = (f"(ETag {known.etag} version {first['VersionId']} became ETag {second['ETag'].strip(chr(34))} "
                  f"version {second['VersionId']}): the export is treated as gone; its version {first['VersionId']} "
                  "is still in the bucket")
    else:
        change = f"(ETag {known.etag} became ETag {second['ETag'].strip(chr(34))}): the export is treated as gone"
    assert lines == [f"{spec.resource_key.rsplit('/', 1)[-1]}: s3://{bucket}/{spec.s3_key(task_id)} was replaced "
                     f"out of band {change}"]


def test_a_record_dropped_during_a_wait_is_judged_by_its_object(world, emulator):
    """AWS forgets task records (after about a week, facts file): a wait that loses its task keeps an export
    whose image is in S3, and fails, saying so, for one whose image is not there."""
    gateway, lines = AwsGateway("us-east-1"), []
    spec = spec_of(world, wait_for_completion=False)
    exported = gateway.describe(create_export(spec, gateway, lines.append).task_id)
    spec_b = spec_of(world, wait_for_completion=False, image_id=register_images(emulator, 1)[0])
    lost = gateway.describe(create_export(spec_b, gateway, lines.append).task_id)
    emulator.advance(WEEK_AND_A_DAY)
    assert gateway.describe(exported.task_id) is None and gateway.describe(lost.task_id) is None
    emulator.client("s3").delete_object(Bucket=spec_b.s3_bucket, Key=spec_b.s3_key(lost.task_id))

    kept = wait_until_exported(spec, exported, gateway, lines.append)
    assert (kept.task_id, kept.status) == (exported.task_id, "completed")
    with pytest.raises(ExportFailed, match=f"export task {lost.task_id} is no longer reported .*, "
                                           "and no image was written"):
        wait_until_exported(spec_b, lost, gateway, lines.append)


@pytest.mark.parametrize("record", ["kept", "dropped by AWS"])
def test_a_delete_of_a_completed_export_deletes_its_image_and_cancels_nothing(world, emulator, record):
    spec, gateway, lines = spec_of(world), AwsGateway("us-east-1"), []
    state = create_export(spec, gateway, lines.append)
    if record != "kept":
        emulator.advance(WEEK_AND_A_DAY)
    emulator.reset_calls()
    delete_export(spec, state.task_id, gateway, lines.append)
    assert gateway.head_object(spec.s3_bucket, state.s3_key) is None
    assert "ec2:CancelExportTask" not in emulator.calls() and not any("cancel" in line for line in lines), lines


def test_a_delete_whose_cancel_came_too_late_gives_up_at_timeout_minutes(world, emulator):
    """A task past the point of cancelling is waited for, so its object is deleted once it lands; one that
    never lands ends the delete at timeout_minutes, with the task named and left as it is."""
    emulator.set_config(export_seconds=0.0)  # a replayed record never advances: active at 99% for ever
    [task_id] = replay(emulator, bucket=world["bucket"], StatusMessage="converting", Progress="99")
    spec = dataclasses.replace(spec_of(world), timeout_minutes=0.01)
    lines = []
    with pytest.raises(ExportFailed) as failed:
        delete_export(spec, task_id, AwsGateway("us-east-1"), lines.append)
    assert str(failed.value) == (f"delete: export task {task_id} is still active at 99% after timeout_minutes (0.01); "
                                 "it was left running: run `pulumi up` again to resume waiting for it, "
                                 "or raise timeout_minutes")
    assert any(line.endswith(f"export task {task_id}: cancel finished") for line in lines), lines


@pytest.mark.parametrize("waited_by", ["its create", "an update"])
def test_a_finished_export_lets_a_create_waiting_for_a_slot_start_at_once(world, emulator, waited_by):
    """The waiting create would retry only after its retry delay (here 2 min, past its 30 s timeout):
    the end of the wait on the other export, in its create or in an update that waits for it, wakes it."""
    emulator.set_config(export_seconds=2.0, max_active=1)
    gateway = AwsGateway("us-east-1")
    slow_retry = load_policy({"EXPORT_IMAGE_PROVIDER_WAITER": json.dumps({**json.loads(FAST_WAITER), "first_delay": 120.0})})
    results: dict[str, object] = {}
    spec = spec_of(world)
    if waited_by == "its create":
        def first() -> None:
            results["first"] = create_export(spec, gateway, lambda line: None)
    else:
        started = create_export(dataclasses.replace(spec, wait_for_completion=False), gateway, lambda line: None)

        def first() -> None:
            results["first"] = update_export(spec, started.task_id, started.tags, "active", gateway, lambda line: None)

    thread = threading.Thread(target=first, daemon=True)
    thread.start()
    while not emulator.calls().get("ec2:ExportImage"):
        assert thread.is_alive(), results
    second = spec_of(world, image_id=register_images(emulator, 1)[0], wait_for_completion=False, timeout_minutes=0.5)
    waited = []
    state = create_export(second, gateway, waited.append, slow_retry)
    thread.join(60)
    assert results["first"].status == "completed"
    assert state.status == "active" and any("waiting for a free export slot" in line for line in waited), waited


@pytest.mark.parametrize("message", ["ServerError: the disk could not be converted", None])
def test_a_refused_adoption_quotes_the_tasks_status_message(world, emulator, message):
    [task_id] = replay(emulator, status="deleted", bucket=world["bucket"], StatusMessage=message, Progress=None)
    with pytest.raises(ExportFailed) as refused:
        adoptable(task_id, AwsGateway("us-east-1"))
    assert f"export task {task_id} is deleted ({message or 'no message'}) and cannot be adopted" in str(refused.value)


def test_an_export_state_cannot_be_changed_once_made():
    """States are handed from the lifecycle to the provider and compared: nobody may edit one on the way."""
    state = ExportState("export-ami-0123456789abcdef0", "active", None, 5, "exports/x.vmdk")
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.status = "completed"


@pytest.mark.parametrize("known, found, verdict", [
    (S3Object(5, "e1", "v1", "t"), S3Object(5, "e1", "v1", "t"), False),
    (S3Object(5, "e1", "v1", "t"), S3Object(5, "e1", "v2", "t"), True),  # another version, same bytes
    (S3Object(5, "e1", None, "t"), S3Object(5, "e2", None, "t"), True),
    (S3Object(5, "e1", None, "t"), S3Object(5, "e1", "v9", "t"), False),  # versioning switched on since
    (S3Object(5, "", None, "t"), S3Object(5, "e2", None, "t"), False),  # nothing known to compare
])
def test_replaced_tells_another_object_from_the_known_one(known, found, verdict):
    assert replaced(known, found) is verdict
