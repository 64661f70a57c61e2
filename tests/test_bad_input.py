"""Bad input through the real Pulumi CLI: rejected early, named, and with the fix.

Each row is one invalid input to an ``ImageExport``.

* Rows knowable from the inputs alone must fail at ``pulumi preview`` with zero
  AWS calls to the emulator, the CLI's line naming the argument and the fix.
  The engine stops a preview at the first resource whose check fails, but reports
  every failure of that resource, so the rows are packed into a few resources
  (one row per argument each) and those previews run side by side.
* Rows only AWS can know (the AMI, the bucket, the role, the task) pass the
  preview and fail at ``pulumi up`` with the provider's one-line message naming
  the argument or the AWS prerequisite and what to do, leaving no ImageExport in
  the state and starting no task. They share one program, run with
  ``pulumi up --continue-on-error`` so that every row is attempted.

Every row is its own test and its own line in ``tests/RELIABILITY.md``.
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from reliability_report import (
    diagnostics,
    new_bucket,
    output_of,
    provider_errors,
    register_amis,
    report_row,
    set_program,
    task_records,
)

pytest_plugins = ["reliability_report"]

PREVIEW_PARALLEL = 4


@dataclass(frozen=True)
class Row:
    label: str  # the input, as a person would describe it
    argument: str
    where: str  # "preview" or "up"
    value: dict[str, Any]  # keyword arguments over a valid base; "@name" is a seeded fixture
    expect: tuple[str, ...]  # fragments the message must hold (the argument, the fix)
    key: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.key


LONG_KEY = "k" * 128
TOO_MANY_TAGS = {f"tag{i:02d}": "v" for i in range(47)}

PREVIEW_ROWS = [
    Row("image_id missing (None)", "image_id", "preview", {"image_id": None},
        ("is required", "like ami-0123456789abcdef0")),
    Row("image_id 'ami-xyz' (not an AMI id)", "image_id", "preview", {"image_id": "ami-xyz"},
        ("is not an AMI id", "8 or 17 lowercase hex digits")),
    Row("image_id a number (123)", "image_id", "preview", {"image_id": 123},
        ("must be a string like ami-0123456789abcdef0",)),
    Row("disk_image_format 'QCOW2' (unknown format)", "disk_image_format", "preview", {"disk_image_format": "QCOW2"},
        ("not a format ExportImage writes", "use one of VMDK, RAW, VHD")),
    Row("disk_image_format missing (None)", "disk_image_format", "preview", {"disk_image_format": None},
        ("is required", "VMDK, RAW, VHD")),
    Row("disk_image_format a number (1)", "disk_image_format", "preview", {"disk_image_format": 1},
        ("must be one of VMDK, RAW, VHD",)),
    Row("s3_bucket missing (None)", "s3_bucket", "preview", {"s3_bucket": None},
        ("is required", "existing bucket")),
    Row("s3_bucket 's3://my-exports/images' (a URI)", "s3_bucket", "preview", {"s3_bucket": "s3://my-exports/images"},
        ("give the name only", "put any path in s3_prefix")),
    Row("s3_bucket 'My_Exports' (invalid name)", "s3_bucket", "preview", {"s3_bucket": "My_Exports"},
        ("not a valid S3 bucket name", "lowercase letters, digits")),
    Row("s3_bucket a list", "s3_bucket", "preview", {"s3_bucket": ["my-exports"]},
        ("must be a bucket name",)),
    Row("s3_prefix '/exports/' (leading slash)", "s3_prefix", "preview", {"s3_prefix": "/exports/"},
        ("starts with '/'", "use 'exports/'")),
    Row("s3_prefix of 981 bytes", "s3_prefix", "preview", {"s3_prefix": "p" * 981},
        ("longer than 980 bytes", "1024 bytes")),
    Row("s3_prefix a number (5)", "s3_prefix", "preview", {"s3_prefix": 5},
        ("must be a string (may be empty)",)),
    Row("role_name an ARN", "role_name", "preview", {"role_name": "arn:aws:iam::123456789012:role/vmimport"},
        ("is an ARN", "give the role's name only")),
    Row("role_name 'vm import!' (invalid characters)", "role_name", "preview", {"role_name": "vm import!"},
        ("is not an IAM role name", "letters, digits and +=,.@_-")),
    Row("description of 256 characters", "description", "preview", {"description": "d" * 256},
        ("256 characters long", "at most 255")),
    Row("description a number (42)", "description", "preview", {"description": 42},
        ("must be a string",)),
    Row("tag key of 128 characters", "tags", "preview", {"tags": {LONG_KEY: "x"}},
        ("128 characters long", "tag keys take at most 127")),
    Row("tag value of 257 characters", "tags", "preview", {"tags": {"team": "v" * 257}},
        ("257 characters long", "tag values take at most 256")),
    Row("tag key 'aws:owner' (reserved by AWS)", "tags", "preview", {"tags": {"aws:owner": "me"}},
        ("AWS reserves", "choose another key")),
    Row("47 tags (too many)", "tags", "preview", {"tags": TOO_MANY_TAGS},
        ("has 47 tags", "at most 46 are allowed")),
    Row("tag key 'export-image-provider:resource' (reserved by the provider)", "tags", "preview",
        {"tags": {"export-image-provider:resource": "x"}}, ("which this provider reserves",)),
    Row("empty tag key", "tags", "preview", {"tags": {"": "x"}}, ("must be a non-empty string",)),
    Row("tag value a number (5)", "tags", "preview", {"tags": {"team": 5}},
        ("value of 'team' must be a string",)),
    Row("tags a list", "tags", "preview", {"tags": ["team"]}, ("must be a mapping of tag keys to string values",)),
    Row("region 'mars-1' (not a region)", "region", "preview", {"region": "mars-1"},
        ("is not an AWS region name like 'eu-west-1'",)),
    Row("region 'US-EAST-1' (upper case)", "region", "preview", {"region": "US-EAST-1"},
        ("is not an AWS region name like 'eu-west-1'",)),
    Row("wait_for_completion 'yes' (a string)", "wait_for_completion", "preview", {"wait_for_completion": "yes"},
        ("must be true or false",)),
    Row("timeout_minutes 0", "timeout_minutes", "preview", {"timeout_minutes": 0},
        ("must be a positive number of minutes",)),
    Row("timeout_minutes -5", "timeout_minutes", "preview", {"timeout_minutes": -5},
        ("must be a positive number of minutes",)),
    Row("timeout_minutes 'soon' (a string)", "timeout_minutes", "preview", {"timeout_minutes": "soon"},
        ("must be a number of minutes",)),
    Row("existing_task_id 'task-123' (not a task id)", "existing_task_id", "preview",
        {"existing_task_id": "task-123"}, ("is not an export-image task id like export-ami-",)),
    Row("existing_task_id 'export-ami-XYZ' (malformed)", "existing_task_id", "preview",
        {"existing_task_id": "export-ami-XYZ"}, ("is not an export-image task id like export-ami-",)),
]

UP_ROWS = [
    Row("bucket in another region (eu-west-1)", "s3_bucket", "up", {"s3_bucket": "@eu_bucket"},
        ("ExportImage failed", "eu-west-1", "same Region", "fix s3_bucket")),
    Row("bucket that does not exist", "s3_bucket", "up", {"s3_bucket": "@missing_bucket"},
        ("ExportImage failed", "does not exist", "create the bucket", "fix s3_bucket")),
    Row("bucket with SSE-KMS default encryption", "s3_bucket", "up", {"s3_bucket": "@kms_bucket"},
        ("ExportImage failed", "SSE-KMS", "SSE-S3", "fix s3_bucket")),
    Row("service role that does not exist", "role_name", "up", {"role_name": "no-such-vmimport-role"},
        ("ExportImage failed", "service role no-such-vmimport-role", "vmie.amazonaws.com", "set role_name")),
    Row("AMI that does not exist", "image_id", "up", {"image_id": "ami-0123456789abcdef0"},
        ("ExportImage failed", "InvalidAMIID.NotFound", "check image_id")),
    Row("AMI with encrypted snapshots", "image_id", "up", {"image_id": "@encrypted_image_id"},
        ("ExportImage failed", "encrypted", "no copy of the AMI or snapshot removes encryption",
         "launch an instance from the AMI", "new unencrypted EBS volumes", "create an AMI from those volumes")),
    Row("Marketplace AMI", "image_id", "up", {"image_id": "@marketplace_image_id"},
        ("ExportImage failed", "Marketplace", "fix image_id")),
    Row("Windows AMI", "image_id", "up", {"image_id": "@windows_image_id"},
        ("ExportImage failed", "NotExportable", "Windows", "fix image_id")),
    Row("AMI owned by another account", "image_id", "up", {"image_id": "@foreign_image_id"},
        ("ExportImage failed", "another account", "copy the AMI into this account", "fix image_id")),
    Row("AMI of another region (region 'eu-west-1')", "region", "up", {"region": "eu-west-1"},
        ("ExportImage failed", "InvalidAMIID.NotFound", "lives in the export's region")),
    Row("existing_task_id of no task", "existing_task_id", "up", {"existing_task_id": "export-ami-0123456789abcdef0"},
        ("existing_task_id", "is not known in us-east-1", "check the id and the region")),
    Row("existing_task_id of a cancelled task", "existing_task_id", "up", {"existing_task_id": "@cancelled_task_id"},
        ("existing_task_id", "cannot be adopted", "drop existing_task_id")),
]

for _index, _row in enumerate(PREVIEW_ROWS + UP_ROWS):
    object.__setattr__(_row, "key", f"{_row.where}-{_index + 1:02d}-{_row.argument}")


@pytest.fixture(scope="module")
def world(emulator) -> dict[str, Any]:
    """The seeded account, plus the fixtures only these rows need."""
    from export_image_provider.emulator.seed import seed

    emulator.reset()
    found = dict(seed(emulator.url))
    found["eu_bucket"] = new_bucket(emulator, "eu", region="eu-west-1")
    found["missing_bucket"] = f"rel-missing-{uuid.uuid4().hex[:10]}"
    found["kms_bucket"] = new_bucket(emulator, "kms")
    emulator.client("s3").put_bucket_encryption(
        Bucket=found["kms_bucket"],
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/aws/s3"}}]},
    )
    [cancelled_ami] = register_amis(emulator, 1, "cancelled")
    ec2 = emulator.client("ec2")
    found["cancelled_task_id"] = ec2.export_image(
        ImageId=cancelled_ami, DiskImageFormat="VMDK", S3ExportLocation={"S3Bucket": found["bucket"]},
        RoleName="vmimport")["ExportImageTaskId"]
    ec2.cancel_export_task(ExportTaskId=found["cancelled_task_id"])
    yield found
    emulator.reset()


def arguments(world: dict[str, Any], *rows: Row) -> dict[str, Any]:
    """A valid ImageExport's keyword arguments with each row's invalid value applied."""
    kwargs: dict[str, Any] = {"image_id": world["image_id"], "disk_image_format": "VMDK", "s3_bucket": world["bucket"],
                              "s3_prefix": "bad-input/", "timeout_minutes": 2}
    for row in rows:
        for name, value in row.value.items():
            kwargs[name] = world[value[1:]] if isinstance(value, str) and value.startswith("@") else value
    return kwargs


def preview_groups(rows: list[Row]) -> list[list[Row]]:
    """Rows packed into resources, at most one row per argument in each."""
    groups: list[list[Row]] = []
    for row in rows:
        for group in groups:
            if all(other.argument != row.argument for other in group):
                group.append(row)
                break
        else:
            groups.append([row])
    return groups


@dataclass
class PreviewRun:
    results: dict[str, Any]  # group resource name -> Result
    group_of: dict[str, str]  # row key -> group resource name
    calls_before: dict[str, int]
    calls_after: dict[str, int]
    tasks_before: int
    tasks_after: int


@pytest.fixture(scope="module")
def previews(world, emulator, make_project_module) -> PreviewRun:
    groups = preview_groups(PREVIEW_ROWS)
    projects, group_of = {}, {}
    for number, rows in enumerate(groups, 1):
        name = f"invalid-{number}"
        projects[name] = make_project_module("rel-bad-preview", [(name, arguments(world, *rows))],
                                             stack=f"group{number}", init=False)
        group_of.update({row.key: name for row in rows})
    tasks_before = len(task_records(emulator))
    calls_before = emulator.calls()

    def run(project):
        project.stack_init()
        return project.preview(check=False)

    with ThreadPoolExecutor(PREVIEW_PARALLEL) as pool:
        results = dict(zip(projects, pool.map(run, projects.values())))
    return PreviewRun(results, group_of, calls_before, emulator.calls(), tasks_before, len(task_records(emulator)))


@dataclass
class UpRun:
    preview: Any
    preview_calls: dict[str, int]
    up: Any
    errors: dict[str, str]
    resources: dict[str, Any]
    pending: list[Any]
    tasks_before: set[str]
    tasks_after: set[str]


def _row_name(row: Row) -> str:
    return row.key.replace("_", "-")


@pytest.fixture(scope="module")
def up_run(world, emulator, make_project_module) -> UpRun:
    project = make_project_module("rel-bad-up", [])
    set_program(project, [(_row_name(row), arguments(world, row)) for row in UP_ROWS])
    tasks_before = {t["ExportImageTaskId"] for t in task_records(emulator)}
    before = emulator.calls()
    preview = project.preview(check=False)
    after = emulator.calls()
    preview_calls = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    up = project.up("--continue-on-error", check=False)
    deployment = project.stack_export()["deployment"]
    resources = {r["urn"].rsplit("::", 1)[1]: r for r in deployment.get("resources") or []
                 if r["type"].endswith(":ImageExport")}
    return UpRun(preview, preview_calls, up, provider_errors(output_of(up)), resources,
                 deployment.get("pending_operations") or [],
                 tasks_before, {t["ExportImageTaskId"] for t in task_records(emulator)})


def _cli_problem(output: str, resource: str, argument: str) -> str | None:
    """The CLI's line for ``argument`` of ``resource``, the echoed value elided when long."""
    pattern = re.compile(rf"resource '{re.escape(resource)}': (property {re.escape(argument)} value \{{(.*?)\}} "
                         rf"has a problem: .*)$", re.MULTILINE)
    match = pattern.search(output)
    if match is None:
        return None
    line, value = match.group(1), match.group(2)
    return line.replace("{" + value + "}", "{…}") if len(value) > 60 else line


