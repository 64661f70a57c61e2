"""Orders of operations the engine produces every day, each pinned against the emulator.

Each test is one sequence the engine sends (a forced replacement, a replacement
while the old export runs, a tag change after AWS dropped the record, ...) and
checks the invariants the README promises: no object a live resource reports is
ever deleted, one task per resource, no task left running that nothing owns.
``test_lifecycle_model.py`` lets Hypothesis look for the sequences not written here.
"""

from __future__ import annotations

import pytest
from conftest import wait_until

from export_image_provider import ImageExportProvider
from export_image_provider.aws import ExportTask
from export_image_provider.ownership import CLAIM_TAG, RESOURCE_TAG, STACK_TAG, NotYours, refuse_if_owned
from test_provider import FAST_WAITER, INTERRUPT_MINUTES, object_exists, props, tasks  # noqa: F401 - fixtures below
from test_provider import fresh_tasks, provider, world  # noqa: F401 - pytest fixtures


def engine_replace(provider, id_, olds, news, forced=False):
    """What the engine does for a replacement: create-before-delete unless diff asks otherwise.

    A forced replacement (``pulumi up --replace``) never calls Diff: create-before-delete.
    """
    if forced:
        created = provider.create(news)
        provider.delete(id_, olds)
        return created
    diff = provider.diff(id_, olds, news)
    assert diff.replaces, "expected a replacement"
    if diff.delete_before_replace:
        provider.delete(id_, olds)
        return provider.create(news)
    created = provider.create(news)
    provider.delete(id_, olds)
    return created


def same_resource(created, **changes):
    """The inputs the engine would send for the same resource with ``changes``."""
    inputs = {k: v for k, v in created.outs.items() if k in PROGRAM_INPUTS}
    inputs.update(changes)
    return ImageExportProvider().check({}, inputs).inputs


PROGRAM_INPUTS = ("image_id", "disk_image_format", "s3_bucket", "s3_prefix", "role_name", "description",
                  "tags", "region", "wait_for_completion", "timeout_minutes", "existing_task_id",
                  "resource_key", "stack_identity")


def task_tags(emulator, task_id):
    [record] = [t for t in tasks(emulator) if t["ExportImageTaskId"] == task_id]
    return {t["Key"]: t["Value"] for t in record["Tags"]}


@pytest.mark.parametrize("length, hashed", [(256, False), (257, True)])
def test_a_resource_key_is_tagged_as_is_while_it_fits_a_tag_value(length, hashed):
    """AWS tag values take 256 characters: a key that fits stays readable; a longer one is its digest."""
    import hashlib

    from export_image_provider.ownership import identity_tags
    from export_image_provider.spec import ExportSpec

    key = "proj/stack/" + "n" * (length - len("proj/stack/"))
    tag = identity_tags(ExportSpec("ami-0123456789abcdef0", "VMDK", "bucket", resource_key=key))[RESOURCE_TAG]
    assert tag == ("sha256:" + hashlib.sha256(key.encode()).hexdigest() if hashed else key)


def test_claiming_or_untagging_a_task_aws_dropped_is_fine_and_other_errors_are_told(world, emulator):
    """A record AWS no longer keeps has nothing left to claim or untag; a refusal must not pass unseen."""
    from export_image_provider.aws import AwsGateway, ExportError
    from export_image_provider.ownership import _untag, claim

    gateway = AwsGateway("us-east-1")
    claim("export-ami-0123456789abcdef0", gateway)
    _untag("export-ami-0123456789abcdef0", gateway)
    task_id = emulator.client("ec2").export_image(
        ImageId=world["image_id"], DiskImageFormat="VMDK",
        S3ExportLocation={"S3Bucket": world["bucket"], "S3Prefix": "exports/"})["ExportImageTaskId"]
    emulator.set_config(deny_actions="ec2:CreateTags,ec2:DeleteTags")
    with pytest.raises(ExportError, match="UnauthorizedOperation"):
        claim(task_id, gateway)
    with pytest.raises(ExportError, match="UnauthorizedOperation"):
        _untag(task_id, gateway)


