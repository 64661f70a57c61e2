"""The AWS gateway's own contract, over HTTP against the emulator: how it batches, pages, splits and
fails. The provider's tests reach most of it through lifecycles; these pin what they cannot see."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from typing import Any

import pytest

from export_image_provider.aws import AwsAuth, AwsGateway, ExportError, resolve_region
from export_image_provider.batching import BATCH_WINDOW_ENV
from export_image_provider.spec import ExportSpec
from test_provider import world  # noqa: F401 - fixture

DESCRIBE = "ec2:DescribeExportImageTasks"


@pytest.fixture(autouse=True)
def fresh(emulator):
    emulator.reset(config=True)
    yield
    emulator.reset(config=True)


def replay(emulator, count: int = 1, status: str = "active", tags: dict[str, str] | None = None,
           bucket: str = "gateway-bucket", fmt: str = "VMDK", **fields: str | None) -> list[str]:
    """``count`` tasks as DescribeExportImageTasks would report them, put straight into the emulator (which
    never advances them); ``fields`` are more of the record's (None leaves one out)."""
    fields = {"Progress": "21", "StatusMessage": "updating", **fields}
    ids = unknown_ids(count)
    for task_id in ids:
        record = {"ExportImageTaskId": task_id, "Status": status,
                  "S3ExportLocation": {"S3Bucket": bucket, "S3Prefix": "exports/"},
                  "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
                  **{k: v for k, v in fields.items() if v is not None}}
        emulator.control("POST", "tasks", {"record": record, "disk_image_format": fmt})
    return ids


def unknown_ids(count: int) -> list[str]:
    return [f"export-ami-{uuid.uuid4().hex[:17]}" for _ in range(count)]


def describes(emulator) -> int:
    return emulator.calls().get(DESCRIBE, 0)


def test_describes_ask_for_at_most_200_ids_a_call(world, emulator):
    ids = replay(emulator, 401)
    gateway = AwsGateway("us-east-1")
    emulator.reset_calls()
    assert set(gateway.describe_many(ids[:400])) == set(ids[:400])
    assert describes(emulator) == 2
    emulator.reset_calls()
    assert set(gateway.describe_many(ids)) == set(ids)
    assert describes(emulator) == 3


def test_unknown_ids_are_isolated_by_halving_the_batch(world, emulator):
    """AWS refuses a whole describe for one unknown id: halving finds the known ones in 2n-1 calls at most."""
    known, unknown = replay(emulator, 2), unknown_ids(2)
    emulator.reset_calls()
    found = AwsGateway("us-east-1").describe_many([known[0], unknown[0], known[1], unknown[1]])
    assert set(found) == set(known)
    assert describes(emulator) == 7  # 4 refused, 2 refused, 1, 1 refused, 2 refused, 1, 1 refused


def test_a_next_token_is_followed_until_every_id_is_in_and_no_further(world, emulator):
    ids = replay(emulator, 3)
    gateway = AwsGateway("us-east-1")
    emulator.set_config(by_id_next_token="partial")  # one record a page
    emulator.reset_calls()
    assert set(gateway.describe_many(ids)) == set(ids)
    assert describes(emulator) == 3
    emulator.set_config(by_id_next_token="trailing")  # every record, and a token to an empty page
    emulator.reset_calls()
    assert set(gateway.describe_many(ids)) == set(ids)
    assert describes(emulator) == 1


def test_a_next_token_that_comes_back_is_an_error_not_an_empty_answer(world, emulator):
    ids = replay(emulator, 4)
    emulator.set_config(by_id_next_token="stuck")
    token = emulator.client("ec2").describe_export_image_tasks(ExportImageTaskIds=ids)["NextToken"]
    assert len(token) > 20
    with pytest.raises(ExportError) as raised:
        AwsGateway("us-east-1").describe_many(ids)
    assert raised.value.code == "RepeatedNextToken"
    assert raised.value.message == (f"AWS returned the NextToken {token[:20]}... twice for ids "
                                    f"{ids[0]}, {ids[1]}, {ids[2]}")


