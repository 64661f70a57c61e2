"""ImageExportProvider driven directly, through boto3 over HTTP to the emulator.

These pin what each provider operation does in AWS terms; the engine-level
behaviour (pickling by reference, unknowns in preview, update outputs) is pinned
again through the real Pulumi CLI in test_cli_lifecycle.py.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from conftest import REPO_ROOT
from pulumi_cli import FAST_WAITER
from export_image_provider import ImageExportProvider
from export_image_provider.ownership import RESOURCE_TAG, SPEC_TAG

# timeout_minutes of a create meant to time out while its export runs: 3 s is enough for a cold
# provider on a loaded 2-core machine to start the export (a shorter one can time out before it
# starts: "nothing was started"); the tests' exports last longer than that.
INTERRUPT_MINUTES = 0.05


@pytest.fixture(scope="module")
def world(emulator):
    """Seeded emulator, and the environment a provider process would have."""
    from export_image_provider.emulator.seed import seed

    saved = dict(os.environ)
    os.environ.update(
        AWS_ENDPOINT_URL=emulator.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        EXPORT_IMAGE_PROVIDER_WAITER=FAST_WAITER,
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield seed(emulator.url, "us-east-1")
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def fresh_tasks(emulator):
    emulator.reset()
    emulator.set_config(export_seconds=1.0)


@pytest.fixture
def provider():
    return ImageExportProvider()


def props(world, **changes):
    base = {
        "image_id": world["image_id"],
        "disk_image_format": "vmdk",
        "s3_bucket": world["bucket"],
        "s3_prefix": "exports/",
        "tags": {"team": "platform"},
        "resource_key": f"proj/test/{uuid.uuid4().hex[:8]}",
    }
    base.update(changes)
    return ImageExportProvider().check({}, base).inputs


def tasks(emulator):
    return emulator.client("ec2").describe_export_image_tasks()["ExportImageTasks"]


def object_exists(emulator, bucket, key):
    listed = emulator.client("s3").list_objects_v2(Bucket=bucket, Prefix=key)
    return any(o["Key"] == key for o in listed.get("Contents", []))


def test_create_waits_for_completion_and_returns_every_output(world, emulator, provider):
    created = provider.create(props(world))
    outs = created.outs
    assert created.id.startswith("export-ami-") and outs["export_image_task_id"] == created.id
    assert outs["status"] == "completed" and outs["progress"] == 100 and outs["status_message"] is None
    assert outs["s3_key"] == f"exports/{created.id}.vmdk"
    assert outs["s3_uri"] == f"s3://{world['bucket']}/exports/{created.id}.vmdk"
    assert outs["disk_image_format"] == "VMDK" and outs["region"] == "us-east-1"
    assert outs["tags"] == {"team": "platform"}
    assert object_exists(emulator, world["bucket"], outs["s3_key"])
    [task] = tasks(emulator)
    assert {"Key": "team", "Value": "platform"} in task["Tags"]


def test_create_without_waiting_returns_the_active_task_and_read_follows_it(world, emulator, provider):
    emulator.set_config(export_seconds=1.5)
    created = provider.create(props(world, wait_for_completion=False))
    assert created.outs["status"] == "active"
    assert not object_exists(emulator, world["bucket"], created.outs["s3_key"])
    deadline = time.monotonic() + 10
    while (read := provider.read(created.id, created.outs)).outs["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert read.id == created.id and read.outs["progress"] == 100


def test_read_of_completed_export_changes_nothing(world, provider):
    created = provider.create(props(world))
    read = provider.read(created.id, created.outs)
    assert read.id == created.id and read.outs == created.outs
    diff = provider.diff(created.id, read.outs, props(world, resource_key=created.outs["resource_key"]))
    assert not diff.replaces


def test_object_deleted_out_of_band_means_the_export_is_gone(world, emulator, provider):
    created = provider.create(props(world))
    emulator.client("s3").delete_object(Bucket=world["bucket"], Key=created.outs["s3_key"])
    read = provider.read(created.id, created.outs)
    assert read.id == "" and read.outs == {}


def test_tags_changed_out_of_band_show_in_read(world, emulator, provider):
    created = provider.create(props(world))
    emulator.client("ec2").create_tags(Resources=[created.id], Tags=[{"Key": "extra", "Value": "1"}])
    read = provider.read(created.id, created.outs)
    assert read.outs["tags"] == {"team": "platform", "extra": "1"}


def test_update_changes_tags_in_place_and_returns_all_outputs(world, emulator, provider):
    created = provider.create(props(world, tags={"team": "platform", "old": "x"}))
    news = {**props(world, tags={"team": "infra", "new": "y"}), "resource_key": created.outs["resource_key"]}
    diff = provider.diff(created.id, created.outs, news)
    assert diff.changes and not diff.replaces
    updated = provider.update(created.id, created.outs, news)
    assert updated.outs["tags"] == {"team": "infra", "new": "y"}
    for name in ("export_image_task_id", "status", "s3_key", "s3_uri", "progress", "region"):
        assert updated.outs[name] == created.outs[name], name
    [task] = tasks(emulator)
    tags = {t["Key"]: t["Value"] for t in task["Tags"]}
    assert tags["team"] == "infra" and tags["new"] == "y" and "old" not in tags
    assert RESOURCE_TAG in tags and SPEC_TAG in tags


def test_delete_of_completed_export_removes_the_object_and_tolerates_repeats(world, emulator, provider):
    created = provider.create(props(world))
    provider.delete(created.id, created.outs)
    assert not object_exists(emulator, world["bucket"], created.outs["s3_key"])
    [record] = tasks(emulator)  # AWS keeps a completed task's record: it must no longer name the resource
    assert RESOURCE_TAG not in {t["Key"] for t in record.get("Tags", [])}
    provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id == ""


def test_delete_of_active_export_cancels_it_and_leaves_no_object(world, emulator, provider):
    emulator.set_config(export_seconds=30)
    created = provider.create(props(world, wait_for_completion=False))
    provider.delete(created.id, created.outs)
    [task] = tasks(emulator)
    assert task["Status"] in ("deleting", "deleted")
    assert not object_exists(emulator, world["bucket"], created.outs["s3_key"])


def test_delete_too_late_to_cancel_waits_for_the_image_and_deletes_it(world, emulator, provider):
    emulator.set_config(export_seconds=100)
    # timeout_minutes bounds that wait: 1 minute is plenty for the second it takes here
    created = provider.create(props(world, wait_for_completion=False, timeout_minutes=1))
    emulator.advance(98)  # in the final transfer: CancelExportTask is refused
    finisher = threading.Timer(1.0, emulator.advance, args=(5,))
    finisher.start()
    try:
        provider.delete(created.id, created.outs)
    finally:
        finisher.join()
    [task] = tasks(emulator)
    assert task["Status"] == "completed"
    assert not object_exists(emulator, world["bucket"], created.outs["s3_key"])


def test_timeout_names_the_task_and_a_rerun_resumes_it(world, emulator, provider):
    emulator.set_config(export_seconds=8)
    inputs = props(world, timeout_minutes=INTERRUPT_MINUTES)
    with pytest.raises(Exception, match=r"export-ami-\w+ is still active .*left running"):
        provider.create(inputs)
    resumed = provider.create({**inputs, "timeout_minutes": 1, "tags": {"team": "infra"}})
    assert resumed.outs["status"] == "completed" and resumed.outs["tags"] == {"team": "infra"}
    [task] = tasks(emulator)
    assert {"Key": "team", "Value": "infra"} in task["Tags"]


def test_destroy_then_create_starts_a_fresh_export(world, emulator, provider):
    inputs = props(world)
    first = provider.create(inputs)
    provider.delete(first.id, first.outs)
    second = provider.create(inputs)
    assert second.id != first.id and len(tasks(emulator)) == 2


def test_failed_export_reports_the_task_message(world, emulator, provider):
    emulator.set_config(export_seconds=1, fail_at_progress=40)
    with pytest.raises(Exception, match="ended deleted: ClientError"):
        provider.create(props(world))
    [task] = tasks(emulator)
    assert not object_exists(emulator, world["bucket"], f"exports/{task['ExportImageTaskId']}.vmdk")


def test_killed_create_is_resumed_not_duplicated(world, emulator):
    """Start a create in another process, kill it mid-wait, create again: one task."""
    emulator.set_config(export_seconds=4)
    inputs = props(world)
    script = textwrap.dedent(
        f"""
        from export_image_provider import ImageExportProvider
        ImageExportProvider().create({inputs!r})
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, env=dict(os.environ),
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not tasks(emulator):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    resumed = ImageExportProvider().create(inputs)
    [task] = tasks(emulator)
    assert resumed.id == task["ExportImageTaskId"] and resumed.outs["status"] == "completed"


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"role_name": "no-such-role"}, "ExportImage failed: InvalidParameter: The service role no-such-role"),
        ({"s3_bucket": "no-such-bucket-here"}, "no-such-bucket-here"),
        ({"image_id": "ami-0123456789abcdef0"}, "InvalidAMIID.NotFound"),
        ({"image_id": "encrypted_image_id"}, "cannot be exported, and no copy of the AMI or snapshot removes encryption"),
        ({"image_id": "marketplace_image_id"}, "NotExportable"),
    ],
)
def test_aws_refusals_are_one_readable_line_and_start_nothing(world, emulator, provider, changes, words):
    changes = {k: world.get(v, v) for k, v in changes.items()}
    with pytest.raises(Exception) as raised:
        provider.create(props(world, **changes))
    message = str(raised.value)
    assert words in message and "\n" not in message
    assert tasks(emulator) == []