def test_forced_replacement_with_unchanged_inputs_keeps_the_new_image(world, emulator, provider, capsys):
    """`pulumi up --replace`: the new create must not take the old resource's task (defect 1)."""
    old = provider.create(props(world))
    new = engine_replace(provider, old.id, old.outs, same_resource(old), forced=True)
    assert "cancelled" not in capsys.readouterr().err  # a completed predecessor is not a running export
    assert new.id != old.id, "the replacement resumed the task the old resource owns"
    assert object_exists(emulator, world["bucket"], new.outs["s3_key"])
    assert provider.read(new.id, new.outs).id == new.id
    assert not object_exists(emulator, world["bucket"], old.outs["s3_key"])


def test_interrupted_create_is_still_resumed_after_claims(world, emulator, provider):
    """A create that timed out never handed its task to the engine: the rerun resumes it."""
    emulator.set_config(export_seconds=8)
    inputs = props(world, timeout_minutes=INTERRUPT_MINUTES)
    with pytest.raises(Exception, match="left running"):
        provider.create(inputs)
    [started] = tasks(emulator)
    assert CLAIM_TAG not in {t["Key"] for t in started["Tags"]}
    resumed = provider.create({**inputs, "timeout_minutes": 1})
    assert resumed.id == started["ExportImageTaskId"] and len(tasks(emulator)) == 1
    assert task_tags(emulator, resumed.id)[CLAIM_TAG]


def test_replacement_of_a_running_export_cancels_it_first(world, emulator, provider):
    """An active old task on the same AMI: delete-before-replace, so the new one never queues (defect 2)."""
    emulator.set_config(export_seconds=30)
    old = provider.create(props(world, wait_for_completion=False))
    news = same_resource(old, disk_image_format="RAW", wait_for_completion=True)
    diff = provider.diff(old.id, old.outs, news)
    assert diff.replaces == ["disk_image_format"] and diff.delete_before_replace
    emulator.set_config(export_seconds=1)
    new = engine_replace(provider, old.id, old.outs, news)
    assert new.outs["status"] == "completed"
    statuses = {t["ExportImageTaskId"]: t["Status"] for t in tasks(emulator)}
    assert statuses[old.id] in ("deleting", "deleted") and statuses[new.id] == "completed"


def test_forced_replacement_of_a_running_export_cancels_it_instead_of_queueing(world, emulator, provider, capsys):
    """up --replace never asks Diff; the create cancels the running predecessor it replaces (defect 2)."""
    emulator.set_config(export_seconds=600)
    old = provider.create(props(world, wait_for_completion=False))
    emulator.set_config(export_seconds=1)
    new = engine_replace(provider, old.id, old.outs, same_resource(old, wait_for_completion=True), forced=True)
    assert new.outs["status"] == "completed"
    err = capsys.readouterr().err
    assert "waiting for a free export slot" not in err
    name = old.outs["resource_key"].rsplit("/", 1)[-1]
    assert f"{name}: cancelled export task {old.id}, the running export this replacement replaces" in err
    statuses = {t["ExportImageTaskId"]: t["Status"] for t in tasks(emulator)}
    assert statuses[old.id] in ("deleting", "deleted") and statuses[new.id] == "completed"


def test_replacement_of_a_completed_export_creates_before_deleting(world, emulator, provider, capsys):
    old = provider.create(props(world))
    diff = provider.diff(old.id, old.outs, same_resource(old, disk_image_format="RAW"))
    assert diff.replaces == ["disk_image_format"] and not diff.delete_before_replace
    created = engine_replace(provider, old.id, old.outs, same_resource(old, disk_image_format="RAW"))
    assert object_exists(emulator, world["bucket"], created.outs["s3_key"])
    assert "cancelled" not in capsys.readouterr().err  # a completed predecessor is not a running export