def test_concurrent_describes_share_one_call_and_a_zero_window_turns_that_off(world, emulator, monkeypatch):
    """Batching is per (region, credentials): fresh credentials give a fresh batcher with this test's window."""
    ids = replay(emulator, 4)
    emulator.set_config(latency_seconds=0.3)  # every describe is in flight while the others arrive

    def describe_at_once(window: str) -> int:
        monkeypatch.setenv(BATCH_WINDOW_ENV, window)
        gateway = AwsGateway("us-east-1", AwsAuth(access_key="testing", secret_key="testing", token=uuid.uuid4().hex))
        gateway.ec2  # noqa: B018 - the client exists before the clock starts
        start = threading.Barrier(len(ids))
        answers: dict[str, Any] = {}

        def run(task_id: str) -> None:
            start.wait()
            answers[task_id] = gateway.describe(task_id)

        threads = [threading.Thread(target=run, args=(task_id,)) for task_id in ids]
        emulator.reset_calls()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert {k: v.task_id for k, v in answers.items()} == {i: i for i in ids}
        return describes(emulator)

    assert describe_at_once("0.5") == 1
    assert describe_at_once("0") == len(ids)


def test_a_tag_search_yields_only_the_tasks_carrying_the_tag(world, emulator):
    mine = replay(emulator, 1, tags={"owner": "me"})
    replay(emulator, 1, tags={"owner": "someone else"})
    replay(emulator, 1)
    replay(emulator, 1, status="completed", tags={"owner": "me"})
    found = list(AwsGateway("us-east-1").tasks_tagged("owner", "me"))
    assert len(found) == 2 and mine[0] in [t.task_id for t in found]


def test_a_tag_search_asks_for_the_largest_page_aws_allows(world, emulator):
    """MaxResults takes 1..500 (facts file): 500 tasks are one call."""
    replay(emulator, 500, tags={"owner": "me"})
    emulator.reset_calls()
    assert len(list(AwsGateway("us-east-1").tasks_tagged("owner", "me"))) == 500
    assert describes(emulator) == 1


def test_cancelling_a_malformed_id_is_an_error_not_gone(world, emulator):
    gateway = AwsGateway("us-east-1")
    assert gateway.cancel(unknown_ids(1)[0]) == "gone"
    with pytest.raises(ExportError) as raised:
        gateway.cancel("export-ami-NOT-AN-ID")
    assert raised.value.code == "InvalidExportTaskID.Malformed"


def test_only_a_refused_delete_of_a_version_gets_the_version_advice(world, emulator):
    """S3 answers 403 for Object Lock, MFA delete and a missing permission alike (see delete_object)."""
    emulator.client("s3").put_object(Bucket=world["bucket"], Key="exports/kept.vmdk", Body=b"image")
    gateway = AwsGateway("us-east-1")
    emulator.set_config(deny_actions="s3:DeleteObject,s3:DeleteObjectVersion")
    with pytest.raises(ExportError) as current:
        gateway.delete_object(world["bucket"], "exports/kept.vmdk")
    with pytest.raises(ExportError) as version:
        gateway.delete_object(world["bucket"], "exports/kept.vmdk", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")
    assert current.value.code == "AccessDenied" and "version" not in current.value.hint
    assert version.value.code == "AccessDenied"
    assert "needs s3:DeleteObjectVersion" in version.value.hint and "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd" in version.value.hint


def test_the_clients_retry_and_time_out_as_documented(world):
    """botocore's standard mode retries throttling and 5xx (facts: 'Throttling and retries'); 10 attempts
    outlast a burst at EC2's refill rates; a minute is far beyond any one answer."""
    config = AwsGateway("us-east-1").ec2.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 11}  # botocore: 10 retries, 11 calls
    assert (config.connect_timeout, config.read_timeout) == (10, 60)


