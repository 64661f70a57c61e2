"""Contract tests of the ExportImage emulator, through boto3 over real HTTP.

The session ``emulator`` fixture (conftest.py) runs ``python -m
export_image_provider.emulator`` as a subprocess; each test starts from no
export tasks, no call counts and the start-up config. Time-dependent checks
poll at short intervals up to a deadline, or move the emulator clock with
``POST /_emulator/advance``, instead of sleeping for fixed long spells.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from export_image_provider.emulator.models import progress_at
from conftest import EmulatorProcess, wait_until

from export_image_provider.emulator.seed import client, seed

TASK_ID = re.compile(r"^export-ami-[0-9a-f]{17}$")


@pytest.fixture()
def emu(emulator: EmulatorProcess) -> EmulatorProcess:
    emulator.reset(config=True)
    return emulator


@pytest.fixture(scope="module")
def world(emulator: EmulatorProcess) -> dict[str, str]:
    return seed(emulator.url, emulator.region)


@pytest.fixture()
def ec2(emu: EmulatorProcess) -> Any:
    return emu.client("ec2")


@pytest.fixture()
def s3(emu: EmulatorProcess) -> Any:
    return emu.client("s3")


def start(ec2: Any, world: dict[str, str], **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ImageId": world["image_id"],
        "DiskImageFormat": "VMDK",
        "S3ExportLocation": {"S3Bucket": world["bucket"], "S3Prefix": "exports/"},
    }
    params.update(overrides)
    return ec2.export_image(**params)


def new_image(ec2: Any) -> str:
    return ec2.register_image(Name=f"extra-{uuid.uuid4().hex[:8]}")["ImageId"]


def error_of(call: Callable[[], Any]) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def describe(ec2: Any, task_id: str) -> dict[str, Any]:
    return ec2.describe_export_image_tasks(ExportImageTaskIds=[task_id])["ExportImageTasks"][0]


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.03) -> Any:
    return wait_until(predicate, timeout, "the emulator", interval)


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("404", "NoSuchKey")
        return False


# --- the progress curve ---------------------------------------------------------------


def test_progress_curve_is_shaped_like_real_exports() -> None:
    samples = [progress_at(i / 1000) for i in range(1000)]
    assert samples[0] == ("validating", "0")
    messages = [m for m, _ in samples]
    order = list(dict.fromkeys(messages))
    assert order[0] == "validating" and order[-1] == "converting"
    assert all(m in ("validating", "updating", "converting") for m in messages)
    values = [int(p) for _, p in samples]
    assert values == sorted(values), "progress never goes down"
    assert max(values) < 100
    jumps = [b - a for a, b in zip(values, values[1:]) if b != a]
    assert len(jumps) >= 8 and len(set(jumps)) >= 4, "uneven upward jumps"
    high = sum(1 for v in values if v >= 85) / len(values)
    assert high >= 0.35, "a long stretch in the high 80s/90s"
    assert values[len(values) // 2] < 85, "not a straight line either"
    for fraction in (1.0, 1.5, 10):
        assert progress_at(fraction) == (None, None)


# --- lifecycle ------------------------------------------------------------------------------


def test_lifecycle_statuses_and_records(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=1.5)
    response = start(ec2, world, Description="nightly", RoleName=world["role_name"])
    task_id = response["ExportImageTaskId"]
    assert TASK_ID.match(task_id)
    assert response["Status"] == "active" and response["StatusMessage"] == "validating"
    assert response["Progress"] == "0"
    assert response["DiskImageFormat"] == "VMDK" and response["RoleName"] == world["role_name"]
    assert response["ImageId"] == world["image_id"] and response["Description"] == "nightly"
    assert response["S3ExportLocation"] == {"S3Bucket": world["bucket"], "S3Prefix": "exports/"}

    seen: list[tuple[str, str | None, str | None]] = []

    def poll() -> bool:
        record = describe(ec2, task_id)
        assert not {"DiskImageFormat", "RoleName", "ImageId"} & set(record)  # as on AWS (facts file)
        state = (record["Status"], record.get("StatusMessage"), record.get("Progress"))
        if not seen or seen[-1] != state:
            seen.append(state)
        return record["Status"] == "completed"

    wait_for(poll, timeout=5)
    assert seen[-1] == ("completed", None, None)
    active = [s for s in seen if s[0] == "active"]
    assert ("converting" in {m for _, m, _ in active}) and len(active) >= 3
    progress = [int(p) for _, _, p in active]
    assert progress == sorted(progress) and progress[-1] >= 85
    final = describe(ec2, task_id)
    assert set(final) == {"ExportImageTaskId", "Description", "S3ExportLocation", "Status", "Tags"}


def test_object_is_written_at_deadline_without_describe(emu: EmulatorProcess, ec2: Any, s3: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=0.8)
    started = time.monotonic()
    raw = start(ec2, world, DiskImageFormat="RAW", S3ExportLocation={"S3Bucket": world["bucket"], "S3Prefix": "raw/"})
    key = f"raw/{raw['ExportImageTaskId']}.raw"
    exists_early = object_exists(s3, world["bucket"], key)
    assert not exists_early or time.monotonic() - started >= 0.8
    time.sleep(max(0.0, 0.85 - (time.monotonic() - started)))
    assert object_exists(s3, world["bucket"], key), "HeadObject right after the deadline sees the object"


def test_prefix_is_taken_verbatim_and_zero_seconds_completes_at_once(
    emu: EmulatorProcess, ec2: Any, s3: Any, world: dict[str, str]
) -> None:
    emu.set_config(export_seconds=0)
    response = start(ec2, world, DiskImageFormat="VHD", S3ExportLocation={"S3Bucket": world["bucket"], "S3Prefix": "vhd-"})
    assert response["Status"] == "completed"
    assert "Progress" not in response and "StatusMessage" not in response
    assert object_exists(s3, world["bucket"], f"vhd-{response['ExportImageTaskId']}.vhd")
    bare = start(ec2, world, S3ExportLocation={"S3Bucket": world["bucket"]})
    assert "S3Prefix" not in bare["S3ExportLocation"]
    assert object_exists(s3, world["bucket"], f"{bare['ExportImageTaskId']}.vmdk")


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_active_task_goes_deleting_then_deleted(emu: EmulatorProcess, ec2: Any, s3: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=5, deleting_seconds=0.3)
    task_id = start(ec2, world)["ExportImageTaskId"]
    ec2.cancel_export_task(ExportTaskId=task_id)
    record = describe(ec2, task_id)
    assert record["Status"] == "deleting" and "Progress" not in record
    wait_for(lambda: describe(ec2, task_id)["Status"] == "deleted", timeout=3)
    emu.control("POST", "advance", {"seconds": 10})
    assert describe(ec2, task_id)["Status"] == "deleted"
    assert not object_exists(s3, world["bucket"], f"exports/{task_id}.vmdk"), "no object, even past the deadline"


def test_cancel_errors(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=0)
    done = start(ec2, world)["ExportImageTaskId"]
    assert error_of(lambda: ec2.cancel_export_task(ExportTaskId=done))[0] == "IncorrectState"
    unknown = "export-ami-0123456789abcdef0"
    assert error_of(lambda: ec2.cancel_export_task(ExportTaskId=unknown))[0] == "InvalidExportTaskID.NotFound"
    assert error_of(lambda: ec2.cancel_export_task(ExportTaskId="export-nope"))[0] == "InvalidExportTaskID.Malformed"


def test_cancel_refused_while_transferring_final_image(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=100)
    task_id = start(ec2, world)["ExportImageTaskId"]
    emu.control("POST", "advance", {"seconds": 98.5})
    assert describe(ec2, task_id)["Status"] == "active"
    assert error_of(lambda: ec2.cancel_export_task(ExportTaskId=task_id))[0] == "IncorrectState"


# --- idempotency ----------------------------------------------------------------------------


def test_client_token_idempotency(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=30)
    first = start(ec2, world, ClientToken="token-1", Description="a")
    again = start(ec2, world, ClientToken="token-1", Description="a")
    assert again["ExportImageTaskId"] == first["ExportImageTaskId"]
    assert len(ec2.describe_export_image_tasks()["ExportImageTasks"]) == 1
    code, _, status = error_of(lambda: start(ec2, world, ClientToken="token-1", Description="b"))
    assert (code, status) == ("IdempotentParameterMismatch", 400)


# --- validation -----------------------------------------------------------------------------


def test_validation_errors(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    bucket = {"S3Bucket": world["bucket"]}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"ImageId": "ami-0123456789abcdef0"}, "InvalidAMIID.NotFound", "ami-0123456789abcdef0"),
        ({"ImageId": "image-123"}, "InvalidAMIID.Malformed", "image-123"),
        ({"S3ExportLocation": {"S3Bucket": "no-such-bucket-here"}}, "InvalidParameter", "no-such-bucket-here"),
        (
            {"RoleName": "ghost-role", "S3ExportLocation": bucket},
            "InvalidParameter",
            "The service role ghost-role provided does not exist or does not have sufficient permissions",
        ),
        ({"DiskImageFormat": "QCOW2"}, "InvalidParameterValue", "QCOW2"),
        ({"Description": "x" * 256}, "InvalidParameterValue", "255"),
        ({"ImageId": world["encrypted_image_id"]}, "InvalidParameter", "encrypted"),
        ({"ImageId": world["marketplace_image_id"]}, "NotExportable", world["marketplace_image_id"]),
        ({"ImageId": world["windows_image_id"]}, "NotExportable", world["windows_image_id"]),
        ({"ImageId": world["foreign_image_id"]}, "NotExportable", world["foreign_image_id"]),
        (
            {"TagSpecifications": [{"ResourceType": "image", "Tags": [{"Key": "k", "Value": "v"}]}]},
            "InvalidParameterValue",
            "image",
        ),
        ({"TagSpecifications": [{"ResourceType": "export-image-task", "Tags": [{"Key": "aws:x", "Value": "v"}]}]},
         "InvalidParameterValue", "aws:"),
        ({"TagSpecifications": [{"ResourceType": "export-image-task", "Tags": [{"Key": "k" * 128, "Value": "v"}]}]},
         "InvalidParameterValue", "127"),
        ({"TagSpecifications": [{"ResourceType": "export-image-task", "Tags": [{"Key": "k", "Value": "v" * 257}]}]},
         "InvalidParameterValue", "256"),
    ]
    for overrides, code, needle in cases:
        got_code, message, status = error_of(lambda: start(ec2, world, **overrides))
        assert (got_code, status) == (code, 400), (overrides, got_code, message)
        assert needle in message, (needle, message)
    ok_tags = [{"Key": "k" * 127, "Value": "v" * 256}]
    start(ec2, world, TagSpecifications=[{"ResourceType": "export-image-task", "Tags": ok_tags}])
    # DryRun validates first: the AMI above is busy, so it is refused as the real call would be
    assert error_of(lambda: start(ec2, world, DryRun=True))[0] == "IncorrectState"
    assert error_of(lambda: start(ec2, world, ImageId=new_image(ec2), DryRun=True))[0] == "DryRunOperation"


def test_errors_are_ec2_xml(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    bodies: list[bytes] = []
    ec2.meta.events.register("after-call.ec2.ExportImage", lambda http_response, **_: bodies.append(http_response.content))
    error_of(lambda: start(ec2, world, ImageId="ami-0123456789abcdef0"))
    body = bodies[-1].decode()
    assert re.search(r"<Response[^>]*>\s*<Errors>\s*<Error>\s*<Code>InvalidAMIID.NotFound</Code>", body), body
    assert "<RequestID>" in body or "<RequestId>" in body


# --- limits ---------------------------------------------------------------------------------


def test_active_task_limit_per_region(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=60, max_active=2)
    first = start(ec2, world, ImageId=new_image(ec2))["ExportImageTaskId"]
    start(ec2, world, ImageId=new_image(ec2))
    code, _, status = error_of(lambda: start(ec2, world, ImageId=new_image(ec2)))
    assert (code, status) == ("ResourceLimitExceeded", 400)
    other_region = emu.client("ec2", "eu-west-1")
    code, _, _ = error_of(lambda: other_region.describe_export_image_tasks(ExportImageTaskIds=[first]))
    assert code == "InvalidExportTaskID.NotFound", "tasks and limits are per region"
    ec2.cancel_export_task(ExportTaskId=first)
    start(ec2, world, ImageId=new_image(ec2))


def test_one_active_export_per_ami(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=60)
    image_id = new_image(ec2)
    first = start(ec2, world, ImageId=image_id)["ExportImageTaskId"]
    code, message, _ = error_of(lambda: start(ec2, world, ImageId=image_id, DiskImageFormat="RAW"))
    assert code == "IncorrectState" and first in message
    ec2.cancel_export_task(ExportTaskId=first)
    emu.set_config(export_seconds=0)
    assert start(ec2, world, ImageId=image_id)["Status"] == "completed"
    assert start(ec2, world, ImageId=image_id, DiskImageFormat="RAW")["Status"] == "completed"


# --- describe: filters and pagination ------------------------------------------------------


def test_filters_and_pagination(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=0)
    completed = {start(ec2, world)["ExportImageTaskId"] for _ in range(3)}
    emu.set_config(export_seconds=60)
    active = {start(ec2, world, ImageId=new_image(ec2))["ExportImageTaskId"] for _ in range(2)}

    def ids(**kwargs: Any) -> set[str]:
        return {t["ExportImageTaskId"] for t in ec2.describe_export_image_tasks(**kwargs)["ExportImageTasks"]}

    assert ids(Filters=[{"Name": "task-state", "Values": ["active"]}]) == active
    assert ids(Filters=[{"Name": "task-state", "Values": ["completed"]}]) == completed
    assert ids(Filters=[{"Name": "task-state", "Values": ["completed", "active"]}]) == completed | active
    assert ids(ExportImageTaskIds=sorted(active)) == active

    pages, token, seen = [], None, []
    while True:
        kwargs: dict[str, Any] = {"MaxResults": 2, **({"NextToken": token} if token else {})}
        page = ec2.describe_export_image_tasks(**kwargs)
        pages.append(len(page["ExportImageTasks"]))
        seen += [t["ExportImageTaskId"] for t in page["ExportImageTasks"]]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == [2, 2, 1] and len(set(seen)) == 5 and set(seen) == completed | active
    paginator = ec2.get_paginator("describe_export_image_tasks")
    assert sum(len(p["ExportImageTasks"]) for p in paginator.paginate(PaginationConfig={"PageSize": 3})) == 5

    assert error_of(lambda: ec2.describe_export_image_tasks(MaxResults=501))[0] == "InvalidParameterValue"
    bad_filter = [{"Name": "image-id", "Values": ["x"]}]
    assert error_of(lambda: ec2.describe_export_image_tasks(Filters=bad_filter))[0] == "InvalidParameterValue"
    assert error_of(lambda: ec2.describe_export_image_tasks(NextToken="garbage!"))[0] == "InvalidPaginationToken"
    unknown = ["export-ami-0123456789abcdef0"]
    assert error_of(lambda: ec2.describe_export_image_tasks(ExportImageTaskIds=unknown))[0] == "InvalidExportTaskID.NotFound"


# --- tags -----------------------------------------------------------------------------------


def test_tags_on_tasks(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    emu.set_config(export_seconds=0)
    spec = [{"ResourceType": "export-image-task", "Tags": [{"Key": "team", "Value": "infra"}]}]
    task_id = start(ec2, world, TagSpecifications=spec)["ExportImageTaskId"]

    def tags() -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in describe(ec2, task_id)["Tags"]}

    assert tags() == {"team": "infra"}
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    ec2.create_tags(Resources=[task_id, volume], Tags=[{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "ops"}])
    assert tags() == {"team": "ops", "env": "dev"}
    volume_tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [volume]}])["Tags"]
    assert {t["Key"] for t in volume_tags} == {"env", "team"}, "non-export ids still reach moto"

    ec2.delete_tags(Resources=[task_id], Tags=[{"Key": "team", "Value": "nope"}])
    assert tags() == {"team": "ops", "env": "dev"}, "key+value deletes only a matching value"
    ec2.delete_tags(Resources=[task_id], Tags=[{"Key": "team", "Value": "ops"}])
    assert tags() == {"env": "dev"}
    ec2.create_tags(Resources=[task_id], Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    ec2.delete_tags(Resources=[task_id], Tags=[{"Key": "a"}])
    assert tags() == {"env": "dev", "b": "2"}, "key alone deletes whatever the value"
    ec2.delete_tags(Resources=[task_id])
    assert tags() == {}

    unknown = ["export-ami-0123456789abcdef0"]
    assert error_of(lambda: ec2.create_tags(Resources=unknown, Tags=[{"Key": "k", "Value": "v"}]))[0] == (
        "InvalidExportTaskID.NotFound"
    )
    assert error_of(lambda: ec2.create_tags(Resources=[task_id], Tags=[{"Key": "aws:k", "Value": "v"}]))[0] == (
        "InvalidParameterValue"
    )


# --- control endpoint, reset, process behaviour ---------------------------------------------


def test_control_endpoint(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    import urllib.error

    config = emu.get_config()
    assert config["export_seconds"] == 2.0 and config["max_active"] == 5
    assert emu.set_config(export_seconds=3, max_active=7)["max_active"] == 7
    for bad in (
        {"no_such_field": 1}, {"max_active": "many"}, {"export_seconds": -1}, {"stall_at_progress": 101},
        {"throttle_fraction": 1.5}, {"throttle_fraction": 0.6, "error_fraction": 0.6}, {"latency_seconds": -1},
        {"fault_seed": "x"},
    ):
        with pytest.raises(urllib.error.HTTPError) as info:
            emu.set_config(**bad)
        assert info.value.code == 400
    start(ec2, world)
    assert len(emu.control("GET", "tasks")["tasks"]) == 1
    emu.reset(config=True)
    assert ec2.describe_export_image_tasks()["ExportImageTasks"] == []
    assert emu.get_config()["max_active"] == 5


def test_moto_reset_clears_export_tasks(emu: EmulatorProcess, ec2: Any, world: dict[str, str]) -> None:
    import urllib.request

    start(ec2, world)
    urllib.request.urlopen(urllib.request.Request(f"{emu.url}/moto-api/reset", method="POST"), timeout=10).read()
    try:
        assert ec2.describe_export_image_tasks()["ExportImageTasks"] == []
    finally:
        seed(emu.url, emu.region)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_process_prints_ready_and_exits_cleanly(sig: int) -> None:
    proc = EmulatorProcess("--export-seconds", "1", "--max-active", "3")
    assert re.fullmatch(r"READY http://127\.0\.0\.1:\d+", proc.ready_line)
    assert proc.get_config()["max_active"] == 3
    assert proc.client("sts").get_caller_identity()["Account"] == "123456789012"
    assert proc.stop(sig) == 0
    assert proc.proc.stdout is not None and proc.proc.stdout.read() == "", "exactly one stdout line"


# --- moto patching and the in-process API ---------------------------------------------------


def test_patching_fails_loudly_if_moto_defines_the_actions() -> None:
    from export_image_provider.emulator.server import MotoConflictError, check_actions_free, install

    class Plain:
        def create_tags(self) -> None: ...

    class MotoWithExports(Plain):
        def describe_export_image_tasks(self) -> None: ...

    check_actions_free(Plain)
    with pytest.raises(MotoConflictError, match="describe_export_image_tasks"):
        check_actions_free(MotoWithExports)
    with pytest.raises(MotoConflictError):
        install(MotoWithExports)
    with pytest.raises(MotoConflictError, match="lacks"):
        install(Plain)


def test_in_process_emulator_with_simulated_clock() -> None:
    from export_image_provider.emulator import start_emulator

    now = [1000.0]
    with start_emulator(port=0, export_seconds=100, max_active=4, clock=lambda: now[0]) as running:
        assert running.url.startswith("http://127.0.0.1:")
        world = seed(running.url, "us-east-1")
        ec2, s3 = client("ec2", running.url, "us-east-1"), client("s3", running.url, "us-east-1")
        task_id = start(ec2, world)["ExportImageTaskId"]
        now[0] += 50
        record = describe(ec2, task_id)
        assert (record["Status"], record["StatusMessage"]) == ("active", "converting")
        assert not object_exists(s3, world["bucket"], f"exports/{task_id}.vmdk")
        now[0] += 50
        assert object_exists(s3, world["bucket"], f"exports/{task_id}.vmdk")
        assert describe(ec2, task_id)["Status"] == "completed"
        assert running.set_config(max_active=1).max_active == 1
        assert running.calls()["calls"]["ec2:ExportImage"] == 1
        assert running.reset_calls()["calls"]["s3:HeadObject"] == 2 and running.calls()["calls"] == {}