def test_tag_change_after_the_record_expired_succeeds(world, emulator, provider, capsys):
    """Refresh keeps an export by its object once AWS drops the record; tags must still update (defect 3)."""
    emulator.set_config(export_seconds=0, expire_after_seconds=5)
    created = provider.create(props(world))
    emulator.advance(10)
    assert tasks(emulator) == []
    read = provider.read(created.id, created.outs)
    assert read.id == created.id
    updated = provider.update(created.id, read.outs, same_resource(created, tags={"team": "infra"}))
    assert updated.outs["tags"] == {"team": "infra"} and updated.outs["status"] == "completed"
    assert "could not be applied" in capsys.readouterr().err


def interrupted_create(emulator, provider, inputs, export_seconds):
    """A create that times out while its export runs (``export_seconds`` long): the task it left."""
    emulator.set_config(export_seconds=export_seconds)
    with pytest.raises(Exception, match="left running"):
        provider.create(inputs)
    [stale] = tasks(emulator)
    return stale


def test_changed_inputs_after_an_interrupted_create_cancel_its_task(world, emulator, provider, capsys):
    """The interrupted task of other inputs is owned by nobody: the next create cancels it (defect 6)."""
    inputs = props(world, timeout_minutes=INTERRUPT_MINUTES)
    stale = interrupted_create(emulator, provider, inputs, export_seconds=30)
    emulator.set_config(export_seconds=1)
    created = provider.create({**inputs, "disk_image_format": "RAW", "timeout_minutes": 1})
    statuses = {t["ExportImageTaskId"]: t["Status"] for t in tasks(emulator)}
    assert statuses[stale["ExportImageTaskId"]] in ("deleting", "deleted")
    assert statuses[created.id] == "completed"
    name = inputs["resource_key"].rsplit("/", 1)[-1]  # every line about a resource starts with its name
    assert f"{name}: cancelled export task {stale['ExportImageTaskId']}" in capsys.readouterr().err


def test_changed_inputs_after_an_interrupted_create_that_finished_delete_its_image(world, emulator, provider, capsys):
    """The interrupted task completed before the next create: its image is owned by nobody and deleted (defect 6)."""
    inputs = props(world, timeout_minutes=INTERRUPT_MINUTES)
    stale = interrupted_create(emulator, provider, inputs, export_seconds=5)
    stale_key = f"exports/{stale['ExportImageTaskId']}.vmdk"
    wait_until(lambda: object_exists(emulator, world["bucket"], stale_key), 60, "the interrupted export to finish")
    created = provider.create({**inputs, "disk_image_format": "RAW", "timeout_minutes": 1})
    assert not object_exists(emulator, world["bucket"], stale_key)
    assert object_exists(emulator, world["bucket"], created.outs["s3_key"])
    assert f"deleted s3://{world['bucket']}/{stale_key}" in capsys.readouterr().err


def test_destroy_takes_the_tasks_interrupted_creates_of_the_resource_left(world, emulator, provider):
    """A replacement's create timed out, then the resource left the program: destroy clears both (defect 6)."""
    old = provider.create(props(world))
    emulator.set_config(export_seconds=30)
    with pytest.raises(Exception, match="left running"):
        provider.create(same_resource(old, disk_image_format="RAW", timeout_minutes=INTERRUPT_MINUTES))
    [leftover] = [t for t in tasks(emulator) if t["ExportImageTaskId"] != old.id]
    provider.delete(old.id, old.outs)
    statuses = {t["ExportImageTaskId"]: t["Status"] for t in tasks(emulator)}
    assert statuses[leftover["ExportImageTaskId"]] in ("deleting", "deleted")
    assert not object_exists(emulator, world["bucket"], old.outs["s3_key"])


def test_adopting_a_task_another_resource_manages_is_refused(world, emulator, provider):
    """Either resource's destroy would delete the other's image (defect 7)."""
    owner = provider.create(props(world))
    with pytest.raises(Exception, match=r"existing_task_id: .*already managed"):
        provider.create(props(world, existing_task_id=owner.id))
    assert provider.read(owner.id, owner.outs).id == owner.id