@pytest.fixture
def aws_files(tmp_path, monkeypatch):
    """An AWS config file of this test's own, and no region from the environment."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return config


def test_the_region_comes_from_the_profile_or_is_asked_for(world, aws_files):
    with_region, without = f"with-{uuid.uuid4().hex[:8]}", f"without-{uuid.uuid4().hex[:8]}"
    aws_files.write_text(f"[profile {with_region}]\nregion = eu-north-1\n"
                         f"[profile {without}]\noutput = json\n")
    assert resolve_region("ap-south-2", without) == "ap-south-2"
    assert resolve_region(None, with_region) == "eu-north-1"
    with pytest.raises(ExportError) as raised:
        resolve_region(None, without)
    assert raised.value.code == "NoRegion" and "aws:region" in str(raised.value)
    with pytest.raises(ExportError) as raised:
        resolve_region(None, f"missing-{uuid.uuid4().hex[:8]}")
    assert raised.value.code == "ProfileNotFound" and "\n" not in str(raised.value)


def test_a_missing_profile_fails_client_creation_in_one_line(world, aws_files):
    with pytest.raises(ExportError) as raised:
        AwsGateway("us-east-1", f"missing-{uuid.uuid4().hex[:8]}").ec2  # noqa: B018
    assert raised.value.code == "ProfileNotFound" and raised.value.operation == "create ec2 client"


SPEC = ExportSpec(image_id="ami-0123456789abcdef0", disk_image_format="VMDK", s3_bucket="gateway-bucket",
                  s3_prefix="exports/", role_name=None)


CALLS = [
    ("ExportImage", lambda g: g.start_export(SPEC, "token", {})),
    ("DescribeExportImageTasks", lambda g: g.describe_many([None])),
    ("DescribeExportTasks", lambda g: g.export_location(None)),
    ("CancelExportTask", lambda g: g.cancel(None)),
    ("CreateTags", lambda g: g.set_tags(None, {"team": "platform"})),
    ("DeleteTags", lambda g: g.remove_tags(None, ["team"])),
    ("HeadObject", lambda g: g.head_object("not a bucket!", "exports/x.vmdk")),
    ("DeleteObject", lambda g: g.delete_object("not a bucket!", "exports/x.vmdk")),
    ("DeleteObject", lambda g: g.delete_object("not a bucket!", "exports/x.vmdk", "v1")),
]


@pytest.mark.parametrize("operation, call", CALLS)
def test_botocores_own_refusals_leave_every_call_as_one_line(world, operation, call):
    """Failures that never reach AWS (here botocore's parameter validation) are translated like AWS's."""
    with pytest.raises(ExportError) as raised:
        call(AwsGateway("us-east-1"))
    assert (raised.value.operation, raised.value.code) == (operation, "ParamValidationError")
    assert "\n" not in str(raised.value)



@pytest.mark.parametrize("action, call", [
    ("ec2:DescribeExportImageTasks", lambda g: list(g.tasks_tagged("owner", "me"))),
    ("ec2:DescribeExportImageTasks", lambda g: g.describe_many(unknown_ids(1))),
    ("ec2:CreateTags", lambda g: g.set_tags(unknown_ids(1)[0], {"team": "platform"})),
    ("ec2:DeleteTags", lambda g: g.remove_tags(unknown_ids(1)[0], ["team"])),
    ("ec2:CancelExportTask", lambda g: g.cancel(unknown_ids(1)[0])),
    ("sts:GetCallerIdentity", lambda g: g.account_id),
])
def test_a_denied_call_is_one_line_naming_aws_code(world, emulator, action, call):
    gateway = AwsGateway("us-east-1", AwsAuth(access_key="testing", secret_key="testing", token=uuid.uuid4().hex))
    emulator.set_config(deny_actions=action)
    with pytest.raises(ExportError) as raised:
        call(gateway)
    assert raised.value.code in ("UnauthorizedOperation", "AccessDenied") and "\n" not in str(raised.value)


def test_a_records_description_is_kept_and_an_empty_one_is_none(world, emulator):
    ids = [replay(emulator, status="completed", Description=description)[0] for description in ("nightly build", "")]
    found = AwsGateway("us-east-1").describe_many(ids)
    assert [found[i].description for i in ids] == ["nightly build", None]


def test_an_export_record_without_a_format_tells_nothing(world, emulator):
    """DescribeExportTasks is the one read with the format; an answer without one is no answer."""
    [task_id] = replay(emulator, fmt="")
    assert AwsGateway("us-east-1").export_location(task_id) is None
    [known] = replay(emulator, 1)
    assert AwsGateway("us-east-1").export_location(known) == ("VMDK", "gateway-bucket", f"exports/{known}.vmdk")


def test_a_task_record_cannot_be_changed_once_read(world, emulator):
    """Records are compared (adoption, resumption) and cached by the batcher: nobody may edit one."""
    [task_id] = replay(emulator, 1)
    task = AwsGateway("us-east-1").describe(task_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.status = "completed"
