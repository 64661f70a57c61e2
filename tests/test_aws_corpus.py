"""Real AWS answers (tests/data/aws/, each with its source) through the provider's parsing, adoption and read.

Captured DescribeExportImageTasks records are replayed by the emulator
(``POST /_emulator/tasks``), so they reach the provider as a real answer does:
serialised to EC2 XML (moto, from botocore's model), over HTTP, parsed by
botocore. The emulator's own answers are held to the captured shapes, and the
captured error messages to the provider's error matching.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.exceptions
import botocore.parsers
import pytest

from conftest import REPO_ROOT
from export_image_provider.aws import AwsGateway, ExportError, ExportTask, translate
from export_image_provider.emulator.faults import render_error
from export_image_provider.slots import is_slot_error
from test_provider import _start_outside_pulumi, props, provider, world  # noqa: F401

CORPUS = REPO_ROOT / "tests" / "data" / "aws"
RECORDS = {c["name"]: c for c in json.loads((CORPUS / "describe-export-image-tasks.json").read_text())}
EXPORTS = json.loads((CORPUS / "export-image.json").read_text())
ERRORS = json.loads((CORPUS / "errors.json").read_text())


@pytest.fixture(autouse=True)
def fresh(emulator):
    emulator.reset(config=True)
    yield
    emulator.reset(config=True)


def replay(emulator, name: str, fmt: str = "VMDK") -> dict[str, Any]:
    capture = RECORDS[name]
    body = {"record": capture["record"], "disk_image_format": capture.get("format", fmt)}
    return emulator.control("POST", "tasks", body)["task"]


def bucket_with_image(emulator, record: dict[str, Any], fmt: str) -> str:
    location = record["S3ExportLocation"]
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket=location["S3Bucket"])
    key = f"{location['S3Prefix']}{record['ExportImageTaskId']}.{fmt.lower()}"
    s3.put_object(Bucket=location["S3Bucket"], Key=key, Body=b"x")
    return key


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_captured_records_survive_the_wire_and_parse_without_image_id(world, emulator, name):
    record = RECORDS[name]["record"]
    replay(emulator, name)
    answer = emulator.client("ec2").describe_export_image_tasks(ExportImageTaskIds=[record["ExportImageTaskId"]])
    assert answer["ExportImageTasks"] == [record]  # botocore parses the XML back into the captured record
    task = AwsGateway("us-east-1").describe(record["ExportImageTaskId"])
    progress = int(record["Progress"]) if "Progress" in record else None
    assert task == ExportTask.from_aws(record)
    assert (task.status, task.progress, task.status_message, task.image_id) == \
        (record["Status"], progress, record.get("StatusMessage"), None)
    assert (task.s3_bucket, task.s3_prefix) == (record["S3ExportLocation"]["S3Bucket"], "exports/")


def test_the_emulators_answers_have_the_captured_shapes(world, emulator):
    ec2 = emulator.client("ec2")
    emulator.set_config(export_seconds=100.0)
    [plain] = [e for e in EXPORTS if e["name"] == "capture-2023"]
    response = ec2.export_image(ImageId=world["image_id"], DiskImageFormat="VHD",
                                S3ExportLocation={"S3Bucket": world["bucket"], "S3Prefix": "exports/"})
    response.pop("ResponseMetadata")
    assert set(response) == set(plain["response"])
    task_id = response["ExportImageTaskId"]
    emulator.advance(60)
    record = ec2.describe_export_image_tasks(ExportImageTaskIds=[task_id])["ExportImageTasks"][0]
    assert set(record) == set(RECORDS["capture-2023-active"]["record"])
    emulator.advance(60)
    record = ec2.describe_export_image_tasks(ExportImageTaskIds=[task_id])["ExportImageTasks"][0]
    assert set(record) == set(RECORDS["capture-2023-completed"]["record"])


def test_adoption_and_read_of_a_captured_completed_export(world, emulator, provider):
    record = RECORDS["capture-2023-completed"]["record"]
    replay(emulator, "capture-2023-completed")
    key = bucket_with_image(emulator, record, "VHD")
    inputs = props(world, existing_task_id=record["ExportImageTaskId"], disk_image_format="VHD",
                   s3_bucket=record["S3ExportLocation"]["S3Bucket"])
    created = provider.create(inputs)
    assert (created.id, created.outs["status"], created.outs["s3_key"]) == (record["ExportImageTaskId"], "completed", key)
    assert provider.read(created.id, created.outs).outs == created.outs


def test_adoption_of_a_captured_running_export_checks_its_format(world, emulator, provider):
    record = RECORDS["capture-2023-active"]["record"]
    replay(emulator, "capture-2023-active")
    emulator.client("s3").create_bucket(Bucket=record["S3ExportLocation"]["S3Bucket"])
    inputs = dict(existing_task_id=record["ExportImageTaskId"], s3_bucket=record["S3ExportLocation"]["S3Bucket"],
                  wait_for_completion=False)
    with pytest.raises(Exception, match="has disk_image_format='VHD' but the disk_image_format argument is 'VMDK'"):
        provider.create(props(world, **inputs))
    created = provider.create(props(world, disk_image_format="VHD", **inputs))
    assert (created.outs["status"], created.outs["progress"], created.outs["status_message"]) == \
        ("active", 85, "converting")
    assert provider.read(created.id, created.outs).outs["progress"] == 85


# --- errors as AWS words them ---------------------------------------------------------------------------


def client_error(operation: str, code: str, message: str) -> botocore.exceptions.ClientError:
    """The ClientError botocore raises for an EC2 error answer with this code and message."""
    body = render_error("ec2", code, message)[2]
    parsed = botocore.parsers.create_parser("ec2").parse({"body": body, "headers": {}, "status_code": 400}, None)
    return botocore.exceptions.ClientError(parsed, operation)


@pytest.mark.parametrize("entry", ERRORS, ids=[e["code"] + ":" + e["message"][:20] for e in ERRORS])
def test_captured_errors_read_as_one_line_and_never_wait_for_a_slot(entry):
    error = translate(entry["operation"], client_error(entry["operation"], entry["code"], entry["message"]))
    assert error.code == entry["code"] and entry["message"] in str(error) and "\n" not in str(error)
    assert not is_slot_error(error), "a permanent refusal must fail at once, not wait for a slot"
    if entry["kind"] == "permanent":
        assert error.hint, f"no advice for {entry['message']!r}"


def test_slot_and_cancel_matching_against_the_emulators_wording_and_unknown_wordings(world, emulator):
    """No captured wording exists for the limits (tests/data/aws/README.md): the emulator's guess must match,
    and an unknown wording must still end: ResourceLimitExceeded waits (bounded by timeout_minutes),
    IncorrectState with other words fails at once with AWS's message."""
    ec2 = emulator.client("ec2")
    emulator.set_config(export_seconds=100.0, max_active=1)
    task_id = _start_outside_pulumi(emulator, world)
    refusals = []
    for image in (world["image_id"], ec2.register_image(Name="corpus-limit")["ImageId"]):
        try:
            _start_outside_pulumi(emulator, world, ImageId=image)
        except botocore.exceptions.ClientError as refusal:
            refusals.append(translate("ExportImage", refusal))
    assert [r.code for r in refusals] == ["IncorrectState", "ResourceLimitExceeded"]
    assert all(is_slot_error(r) for r in refusals)
    assert is_slot_error(ExportError("ExportImage", "ResourceLimitExceeded", "any other wording"))
    assert not is_slot_error(ExportError("ExportImage", "IncorrectState", "any other wording"))
    gateway = AwsGateway("us-east-1")
    assert gateway.cancel(task_id) == "cancelled"
    assert gateway.cancel("export-ami-0123456789abcdef0") == "gone"
    emulator.set_config(export_seconds=0.0)
    done = _start_outside_pulumi(emulator, world, ImageId=ec2.register_image(Name="corpus-done")["ImageId"])
    assert gateway.cancel(done) == "finished"  # any IncorrectState wording: too late to cancel


@pytest.mark.parametrize("error, code, words", [
    (botocore.exceptions.NoCredentialsError(), "NoCredentials", "set AWS_PROFILE"),
    (botocore.exceptions.NoRegionError(), "NoRegion", "aws:region"),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="https://ec2.example"), "EndpointConnectionError", ""),
])
def test_botocore_failures_without_an_aws_answer_become_one_line_each(error, code, words):
    translated = translate("ExportImage", error)
    assert translated.code == code and words in str(translated) and "\n" not in str(translated)