# The engine's wire sentinel, and what pulumi.dynamic hands a provider for it.
UNKNOWNS = [UNKNOWN, Unknown()]


@pytest.mark.parametrize("unknown", UNKNOWNS, ids=["sentinel", "Unknown"])
def test_check_reports_failures_and_lets_unknowns_through(world, provider, unknown):
    result = provider.check({}, {"image_id": "ami-1", "disk_image_format": "iso", "s3_bucket": unknown,
                                 "s3_prefix": unknown, "tags": {"team": unknown}})
    assert {f.property for f in result.failures} == {"image_id", "disk_image_format"}
    assert result.inputs["s3_bucket"] is unknown
    assert not provider.check({}, {**props(world), "tags": unknown}).failures


@pytest.mark.parametrize("name", ["image_id", "disk_image_format", "s3_bucket", "s3_prefix", "role_name",
                                  "description", "region"])
def test_diff_replaces_on_each_export_defining_input(world, provider, name):
    olds = {**props(world), "region": "us-east-1", "description": None}
    value = {"image_id": "ami-0123456789abcdef0", "disk_image_format": "RAW", "s3_bucket": "other-bucket",
             "s3_prefix": "x/", "role_name": "other", "description": "new", "region": "eu-west-1"}[name]
    diff = provider.diff("export-ami-0123456789abcdef0", olds, {**olds, name: value})
    assert diff.changes and diff.replaces == [name]
    for unknown in UNKNOWNS:
        diff = provider.diff("export-ami-0123456789abcdef0", olds, {**olds, name: unknown})
        assert diff.changes and diff.replaces == [name]