@report_row(kind="bad_input")
@pytest.mark.parametrize("row", PREVIEW_ROWS, ids=str)
def test_rejected_at_preview_with_no_aws_call(row, previews, reliability):
    group = previews.group_of[row.key]
    result = previews.results[group]
    output = output_of(result)
    line = _cli_problem(output, group, row.argument)
    reliability.message(line or "(no line for this argument)")
    assert result.code != 0, f"the preview should have failed:\n{result}"
    assert line is not None, f"no 'property {row.argument} ... has a problem' line:\n{output}"
    for fragment in row.expect:
        assert fragment in line, (fragment, line)
    assert previews.calls_after == previews.calls_before, "a preview of invalid input must make no AWS call"
    assert previews.tasks_after == previews.tasks_before


@report_row(kind="bad_input")
@pytest.mark.parametrize("row", UP_ROWS, ids=str)
def test_rejected_at_up_with_one_line_and_nothing_left(row, up_run, reliability):
    name = _row_name(row)
    line = up_run.errors.get(name, "")
    reliability.message(line or "(no error for this resource)")
    assert up_run.preview.code == 0, f"AWS-only problems cannot be known at preview:\n{up_run.preview}"
    assert up_run.preview_calls == {}, f"the preview made AWS calls: {up_run.preview_calls}"
    assert up_run.up.code != 0
    assert line, f"no error block for {name}:\n{output_of(up_run.up)}"
    # The provider answers with its message alone: one line, with everything on it, no traceback.
    block = diagnostics(output_of(up_run.up)).get(name, [])
    assert not any("Traceback" in text for text in block) and not line.startswith("Exception: "), block
    for fragment in row.expect:
        assert fragment in line, (fragment, line)
    assert name not in up_run.resources, "a failed create must leave no ImageExport in the state"
    assert up_run.pending == []
    assert up_run.tasks_after == up_run.tasks_before, "no export task may be started"