@pytest.mark.parametrize("tags, refused", [
    ({RESOURCE_TAG: "proj/dev/other"}, False),  # an interrupted create's task: nobody reports it
    ({CLAIM_TAG: "true"}, False),  # claimed, then taken off its resource (cleared)
    ({RESOURCE_TAG: "proj/dev/other", CLAIM_TAG: "true"}, True),
])
def test_only_a_task_a_resource_claimed_and_still_carries_is_refused_for_adoption(tags, refused):
    task = ExportTask("export-ami-0123456789abcdef0", "active", tags=tags)
    if refused:
        with pytest.raises(NotYours, match="already managed by the ImageExport 'proj/dev/other'"):
            refuse_if_owned(task)
    else:
        refuse_if_owned(task)


def test_changing_existing_task_id_replaces(world, provider):
    olds = {**props(world), "region": "us-east-1", "existing_task_id": None,
            "export_image_task_id": "export-ami-0123456789abcdef0"}
    same = {**olds, "existing_task_id": "export-ami-0123456789abcdef0"}
    assert not provider.diff("export-ami-0123456789abcdef0", olds, same).replaces
    other = {**olds, "existing_task_id": "export-ami-0123456789abcdef1"}
    assert provider.diff("export-ami-0123456789abcdef0", olds, other).replaces == ["existing_task_id"]
    # Old state without that output (olds are whatever the state holds): the resource id decides.
    bare = {k: v for k, v in olds.items() if k != "export_image_task_id"}
    assert not provider.diff("export-ami-0123456789abcdef0", bare, {**bare, **same}).replaces


def test_wait_for_completion_turned_on_waits_in_the_update(world, emulator, provider):
    """false -> true on a running task: the update waits for the image (defect 8)."""
    emulator.set_config(export_seconds=2)
    created = provider.create(props(world, wait_for_completion=False))
    assert created.outs["status"] == "active"
    updated = provider.update(created.id, created.outs, same_resource(created, wait_for_completion=True))
    assert updated.outs["status"] == "completed" and updated.outs["progress"] == 100
    assert object_exists(emulator, world["bucket"], updated.outs["s3_key"])


def test_wait_for_completion_turned_on_after_the_export_failed_says_why(world, emulator, provider):
    emulator.set_config(export_seconds=2, fail_at_progress=30)
    created = provider.create(props(world, wait_for_completion=False))
    emulator.advance(5)
    [failed] = tasks(emulator)
    assert failed["Status"] == "deleted" and failed["StatusMessage"]
    with pytest.raises(Exception) as raised:
        provider.update(created.id, created.outs, same_resource(created, wait_for_completion=True))
    assert f"ended deleted ({failed['StatusMessage']}): run `pulumi refresh`, then `pulumi up`" in str(raised.value)


def test_two_stacks_with_the_same_names_never_share_a_task(world, emulator, provider):
    """Two backends, one account: the stack identity keeps their tasks apart (defect 5).

    Stack A's create is interrupted (its task is nobody's yet); stack B, with the
    same project, stack and resource names, must neither resume nor cancel it.
    """
    emulator.set_config(export_seconds=5)
    mine = props(world, stack_identity="stack-a", timeout_minutes=INTERRUPT_MINUTES)
    with pytest.raises(Exception, match="left running"):
        provider.create(mine)
    [interrupted] = tasks(emulator)
    theirs = {**mine, "stack_identity": "stack-b", "disk_image_format": "RAW", "timeout_minutes": 1}
    second = provider.create(theirs)
    assert second.id != interrupted["ExportImageTaskId"]
    statuses = {t["ExportImageTaskId"]: t["Status"] for t in tasks(emulator)}
    assert statuses[interrupted["ExportImageTaskId"]] in ("active", "completed")
    provider.delete(second.id, second.outs)
    resumed = provider.create({**mine, "timeout_minutes": 1})
    assert resumed.id == interrupted["ExportImageTaskId"]
    assert task_tags(emulator, resumed.id)[STACK_TAG] == "stack-a"
    assert task_tags(emulator, resumed.id)[RESOURCE_TAG] == mine["resource_key"]
