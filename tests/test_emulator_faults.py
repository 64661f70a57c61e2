"""Emulator contract, part two: task faults, call counting and request faults, through boto3 over HTTP."""

from __future__ import annotations

import time
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.retries.standard import ExponentialBackoff

from conftest import EmulatorProcess
from test_emulator import start, new_image, error_of, describe, wait_for, object_exists, emu, world, ec2, s3, progress_at  # noqa: F401 - fixtures and helpers

# --- configurable faults and record expiry -------------------------------------------------


def test_fail_at_progress_ends_deleted_with_client_error(
    emu: EmulatorProcess, ec2: Any, s3: Any, world: dict[str, str]
) -> None:
    emu.set_config(export_seconds=100, fail_at_progress=50, fail_message="ClientError: boom")
    task_id = start(ec2, world)["ExportImageTaskId"]
    emu.advance(40)  # Progress 41
    record = describe(ec2, task_id)
    assert record["Status"] == "active" and int(record["Progress"]) < 50
    emu.advance(5)  # Progress 52
    record = describe(ec2, task_id)
    assert (record["Status"], record["StatusMessage"]) == ("deleted", "ClientError: boom") and "Progress" not in record
    emu.advance(100)
    assert describe(ec2, task_id)["Status"] == "deleted"
    assert not object_exists(s3, world["bucket"], f"exports/{task_id}.vmdk")
    emu.set_config(export_seconds=0.3, fail_at_progress=None)
    other = start(ec2, world)["ExportImageTaskId"]
    wait_for(lambda: describe(ec2, other)["Status"] == "completed", timeout=3)  # later tasks are unaffected


def test_expired_records_disappear_but_object_stays(emu: EmulatorProcess, ec2: Any, s3: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=0, expire_after_seconds=30, deleting_seconds=0)
    task_id = start(ec2, world)["ExportImageTaskId"]
    emu.set_config(export_seconds=60)
    cancelled = start(ec2, world, ImageId=new_image(ec2))["ExportImageTaskId"]
    ec2.cancel_export_task(ExportTaskId=cancelled)
    emu.advance(29)
    assert describe(ec2, task_id)["Status"] == "completed" and describe(ec2, cancelled)["Status"] == "deleted"
    emu.advance(2)
    for gone in (task_id, cancelled):
        assert error_of(lambda: describe(ec2, gone))[0] == "InvalidExportTaskID.NotFound"
    assert object_exists(s3, world["bucket"], f"exports/{task_id}.vmdk")


def test_stall_at_progress_holds_a_task_active_until_cancelled(
    emu: EmulatorProcess, ec2: Any, s3: Any, world: dict[str, str]
) -> None:
    curve = [int(p) for _, p in (progress_at(i / 1000) for i in range(1000))]
    emu.set_config(export_seconds=0.3, stall_at_progress=50)
    task_id = start(ec2, world)["ExportImageTaskId"]
    emu.set_config(stall_at_progress=None)  # captured at creation: the task stays stalled
    time.sleep(0.35)  # its export_seconds elapse in real time, too
    for _ in range(2):
        record = describe(ec2, task_id)
        assert (record["Status"], record["StatusMessage"]) == ("active", "converting")
        assert record["Progress"] == str(max(p for p in curve if p <= 50))
        emu.advance(1000)
    assert not object_exists(s3, world["bucket"], f"exports/{task_id}.vmdk")
    ec2.cancel_export_task(ExportTaskId=task_id)
    assert describe(ec2, task_id)["Status"] == "deleting"

    emu.set_config(export_seconds=1, stall_at_progress=100)  # past the final-transfer point: still cancellable
    last = start(ec2, world, ImageId=new_image(ec2))["ExportImageTaskId"]
    emu.advance(50)
    assert (describe(ec2, last)["Status"], describe(ec2, last)["Progress"]) == ("active", str(max(curve)))
    ec2.cancel_export_task(ExportTaskId=last)


# --- call counting and request faults -------------------------------------------------------


def test_calls_are_counted_per_action_and_reset(emu: EmulatorProcess, ec2: Any, s3: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=0)
    emu.reset_calls()
    ec2.describe_export_image_tasks()
    ec2.describe_export_image_tasks()
    start(ec2, world)
    bucket = world["bucket"]
    s3.head_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="calls/x", Body=b"x")
    s3.head_object(Bucket=bucket, Key="calls/x")
    s3.get_object(Bucket=bucket, Key="calls/x")["Body"].read()
    s3.list_objects_v2(Bucket=bucket, Prefix="calls/")
    s3.delete_object(Bucket=bucket, Key="calls/x")
    emu.client("sts").get_caller_identity()
    emu.client("iam").get_role(RoleName=world["role_name"])
    emu.control("GET", "tasks")  # control calls are not counted
    expected = {
        "ec2:DescribeExportImageTasks": 2, "ec2:ExportImage": 1, "iam:GetRole": 1, "sts:GetCallerIdentity": 1,
        "s3:HeadBucket": 1, "s3:PutObject": 1, "s3:HeadObject": 1, "s3:GetObject": 1, "s3:ListObjectsV2": 1,
        "s3:DeleteObject": 1,
    }
    assert emu.calls() == expected
    assert emu.reset_calls() == {"calls": expected, "faults": {"throttled": 0, "errors": 0}}
    assert emu.calls() == {} and emu.call_detail() == []


