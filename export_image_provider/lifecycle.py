"""What create, read, update and delete mean for an export task, in AWS terms.

This is the only place that decides; the provider translates Pulumi's property
dicts to an :class:`ExportSpec` and back, the gateway makes the calls, the waiter
polls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .aws import AwsGateway, ExportError, ExportTask
from .process import CANCELLED, Cancelled
from .spec import RESERVED_TAG_PREFIX, ExportSpec
from .slots import queue_for
from .waiter import TaskVanished, WaitFailed, WaitPolicy, WaitTimedOut, load_policy, wait_for_export

RESOURCE_TAG = RESERVED_TAG_PREFIX + "resource"
SPEC_TAG = RESERVED_TAG_PREFIX + "spec"

Log = Callable[[str], None]


class ExportFailed(Exception):
    """The export could not be brought to the state the program asks for."""


@dataclass(frozen=True)
class ExportState:
    """What the provider records about a task once an operation is done."""

    task_id: str
    status: str
    status_message: str | None
    progress: int | None
    s3_key: str
    tags: Mapping[str, str] = field(default_factory=dict)


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
    return {RESOURCE_TAG: key, SPEC_TAG: spec.fingerprint()}


def _state(spec: ExportSpec, task: ExportTask) -> ExportState:
    completed = task.status == "completed"
    return ExportState(
        task_id=task.task_id,
        status=task.status,
        status_message=None if completed else task.status_message,
        progress=100 if completed else task.progress,
        s3_key=spec.s3_key(task.task_id),
        tags=user_tags(task.tags),
    )


def find_resumable(spec: ExportSpec, gateway: AwsGateway) -> ExportTask | None:
    """An active or completed task this resource started with the same inputs, if any."""
    tags = identity_tags(spec)
    if not tags:
        return None
    for task in gateway.tasks_tagged(RESOURCE_TAG, tags[RESOURCE_TAG]):
        if task.tags.get(SPEC_TAG) != tags[SPEC_TAG]:
            continue
        if task.status == "completed" and not gateway.object_exists(spec.s3_bucket, spec.s3_key(task.task_id)):
            continue
        return task
    return None


def create_export(spec: ExportSpec, gateway: AwsGateway, log: Log, policy: WaitPolicy | None = None) -> ExportState:
    """Start the export (or resume the one an interrupted create started) and wait for it.

    No duplicate exports: every task is started with two tags, the resource's
    identity (project/stack/name) and a fingerprint of the inputs that decide what
    it produces. A create first looks for an active or completed task carrying
    both (a completed one only while its object exists) and resumes it, so a
    ``pulumi up`` killed after ExportImage was sent, or a wait that timed out,
    picks up the same task when run again. Delete removes the identity tag, so a
    destroy followed by an up starts a fresh export. The ClientToken, new for
    each create, makes botocore's own retries of ExportImage safe.
    """
    name = spec.resource_key.rsplit("/", 1)[-1] if spec.resource_key else spec.image_id
    policy = policy or load_policy()
    deadline = time.monotonic() + spec.timeout_minutes * 60
    if spec.existing_task_id:
        task = _take_over(adopt(spec, gateway), spec, gateway)
        log(f"{name}: adopted export task {task.task_id} ({task.status})")
    elif (task := find_resumable(spec, gateway)) is not None:
        task = _take_over(task, spec, gateway)
        log(f"{name}: resuming export task {task.task_id} ({task.status}); if Pulumi warned of a pending create "
            f"for {name}, run `pulumi refresh --clear-pending-creates --yes` after this up")
    else:
        task = _start(spec, gateway, name, log, policy, deadline)
    if not spec.wait_for_completion:
        return _state(spec, task)

    def report(latest: ExportTask) -> None:
        if latest.status == "completed":
            return  # said once below, with the image's location
        progress = f"{latest.progress}%" if latest.progress is not None else ""
        message = latest.status_message or ""
        log(f"{name}: {latest.task_id} {latest.status} {progress} {message}".rstrip())

    try:
        task = wait_for_export(
            lambda: gateway.describe(task.task_id), task, max(0.0, deadline - time.monotonic()), policy, report,
            cancelled=CANCELLED,
        )
    except Cancelled:
        raise ExportFailed(f"{name}: cancelled while waiting for export task {task.task_id}; the task keeps "
                           "running in AWS and the next `pulumi up` resumes it") from None
    except WaitFailed as failure:
        raise ExportFailed(f"{name}: {failure}") from None
    except WaitTimedOut as timeout:
        raise ExportFailed(f"{name}: {timeout}") from None
    except TaskVanished as vanished:
        if not gateway.object_exists(spec.s3_bucket, spec.s3_key(task.task_id)):
            raise ExportFailed(f"{name}: {vanished}, and no image was written") from None
        task = ExportTask(task_id=task.task_id, status="completed", tags=task.tags)
    finally:
        queue_for(gateway.region).release()
    log(f"{name}: {task.task_id} completed: s3://{spec.s3_bucket}/{spec.s3_key(task.task_id)}")
    return _state(spec, task)


def adopt(spec: ExportSpec, gateway: AwsGateway) -> ExportTask:
    """Bring a task started outside Pulumi under management, if it is what the inputs describe.

    AWS's task record has no format or role, so those are checked only through
    the object of a completed task (its key ends in the format's extension).
    """
    task_id = spec.existing_task_id or ""
    task = gateway.describe(task_id)
    if task is None:
        raise ExportFailed(f"existing_task_id: export task {task_id} is not known in {gateway.region}: "
                           "check the id and the region")
    if task.status not in ("active", "completed"):
        raise ExportFailed(f"existing_task_id: export task {task_id} is {task.status} "
                           f"({task.status_message or 'no message'}) and cannot be adopted: drop existing_task_id")
    theirs = {"image_id": task.image_id, "s3_bucket": task.s3_bucket, "s3_prefix": task.s3_prefix or "",
              "description": task.description}
    for name, value in theirs.items():
        if value != getattr(spec, name):
            raise ExportFailed(f"existing_task_id: export task {task_id} has {name}={value!r} but the {name} "
                               f"argument is {getattr(spec, name)!r}: set {name} to the task's, or drop existing_task_id")
    key = spec.s3_key(task_id)
    if task.status == "completed" and not gateway.object_exists(spec.s3_bucket, key):
        raise ExportFailed(f"existing_task_id: export task {task_id} completed, but s3://{spec.s3_bucket}/{key} "
                           "does not exist: check disk_image_format, or the image was deleted")
    return task


def _take_over(task: ExportTask, spec: ExportSpec, gateway: AwsGateway) -> ExportTask:
    """Give an adopted or resumed task the program's tags (they may have changed) and the identity tags."""
    update_tags(task.task_id, user_tags(task.tags), spec.tags, gateway)
    gateway.set_tags(task.task_id, identity_tags(spec))
    return dataclasses.replace(task, tags={**spec.tags, **identity_tags(spec)})


def _start(spec: ExportSpec, gateway: AwsGateway, name: str, log: Log, policy: WaitPolicy, deadline: float) -> ExportTask:
    """ExportImage, once the region has a free slot (see slots.py)."""

    def attempt() -> ExportTask:
        return gateway.start_export(spec, str(uuid.uuid4()), {**spec.tags, **identity_tags(spec)})

    def waiting(reason: str) -> None:
        log(f"{name}: waiting for a free export slot ({reason})")

    try:
        task = queue_for(gateway.region).start(attempt, deadline, policy.first_delay, waiting, cancelled=CANCELLED)
    except Cancelled:
        raise ExportFailed(f"{name}: cancelled before an export slot was free; nothing was started") from None
    except TimeoutError:
        raise ExportFailed(
            f"{name}: no export slot became free in {gateway.region} within timeout_minutes "
            f"({spec.timeout_minutes:g}); nothing was started"
        ) from None
    log(f"{name}: started export task {task.task_id} of {spec.image_id} to "
        f"s3://{spec.s3_bucket}/{spec.s3_key(task.task_id)}")
    return task


def read_export(spec: ExportSpec, task_id: str, gateway: AwsGateway, known_tags: Mapping[str, str]) -> ExportState | None:
    """The export as AWS has it now, or None when it is gone.

    Task records do not live for ever, so when AWS no longer knows the task the
    S3 object decides: present, the export still exists (completed); absent, it
    is gone. A completed task whose object was deleted out of band is gone too,
    and so is a cancelled or failed one.
    """
    task = gateway.describe(task_id)
    if task is None:
        if gateway.object_exists(spec.s3_bucket, spec.s3_key(task_id)):
            return ExportState(task_id, "completed", None, 100, spec.s3_key(task_id), dict(known_tags))
        return None
    if task.status not in ("active", "completed"):
        return None
    if task.status == "completed" and not gateway.object_exists(spec.s3_bucket, spec.s3_key(task_id)):
        return None
    return _state(spec, task)


def update_tags(task_id: str, old: Mapping[str, str], new: Mapping[str, str], gateway: AwsGateway) -> None:
    """Make the task's user tags equal ``new``; the provider's own tags are left alone."""
    gateway.set_tags(task_id, {k: v for k, v in new.items() if old.get(k) != v})
    gateway.remove_tags(task_id, [k for k in old if k not in new])


def delete_export(spec: ExportSpec, task_id: str, gateway: AwsGateway, log: Log) -> None:
    """Cancel an active task, delete a completed one's object; whatever is gone already is fine.

    AWS removes a cancelled task's partial output itself. A task too far on to
    cancel (transferring its final image) is waited for, so that its object is
    deleted after it lands rather than before. A completed task keeps its record,
    so its identity tag is removed: a later create must not resume it.
    """
    task = gateway.describe(task_id)
    if task is not None and task.status == "active":
        outcome = gateway.cancel(task_id)
        log(f"export task {task_id}: cancel {outcome}")
        if outcome == "cancelled":
            return
        if outcome == "finished":
            try:
                task = wait_for_export(lambda: gateway.describe(task_id), task, spec.timeout_minutes * 60)
            except (WaitFailed, TaskVanished):
                pass
            except WaitTimedOut as timeout:
                raise ExportFailed(f"delete: {timeout}") from None
    key = spec.s3_key(task_id)
    gateway.delete_object(spec.s3_bucket, key)
    log(f"export task {task_id}: deleted s3://{spec.s3_bucket}/{key}")
    if task is not None:
        try:
            gateway.remove_tags(task_id, [RESOURCE_TAG])
        except ExportError as error:
            if not error.code.startswith("InvalidExportTaskID"):
                raise
