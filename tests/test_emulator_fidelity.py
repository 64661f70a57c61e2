"""The emulator answers as AWS does where the facts file has evidence, through boto3 over HTTP.

Each test names the evidence it holds the emulator to (the facts file,
/work/shared/reference/ec2-export-image-facts.md, and the corpus in
tests/data/aws/); guesses are read from ``emulator/unsettled.py``, never
repeated here as literals.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import botocore.config
import pytest

from conftest import REPO_ROOT, EmulatorProcess
from export_image_provider.emulator.unsettled import CONVERTING_FROM_PROGRESS, RECORD_RETENTION_SECONDS
from test_emulator import describe, ec2, error_of, new_image, start, world  # noqa: F401 - fixtures



@pytest.fixture()
def emu(emulator: EmulatorProcess) -> EmulatorProcess:
    emulator.reset(config=True)
    yield emulator
    emulator.reset(config=True)


# --- shapes (facts: "Observed on real AWS, ImageId is absent"; ExportImage's RoleName/Tags) ---------------


def test_records_have_no_image_id_and_export_answer_has_role_and_tags_only_when_given(ec2, world) -> None:
    plain = start(ec2, world)
    assert "RoleName" not in plain and "Tags" not in plain
    assert plain["ImageId"] == world["image_id"] and plain["DiskImageFormat"] == "VMDK"
    assert "ImageId" not in describe(ec2, plain["ExportImageTaskId"])
    assert describe(ec2, plain["ExportImageTaskId"])["Tags"] == []  # DescribeExportImageTasks: Tags [] when untagged
    tagged = start(ec2, world, ImageId=new_image(ec2), RoleName=world["role_name"],
                   TagSpecifications=[{"ResourceType": "export-image-task", "Tags": [{"Key": "k", "Value": "v"}]}])
    assert tagged["RoleName"] == world["role_name"] and tagged["Tags"] == [{"Key": "k", "Value": "v"}]


def test_status_messages_follow_the_documented_sequence(emu, ec2, world) -> None:
    emu.set_config(export_seconds=100_000.0)  # long against wall-clock drift: only advance() moves it
    task_id = start(ec2, world)["ExportImageTaskId"]
    seen: dict[str, set[int]] = {}
    for _ in range(99):
        record = describe(ec2, task_id)
        seen.setdefault(record["StatusMessage"], set()).add(int(record["Progress"]))
        emu.advance(1000)
    assert seen["validating"] == {0}, seen
    assert seen["updating"] and all(0 < p < CONVERTING_FROM_PROGRESS for p in seen["updating"]), seen
    assert 21 in seen["updating"]  # the user guide's and CLI reference's example: Progress "21", "updating"
    assert min(seen["converting"]) >= CONVERTING_FROM_PROGRESS and 85 in seen["converting"]  # 2023 capture


# --- DescribeExportTasks: export-ami tasks with the format (facts: "the one read that reports the format") --


def test_describe_export_tasks_lists_export_ami_tasks_with_format_and_key(emu, ec2, world) -> None:
    emu.set_config(export_seconds=100.0, deleting_seconds=5.0)
    task_id = start(ec2, world, DiskImageFormat="VHD", Description="d")["ExportImageTaskId"]
    [task] = ec2.describe_export_tasks(ExportTaskIds=[task_id])["ExportTasks"]
    assert task["ExportToS3Task"] == {"DiskImageFormat": "VHD", "S3Bucket": world["bucket"],
                                      "S3Key": f"exports/{task_id}.vhd"}
    assert (task["ExportTaskId"], task["State"], task["Description"]) == (task_id, "active", "d")
    assert task_id in {t["ExportTaskId"] for t in ec2.describe_export_tasks()["ExportTasks"]}
    ec2.cancel_export_task(ExportTaskId=task_id)
    assert ec2.describe_export_tasks(ExportTaskIds=[task_id])["ExportTasks"][0]["State"] == "cancelling"
    emu.advance(6)
    assert ec2.describe_export_tasks(ExportTaskIds=[task_id])["ExportTasks"][0]["State"] == "cancelled"
    code, _, status = error_of(lambda: ec2.describe_export_tasks(ExportTaskIds=["export-ami-0123456789abcdef0"]))
    assert (code, status) == ("InvalidExportTaskID.NotFound", 400)


# --- never an HTML page ---------------------------------------------------------------------------------------


def _raw_ec2(emu: EmulatorProcess, bodies: list[bytes]) -> Any:
    client = boto3.client("ec2", endpoint_url=emu.url, region_name=emu.region, aws_access_key_id="testing",
                          aws_secret_access_key="testing",
                          config=botocore.config.Config(parameter_validation=False, retries={"max_attempts": 1}))
    client.meta.events.register("after-call.ec2", lambda http_response, **_: bodies.append(http_response.content))
    return client


def test_bad_parameters_and_unimplemented_actions_answer_ec2_xml_errors(emu) -> None:
    bodies: list[bytes] = []
    client = _raw_ec2(emu, bodies)
    assert error_of(lambda: client.describe_export_image_tasks(MaxResults="abc"))[::2] == ("InvalidParameterValue", 400)
    assert error_of(lambda: client.describe_store_image_tasks())[::2] == ("InvalidAction", 400)
    assert len(bodies) == 2
    for body in bodies:
        assert body.startswith(b"<?xml") and b"<Response><Errors><Error><Code>" in body and b"html" not in body


# --- NextToken on a describe by ids (facts: "has been seen to return a NextToken") ------------------------


@pytest.mark.parametrize("mode", ["partial", "trailing"])
def test_describe_by_ids_can_carry_a_next_token(emu, ec2, world, mode) -> None:
    ids = [start(ec2, world, ImageId=new_image(ec2))["ExportImageTaskId"] for _ in range(2)]
    emu.set_config(by_id_next_token=mode)
    first = ec2.describe_export_image_tasks(ExportImageTaskIds=ids)
    assert first.get("NextToken")
    rest = ec2.describe_export_image_tasks(ExportImageTaskIds=ids, NextToken=first["NextToken"])
    got = [t["ExportImageTaskId"] for t in first["ExportImageTasks"] + rest["ExportImageTasks"]]
    assert sorted(got) == sorted(ids) and len(first["ExportImageTasks"]) == (1 if mode == "partial" else 2)
    emu.set_config(by_id_next_token=None)
    assert "NextToken" not in ec2.describe_export_image_tasks(ExportImageTaskIds=ids)


# --- retention (a guess: unsettled.RECORD_RETENTION_SECONDS) ------------------------------------------------


def test_ended_records_expire_by_default(emu, ec2, world) -> None:
    assert emu.get_config()["expire_after_seconds"] == RECORD_RETENTION_SECONDS
    emu.set_config(export_seconds=0.0)
    task_id = start(ec2, world)["ExportImageTaskId"]
    emu.advance(RECORD_RETENTION_SECONDS - 60)
    assert describe(ec2, task_id)["Status"] == "completed"
    emu.advance(120)
    assert error_of(lambda: describe(ec2, task_id))[0] == "InvalidExportTaskID.NotFound"


# --- DryRun answers DryRunOperation only once the request is valid ------------------------------------------


def test_dry_run_validates_first_and_changes_nothing(ec2, world) -> None:
    assert error_of(lambda: start(ec2, world, S3ExportLocation={"S3Bucket": "no-such-bucket-x"}, DryRun=True))[0] \
        == "InvalidParameter"
    assert error_of(lambda: ec2.describe_export_image_tasks(Filters=[{"Name": "x", "Values": ["y"]}], DryRun=True))[0] \
        == "InvalidParameterValue"
    assert error_of(lambda: start(ec2, world, DryRun=True))[0] == "DryRunOperation"
    assert ec2.describe_export_image_tasks()["ExportImageTasks"] == []
    task_id = start(ec2, world)["ExportImageTaskId"]
    tag = [{"Key": "k", "Value": "v"}]
    assert error_of(lambda: ec2.create_tags(Resources=[task_id], Tags=tag, DryRun=True))[0] == "DryRunOperation"
    assert describe(ec2, task_id)["Status"] == "active" and describe(ec2, task_id)["Tags"] == []


# --- the service role: trust with sts:Externalid, and its permissions (facts: "Prerequisites") -------------


def _role(emu: EmulatorProcess, trust: dict[str, Any], policy: dict[str, Any] | None) -> str:
    iam = emu.client("iam")
    name = f"vmie-{uuid.uuid4().hex[:8]}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return name


def _policy(name: str, bucket: str) -> dict[str, Any]:
    return json.loads((REPO_ROOT / "policies" / name).read_text().replace("EXPORT_BUCKET", bucket))


def test_service_role_needs_the_external_id_and_its_permissions(emu, ec2, world) -> None:
    trust = _policy("vmimport-trust-policy.json", world["bucket"])
    permissions = _policy("vmimport-role-policy.json", world["bucket"])
    wrong_id = json.loads(json.dumps(trust).replace('"vmimport"', '"someone-else"'))
    other_bucket = _policy("vmimport-role-policy.json", "another-bucket")
    for role_trust, role_policy in ((wrong_id, permissions), (trust, None), (trust, other_bucket)):
        name = _role(emu, role_trust, role_policy)
        code, message, _ = error_of(lambda: start(ec2, world, RoleName=name, ImageId=new_image(ec2)))
        assert code == "InvalidParameter" and f"service role {name}" in message
    assert start(ec2, world, RoleName=_role(emu, trust, permissions))["Status"] == "active"


# --- faults: denied and lost answers ----------------------------------------------------------------------


def test_denied_actions_answer_403_before_the_backend(emu, ec2, world) -> None:
    emu.set_config(export_seconds=0.0, deny_actions="s3:HeadObject, ec2:CancelExportTask")
    task_id = start(ec2, world)["ExportImageTaskId"]
    s3 = emu.client("s3")
    info = error_of(lambda: s3.head_object(Bucket=world["bucket"], Key=f"exports/{task_id}.vmdk"))
    assert info[2] == 403
    assert error_of(lambda: ec2.cancel_export_task(ExportTaskId=task_id))[::2] == ("UnauthorizedOperation", 403)
    assert s3.get_object(Bucket=world["bucket"], Key=f"exports/{task_id}.vmdk")["ContentLength"] > 0


def test_a_lost_answer_is_applied_and_a_retry_with_the_client_token_gets_the_same_task(emu, ec2, world) -> None:
    emu.set_config(lose_responses=1, lose_responses_of="ec2:ExportImage")
    emu.reset_calls()
    token = str(uuid.uuid4())
    response = start(ec2, world, ClientToken=token)  # botocore retries the dropped connection itself
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert emu.calls()["ec2:ExportImage"] == 2 and emu.get_config()["lose_responses"] == 0
    assert [t["ExportImageTaskId"] for t in ec2.describe_export_image_tasks()["ExportImageTasks"]] \
        == [response["ExportImageTaskId"]]


# --- caller-policy mode: moto evaluates the caller's IAM policy ---------------------------------------------


def _caller(emu: EmulatorProcess, policy: dict[str, Any]) -> Any:
    iam = emu.client("iam")
    name = f"caller-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.client("ec2", endpoint_url=emu.url, region_name=emu.region, aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"])


def test_caller_policy_mode_holds_the_documented_least_privilege(emu, world) -> None:
    least = _policy("caller-policy.json", world["bucket"])
    no_pass_role = {**least, "Statement": [s for s in least["Statement"] if s.get("Sid") != "PassTheServiceRole"]}
    no_export = {**least, "Statement": [{**s, "Action": [a for a in s["Action"] if a != "ec2:ExportImage"]}
                                         if s.get("Sid") == "ExportImageTasks" else s for s in least["Statement"]]}
    ok, without_pass_role, without_export = (_caller(emu, p) for p in (least, no_pass_role, no_export))
    image = new_image(emu.client("ec2"))
    emu.set_config(caller_policy=True, export_seconds=100.0)
    assert error_of(lambda: start(ok, world, ImageId=image, DryRun=True))[0] == "DryRunOperation"
    assert error_of(lambda: start(without_export, world, ImageId=image, DryRun=True))[::2] \
        == ("UnauthorizedOperation", 403)
    assert error_of(lambda: start(without_pass_role, world, ImageId=image))[::2] == ("UnauthorizedOperation", 403)
    task_id = start(ok, world, ImageId=image)["ExportImageTaskId"]
    ok.create_tags(Resources=[task_id], Tags=[{"Key": "k", "Value": "v"}])
    assert describe(ok, task_id)["Tags"] == [{"Key": "k", "Value": "v"}]
    assert error_of(lambda: ok.describe_export_tasks())[::2] == ("UnauthorizedOperation", 403)  # not in the policy
    ok.cancel_export_task(ExportTaskId=task_id)
