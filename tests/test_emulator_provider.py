"""The provider against the emulator's AWS-shaped answers and faults, through boto3 over HTTP.

Responses as AWS sends them (no ImageId in records, NextToken on describes by
ids, records that expire), answers lost after the request was applied, and
403s from S3: the provider must keep one task per resource, never take a 403
for "gone", and follow or safely ignore NextTokens.
"""

from __future__ import annotations

import pytest

from export_image_provider.aws import AwsGateway
from export_image_provider.emulator.unsettled import RECORD_RETENTION_SECONDS
from test_provider import _start_outside_pulumi, object_exists, props, provider, tasks, world  # noqa: F401


@pytest.fixture(autouse=True)
def fresh(emulator):
    emulator.reset(config=True)
    emulator.set_config(export_seconds=1.0)
    yield
    emulator.reset(config=True)


def test_a_lost_export_image_answer_still_leaves_one_task_per_resource(world, emulator, provider):
    emulator.set_config(lose_responses=1, lose_responses_of="ec2:ExportImage")
    emulator.reset_calls()
    created = provider.create(props(world))
    assert emulator.calls()["ec2:ExportImage"] == 2, "the first answer was lost and botocore retried"
    assert [t["ExportImageTaskId"] for t in tasks(emulator)] == [created.id]
    assert created.outs["status"] == "completed"


@pytest.mark.parametrize("mode", ["partial", "trailing"])
def test_next_token_on_describes_by_id_is_followed_or_ignored(world, emulator, provider, mode):
    emulator.set_config(by_id_next_token=mode, export_seconds=1.0)
    created = provider.create(props(world))
    assert created.outs["status"] == "completed"
    assert provider.read(created.id, created.outs).outs == created.outs
    other = _start_outside_pulumi(emulator, world, ImageId=emulator.client("ec2").register_image(Name=mode)["ImageId"])
    found = AwsGateway("us-east-1").describe_many([created.id, other])
    assert set(found) == {created.id, other}


def test_a_batch_describe_with_an_id_aws_does_not_know_returns_the_others(world, emulator):
    """AWS fails a DescribeExportImageTasks by ids as a whole when one is unknown: the gateway halves the batch."""
    images = [emulator.client("ec2").register_image(Name=f"batch-{i}")["ImageId"] for i in range(3)]
    known = [_start_outside_pulumi(emulator, world, ImageId=image) for image in images]
    found = AwsGateway("us-east-1").describe_many([known[0], "export-ami-0123456789abcdef0", *known[1:]])
    assert set(found) == set(known)


def test_read_without_the_task_record_keeps_the_export_by_its_object(world, emulator, provider):
    created = provider.create(props(world))
    emulator.advance(RECORD_RETENTION_SECONDS + 60)  # the default retention: the record expires
    assert tasks(emulator) == []
    read = provider.read(created.id, created.outs)
    assert read.id == created.id and read.outs["status"] == "completed"
    assert read.outs["tags"] == created.outs["tags"] == {"team": "platform"}  # AWS keeps no tags to read now
    assert read.outs["progress"] == 100


def test_adoption_of_a_running_task_with_another_format_is_refused(world, emulator, provider):
    emulator.set_config(export_seconds=60.0)
    task_id = _start_outside_pulumi(emulator, world, DiskImageFormat="VHD")
    with pytest.raises(Exception, match="has disk_image_format='VHD' but the disk_image_format argument is 'VMDK'"):
        provider.create(props(world, existing_task_id=task_id))
    emulator.client("ec2").cancel_export_task(ExportTaskId=task_id)


def test_adoption_without_describe_export_tasks_relies_on_the_object(world, emulator, provider):
    """The documented caller policy has no ec2:DescribeExportTasks: a completed task is adopted by its object."""
    task_id = _start_outside_pulumi(emulator, world)
    emulator.advance(5)
    emulator.set_config(deny_actions="ec2:DescribeExportTasks")
    created = provider.create(props(world, existing_task_id=task_id))
    assert created.id == task_id and created.outs["status"] == "completed"
    with pytest.raises(Exception, match="does not exist: check disk_image_format"):
        provider.create(props(world, existing_task_id=task_id, disk_image_format="RAW"))


def test_the_format_of_a_task_dropped_or_forbidden_in_describe_export_tasks_is_unknown(world, emulator, provider):
    """DescribeExportTasks that does not know the id, or may not be called (not in the caller policy): None."""
    gateway = AwsGateway("us-east-1")
    assert gateway.export_location("export-ami-0123456789abcdef0") is None
    task_id = _start_outside_pulumi(emulator, world, DiskImageFormat="VHD")
    assert gateway.export_location(task_id)[0] == "VHD"
    emulator.set_config(deny_actions="ec2:DescribeExportTasks")
    assert gateway.export_location(task_id) is None


# --- issue 8, defect 12: a 403 on the object is not "gone" ---------------------------------------------------


@pytest.mark.parametrize("record", ["kept", "expired"])
def test_refresh_fails_with_one_line_when_the_object_is_forbidden(world, emulator, provider, record):
    created = provider.create(props(world))
    if record == "expired":
        emulator.advance(RECORD_RETENTION_SECONDS + 60)
    emulator.set_config(deny_actions="s3:HeadObject")
    with pytest.raises(Exception) as info:
        provider.read(created.id, created.outs)
    line = str(info.value)
    assert "\n" not in line and line.startswith("HeadObject failed: 403"), line
    emulator.set_config(deny_actions="")
    assert provider.read(created.id, created.outs).outs["status"] == "completed"


def test_delete_fails_and_keeps_the_object_when_deleting_it_is_forbidden(world, emulator, provider):
    created = provider.create(props(world))
    emulator.set_config(deny_actions="s3:DeleteObject")
    with pytest.raises(Exception, match="DeleteObject failed: AccessDenied"):
        provider.delete(created.id, created.outs)
    assert object_exists(emulator, world["bucket"], created.outs["s3_key"])
    emulator.set_config(deny_actions="")
    provider.delete(created.id, created.outs)
    assert not object_exists(emulator, world["bucket"], created.outs["s3_key"])
