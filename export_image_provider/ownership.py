"""Which export tasks belong to which resource: the provider's own tags, and the claim.

Every task carries the resource's identity (``RESOURCE_TAG``: project/stack/name;
``STACK_TAG``: the stack's random id, see stack_identity.py) and ``SPEC_TAG``, a
digest of the inputs that decide its image. A create that hands a task to the
engine claims it (``CLAIM_TAG``): from then on a resource in some state reports
it, and no other create may resume, adopt, cancel or delete it. A task without
the claim was started by a create that never returned (killed, cancelled, timed
out): the next create of the same resource resumes it when its inputs match,
and it, or the resource's destroy, clears it otherwise. The invariants this
keeps are checked by tests/test_lifecycle_model.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from .aws import AwsGateway, ExportError, ExportTask
from .spec import RESERVED_TAG_PREFIX, ExportSpec

RESOURCE_TAG = RESERVED_TAG_PREFIX + "resource"
SPEC_TAG = RESERVED_TAG_PREFIX + "spec"
STACK_TAG = RESERVED_TAG_PREFIX + "stack"
CLAIM_TAG = RESERVED_TAG_PREFIX + "claimed"

Log = Callable[[str], None]


class NotYours(Exception):
    """The task is claimed by another resource; ``str()`` is the one line to show."""


def _name(spec: ExportSpec) -> str:
    """The resource's name, which starts every line the user sees about it."""
    return spec.resource_key.rsplit("/", 1)[-1] if spec.resource_key else spec.image_id


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The task's tags without the provider's own bookkeeping."""
    return {k: v for k, v in tags.items() if not k.startswith(RESERVED_TAG_PREFIX)}


def identity_tags(spec: ExportSpec) -> dict[str, str]:
    """Tags that let a later create recognise a task it started (see :func:`create_export`)."""
    if not spec.resource_key:
        return {}
    key = spec.resource_key
    if len(key) > 256:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    tags = {RESOURCE_TAG: key, SPEC_TAG: spec.fingerprint()}
    if spec.stack_identity:
        tags[STACK_TAG] = spec.stack_identity
    return tags


def own_tasks(spec: ExportSpec, gateway: AwsGateway) -> list[ExportTask]:
    """Active and completed tasks started for this resource of this stack (its identity tags)."""
    tags = identity_tags(spec)
    if not tags:
        return []
    return [
        task
        for task in gateway.tasks_tagged(RESOURCE_TAG, tags[RESOURCE_TAG])
        if task.tags.get(STACK_TAG) == tags.get(STACK_TAG)
    ]


def unclaimed_tasks(spec: ExportSpec, gateway: AwsGateway) -> list[ExportTask]:
    """This resource's tasks that no create handed to the engine.

    A task is claimed (:data:`CLAIM_TAG`) the moment a create hands it to the
    engine; from then on a resource in some state reports it. A task without
    the claim was started by a create that never returned (killed, cancelled,
    timed out), so no resource the engine knows of reports it.
    """
    return [task for task in own_tasks(spec, gateway) if CLAIM_TAG not in task.tags]


def cancel_replaced(spec: ExportSpec, tasks: list[ExportTask], gateway: AwsGateway, log: Log) -> None:
    """Cancel the running export this create replaces when the engine did not ask the provider first.

    ``pulumi up --replace`` never calls Diff, so the engine replaces
    create-before-delete even while the old export runs; the new export would
    then wait behind AWS's one-export-per-AMI rule for an export the engine
    deletes right after. A claimed, active task of this resource with the same
    inputs is exactly that predecessor: it holds no image yet, and is cancelled.
    ``tasks`` are the resource's own (:func:`own_tasks`).
    """
    fingerprint = spec.fingerprint()
    for task in tasks:
        if CLAIM_TAG in task.tags and task.status == "active" and task.tags.get(SPEC_TAG) == fingerprint:
            outcome = gateway.cancel(task.task_id)
            log(f"{_name(spec)}: cancelled export task {task.task_id}, the running export this replacement "
                f"replaces ({outcome})")


def find_resumable(spec: ExportSpec, tasks: list[ExportTask], gateway: AwsGateway, log: Log) -> ExportTask | None:
    """The unclaimed task an interrupted create of the same inputs left, if any; the others are cleared.

    Unclaimed tasks of other inputs, or beyond the one resumed, are owned by
    nobody (an interrupted create whose inputs have since changed): an active
    one is cancelled, a completed one's image deleted, and each is said.
    ``tasks`` are the resource's own (:func:`own_tasks`), listed once per create.
    """
    fingerprint = spec.fingerprint()
    keep: ExportTask | None = None
    unclaimed = [task for task in tasks if CLAIM_TAG not in task.tags]
    for task in sorted(unclaimed, key=lambda t: t.status != "completed"):
        matches = task.tags.get(SPEC_TAG) == fingerprint and (
            task.status == "active" or gateway.object_exists(spec.s3_bucket, spec.s3_key(task.task_id))
        )
        if matches and keep is None:
            keep = task
        else:
            clear_unowned(task, gateway, lambda line: log(f"{_name(spec)}: {line}"))
    return keep


def clear_unowned(task: ExportTask, gateway: AwsGateway, log: Log) -> None:
    """Cancel (or delete the image of) a task nothing owns, and take it off this resource."""
    if task.status == "active":
        outcome = gateway.cancel(task.task_id)
        log(f"cancelled export task {task.task_id}, which an interrupted create left and nothing owns ({outcome})")
    elif task.s3_bucket:
        for extension in ("vmdk", "raw", "vhd"):
            key = f"{task.s3_prefix or ''}{task.task_id}.{extension}"
            if gateway.object_exists(task.s3_bucket, key):
                gateway.delete_object(task.s3_bucket, key)
                log(f"deleted s3://{task.s3_bucket}/{key}, the image of export task {task.task_id}, "
                    "which an interrupted create left and nothing owns")
    _untag(task.task_id, gateway)


def claim(task_id: str, gateway: AwsGateway) -> None:
    """Mark the task as reported by a resource the engine records: no create may resume or clear it now."""
    try:
        gateway.set_tags(task_id, {CLAIM_TAG: "true"})
    except ExportError as error:
        if not error.code.startswith("InvalidExportTaskID"):
            raise


def _untag(task_id: str, gateway: AwsGateway) -> None:
    """Take the resource's identity off a task, so no later create of it resumes the task."""
    try:
        gateway.remove_tags(task_id, [RESOURCE_TAG])
    except ExportError as error:
        if not error.code.startswith("InvalidExportTaskID"):
            raise


def refuse_if_owned(task: ExportTask) -> None:
    """A claimed task is reported by a live resource: adopting it would give two resources one image."""
    if CLAIM_TAG in task.tags and RESOURCE_TAG in task.tags:
        raise NotYours(
            f"existing_task_id: export task {task.task_id} is already managed by the ImageExport "
            f"{task.tags[RESOURCE_TAG]!r}, and either resource's destroy would delete the other's image: "
            "drop existing_task_id, or first remove that resource from its stack (pulumi state delete)"
        )