def test_diff_ignores_case_only_format_changes_and_unchanged_inputs(world, provider):
    olds = {**props(world), "region": "us-east-1"}
    assert not provider.diff("x", olds, {**olds, "disk_image_format": "vmdk", "region": None}).changes
    for unknown in UNKNOWNS:
        tags = provider.diff("x", olds, {**olds, "tags": unknown})
        assert tags.changes and not tags.replaces


def test_diff_sees_case_changes_of_every_input_but_the_format(world, provider):
    """Only the format is case-blind (AWS takes VMDK and vmdk); a prefix's case names another S3 key."""
    olds = {**props(world), "region": "us-east-1", "description": "nightly"}
    assert provider.diff("x", olds, {**olds, "s3_prefix": "EXPORTS/"}).replaces == ["s3_prefix"]
    assert provider.diff("x", olds, {**olds, "description": "Nightly"}).replaces == ["description"]


def test_diff_takes_no_prefix_and_an_empty_prefix_for_the_same(world, provider):
    olds = {**props(world), "region": "us-east-1", "s3_prefix": ""}
    assert not provider.diff("x", olds, {**olds, "s3_prefix": None}).changes


def test_stack_config_is_read_key_by_key_when_the_sdk_hides_its_bag(world, provider):
    """pulumi.dynamic's Config has no public iterator; an SDK without the private bag is read through get()."""

    class KeysOnly:
        def __init__(self, values):
            self._values = values

        def get(self, key, default=None):
            return self._values.get(key, default)

    provider.configure(ConfigureRequest(KeysOnly({"aws:region": "eu-west-1"})))
    olds = {**props(world), "region": "us-east-1"}
    assert provider.diff("x", olds, {**olds, "region": None}).replaces == ["region"]