def test_call_detail_has_access_key_and_expected_bucket_owner(
    emu: EmulatorProcess, ec2: Any, s3: Any, world: dict[str, str]
) -> None:
    other = botocore.session.get_session().create_client(
        "s3", endpoint_url=emu.url, region_name=emu.region,
        aws_access_key_id="AKIAEMULATOROTHER", aws_secret_access_key="other",
    )
    emu.reset_calls()
    s3.put_object(Bucket=world["bucket"], Key="detail/x", Body=b"x")
    other.head_object(Bucket=world["bucket"], Key="detail/x", ExpectedBucketOwner=world["account_id"])
    ec2.describe_export_image_tasks()
    assert emu.call_detail() == [
        {"service": "s3", "action": "PutObject", "access_key": "testing", "expected_bucket_owner": False, "fault": None},
        {"service": "s3", "action": "HeadObject", "access_key": "AKIAEMULATOROTHER", "expected_bucket_owner": True,
         "fault": None},
        {"service": "ec2", "action": "DescribeExportImageTasks", "access_key": "testing", "expected_bucket_owner": None,
         "fault": None},
    ]


@pytest.mark.parametrize(
    ("method", "path", "query", "operation"),
    [
        ("GET", "/", "", "ListBuckets"), ("PUT", "/b", "", "CreateBucket"), ("HEAD", "/b", "", "HeadBucket"),
        ("GET", "/b", "list-type=2&prefix=x", "ListObjectsV2"), ("GET", "/b", "location", "GetBucketLocation"),
        ("POST", "/b", "delete", "DeleteObjects"), ("PUT", "/b/k/e/y", "", "PutObject"),
        ("GET", "/b/k", "tagging", "GetObjectTagging"), ("POST", "/b/k", "uploads", "CreateMultipartUpload"),
        ("PUT", "/b/k", "partNumber=1&uploadId=u", "UploadPart"), ("DELETE", "/b/k", "", "DeleteObject"),
        ("DELETE", "/b/k", "versionId=v", "DeleteObjectVersion"), ("HEAD", "/b/k", "versionId=v", "HeadObjectVersion"),
    ],
)
def test_s3_operation_names(method: str, path: str, query: str, operation: str) -> None:
    from urllib.parse import parse_qs

    from export_image_provider.emulator.faults import s3_operation

    assert s3_operation(method, path, parse_qs(query, keep_blank_values=True)) == operation


def test_call_detail_is_bounded() -> None:
    from export_image_provider.emulator.faults import Call, CallLog

    log = CallLog(limit=3)
    for action in "ABCDE":
        log.record(Call("ec2", action, "k", None, "ec2"), None)
    assert [d["action"] for d in log.snapshot(detail=True)["calls"]] == ["C", "D", "E"]
    assert sum(log.snapshot()["calls"].values()) == 5


def raw_client(emu: EmulatorProcess, service: str, max_attempts: int) -> Any:
    retries = {"mode": "standard", "max_attempts": max_attempts}
    return botocore.session.get_session().create_client(
        service, endpoint_url=emu.url, region_name=emu.region, aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries=retries),
    )


def test_standard_retries_get_through_throttling_and_5xx(
    emu: EmulatorProcess, world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the back-off sleep is cut short; botocore still decides what is retryable.
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.001)
    ec2, s3, sts = (raw_client(emu, service, 10) for service in ("ec2", "s3", "sts"))
    emu.set_config(throttle_fraction=0.3, error_fraction=0.1, fault_seed=7)
    emu.reset_calls()
    retries = 0
    for call in [ec2.describe_export_image_tasks] * 12 + [lambda: s3.head_bucket(Bucket=world["bucket"])] * 6 + [
        lambda: s3.list_objects_v2(Bucket=world["bucket"])
    ] * 6 + [sts.get_caller_identity] * 6:
        retries += call()["ResponseMetadata"]["RetryAttempts"]
    counted = emu.control("GET", "calls")
    assert counted["faults"]["throttled"] > 0 and counted["faults"]["errors"] > 0
    assert sum(counted["faults"].values()) == retries
    assert sum(counted["calls"].values()) == 30 + retries, "faulted calls are counted too"
    assert counted["calls"]["ec2:DescribeExportImageTasks"] >= 12
    detail = emu.call_detail()
    assert {d["fault"] for d in detail} == {None, "throttled", "errors"}


def test_faults_surface_without_retries_in_each_service_format(
    emu: EmulatorProcess, world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.001)
    ec2, s3, sts = (raw_client(emu, service, 1) for service in ("ec2", "s3", "sts"))
    emu.reset_calls()
    emu.set_config(throttle_fraction=1.0)
    assert error_of(ec2.describe_export_image_tasks) == ("RequestLimitExceeded", "Request limit exceeded.", 503)
    assert error_of(lambda: s3.list_objects_v2(Bucket=world["bucket"]))[::2] == ("SlowDown", 503)
    assert error_of(lambda: s3.head_bucket(Bucket=world["bucket"]))[::2] == ("503", 503), "HEAD: no body"
    assert error_of(sts.get_caller_identity)[::2] == ("Throttling", 503)
    assert emu.get_config()["throttle_fraction"] == 1.0, "control endpoints never fault"
    emu.set_config(throttle_fraction=0, error_fraction=1.0)
    assert error_of(ec2.describe_export_image_tasks)[::2] == ("InternalError", 500)
    assert error_of(lambda: s3.list_objects_v2(Bucket=world["bucket"]))[::2] == ("InternalError", 500)
    # botocore's client-config max_attempts counts retries (total attempts = max_attempts + 1)
    assert emu.fault_counts() == {"throttled": 8, "errors": 4}


def test_latency_delays_aws_calls_but_not_control_calls(emu: EmulatorProcess, ec2: Any) -> None:
    emu.set_config(latency_seconds=0.2)
    started = time.monotonic()
    ec2.describe_export_image_tasks()
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    emu.get_config()
    assert time.monotonic() - started < 0.2