def test_outputs_are_not_all_made_secret():
    """pulumi.dynamic would mark every output secret with this set; the README promises readable outputs."""
    assert ImageExportProvider.serialize_as_secret_always is False


def test_an_update_keeps_the_key_the_state_recorded(world, emulator, provider):
    """The key in state is AWS's (its naming is not settled, see the facts file), not recomputed from the inputs."""
    created = provider.create(props(world))
    olds = {**created.outs, "s3_key": "exports/as-aws-named-it.vmdk"}
    updated = provider.update(created.id, olds, {**olds, "tags": {"team": "infra"}})
    assert updated.outs["s3_key"] == "exports/as-aws-named-it.vmdk"


def test_the_recorded_image_is_read_back_from_state_as_written():
    from export_image_provider.provider import _recorded_image

    assert _recorded_image({"s3_etag": None}) is None  # not seen completed
    image = _recorded_image({"s3_etag": '"e"', "s3_object_size": 0, "s3_version_id": None, "s3_last_modified": "t"})
    assert (image.size, image.etag, image.version_id, image.last_modified) == (0, '"e"', None, "t")
    assert _recorded_image({"s3_etag": '"e"'}).size == 0  # state written before the size was an output


def test_region_defaults_come_from_stack_config(world, provider):
    provider.configure(ConfigureRequest(Config({"aws:region": "eu-west-1"}, "proj")))
    olds = {**props(world), "region": "us-east-1"}
    assert provider.diff("x", olds, {**olds, "region": None}).replaces == ["region"]


def test_provider_pickles_without_state_and_works_after_a_round_trip(world, emulator):
    import dill

    provider = ImageExportProvider()
    provider.configure(ConfigureRequest(Config({"aws:region": "us-east-1"}, "proj")))
    raw = base64.b64decode(serialize_provider(provider))
    assert b"testing" not in raw and b"boto" not in raw and len(raw) < 500
    restored = dill.loads(raw)
    assert type(restored) is ImageExportProvider and vars(restored) == {}
    assert restored.create(props(world)).outs["status"] == "completed"


def _start_outside_pulumi(emulator, world, **changes):
    request = {"ImageId": world["image_id"], "DiskImageFormat": "VMDK",
               "S3ExportLocation": {"S3Bucket": world["bucket"], "S3Prefix": "exports/"}}
    request.update(changes)
    return emulator.client("ec2").export_image(**request)["ExportImageTaskId"]


def test_existing_task_is_adopted_without_starting_another(world, emulator, provider):
    emulator.set_config(export_seconds=1.5)
    task_id = _start_outside_pulumi(emulator, world)
    created = provider.create(props(world, existing_task_id=task_id, tags={"owner": "pulumi"}))
    assert created.id == task_id and created.outs["status"] == "completed"
    [task] = tasks(emulator)
    tags = {t["Key"]: t["Value"] for t in task["Tags"]}
    assert tags["owner"] == "pulumi" and RESOURCE_TAG in tags
    assert provider.diff(task_id, created.outs, {**created.outs, "existing_task_id": None}).replaces == []


@pytest.mark.parametrize(
    "changes, words",
    [
        # AWS's records carry no ImageId (facts file), so a wrong image_id cannot be told; the inputs
        # the record does carry, and the format DescribeExportTasks reports, are compared
        ({"description": "not theirs"}, "has description=None but the description argument is 'not theirs'"),
        ({"s3_prefix": "other/"}, "has s3_prefix='exports/' but the s3_prefix argument is 'other/'"),
        ({"disk_image_format": "RAW"}, "has disk_image_format='VMDK' but the disk_image_format argument is 'RAW'"),
    ],
)
def test_existing_task_that_does_not_match_the_inputs_is_refused(world, emulator, provider, changes, words):
    emulator.set_config(export_seconds=0)
    task_id = _start_outside_pulumi(emulator, world)
    with pytest.raises(Exception, match=words.replace("(", r"\(")):
        provider.create(props(world, existing_task_id=task_id, **changes))
    assert len(tasks(emulator)) == 1


def test_unknown_existing_task_is_refused(world, provider):
    with pytest.raises(Exception, match="existing_task_id: export task export-ami-0123456789abcdef0 is not known"):
        provider.create(props(world, existing_task_id="export-ami-0123456789abcdef0"))
