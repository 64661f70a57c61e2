"""What create, read, update and delete mean for an export task, in AWS terms.

This is the only place that decides; the provider translates Pulumi's property
dicts to an :class:`ExportSpec` and back, the gateway makes the calls, the waiter
polls, and ownership.py says which tasks belong to which resource.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .aws import AwsGateway, ExportError, ExportTask
from .image import S3Object
from .ownership import (
    NotYours,
    _name,
    _untag,
    cancel_replaced,
    claim,
    clear_unowned,
    find_resumable,
    identity_tags,
    own_tasks,
    refuse_if_owned,
    unclaimed_tasks,
    user_tags,
)
from .process import CANCELLED, Cancelled
from .spec import ExportSpec
from .slots import queue_for
from .waiter import TaskVanished, WaitFailed, WaitPolicy, WaitTimedOut, load_policy, wait_for_export

Log = Callable[[str], None]


class ExportFailed(Exception):
    """The export could not be brought to the state the program asks for."""


class ExportIncomplete(ExportFailed):
    """The export was started (or resumed) but not seen to finish: a timeout, or the engine's Cancel.

    ``state`` is the export as last seen, so that the provider can hand the
    task to the engine as partial state rather than leave it owned by nothing.
    """

    def __init__(self, message: str, task: ExportTask) -> None:
        super().__init__(message)
        self.task = task
        self.state: ExportState | None = None


@dataclass(frozen=True)
class ExportState:
    """What the provider records about a task once an operation is done."""

    task_id: str
    status: str
    status_message: str | None
    progress: int | None
    s3_key: str
    tags: Mapping[str, str] = field(default_factory=dict)
    s3_object: S3Object | None = None  # the image, once the export is completed and it was seen


def _state(spec: ExportSpec, task: ExportTask, image: S3Object | None = None) -> ExportState:
    completed = task.status == "completed"
    return ExportState(
        task_id=task.task_id,
        status=task.status,
        status_message=None if completed else task.status_message,
        progress=100 if completed else task.progress,
        s3_key=spec.s3_key(task.task_id),
        tags=user_tags(task.tags),
        s3_object=image if completed else None,
    )


def _image(spec: ExportSpec, task: ExportTask, gateway: AwsGateway) -> S3Object | None:
    """A completed export's object as it is now (size, ETag, version), first seen when the export completes."""
    if task.status != "completed":
        return None
    return gateway.head_object(spec.s3_bucket, spec.s3_key(task.task_id))


def create_export(spec: ExportSpec, gateway: AwsGateway, log: Log, policy: WaitPolicy | None = None) -> ExportState:
    """Start the export (or resume the one an interrupted create started) and wait for it.

    No duplicate exports, no lost image. Every task is started with the
    resource's identity (project/stack/name, plus the stack's own identity so
    that same-named stacks in two backends never meet) and a fingerprint of the
    inputs that decide what it produces. A create first looks for an unclaimed
    task carrying both and resumes it, so a ``pulumi up`` killed after
    ExportImage was sent, or a wait that timed out, picks up the same task when
    run again. The task is claimed when the create returns it to the engine, so
    a replacement with unchanged inputs (``pulumi up --replace``) never takes
    the task of the resource it replaces, whose delete will remove that image.
    The ClientToken, new for each create, makes botocore's own retries of
    ExportImage safe.
    """
    policy = policy or load_policy()
    deadline = time.monotonic() + spec.timeout_seconds
    if spec.existing_task_id:
        found = adopt(spec, gateway)
        try:
            refuse_if_owned(found)
        except NotYours as refusal:
            raise ExportFailed(str(refusal)) from None
        task = _take_over(found, spec, gateway)
        log(f"{_name(spec)}: adopted export task {task.task_id} ({task.status})")
    elif (task := find_resumable(spec, tasks := own_tasks(spec, gateway), gateway, log)) is not None:
        task = _take_over(task, spec, gateway)
        log(f"{_name(spec)}: resuming export task {task.task_id} ({task.status}); if Pulumi warned of a pending "
            f"create for {_name(spec)}, run `pulumi refresh --clear-pending-creates --yes` after this up")
    else:
        cancel_replaced(spec, tasks, gateway, log)
        task = _start(spec, gateway, log, policy, deadline)
    if spec.wait_for_completion:
        try:
            task = wait_until_exported(spec, task, gateway, log, policy, deadline)
        except ExportIncomplete as incomplete:
            incomplete.state = _state(spec, incomplete.task)
            raise
    claim(task.task_id, gateway)
    return _state(spec, task, _image(spec, task, gateway))


def wait_until_exported(
    spec: ExportSpec,
    task: ExportTask,
    gateway: AwsGateway,
    log: Log,
    policy: WaitPolicy | None = None,
    deadline: float | None = None,
) -> ExportTask:
    """Follow the task until its image is in S3; ExportFailed, naming the task, on failure or timeout."""
    name = _name(spec)
    policy = policy or load_policy()
    if deadline is None:
        deadline = time.monotonic() + spec.timeout_seconds

    def report(latest: ExportTask) -> None:
        if latest.status == "completed":
            return  # said once below, with the image's location
        progress = f"{latest.progress}%" if latest.progress is not None else ""
        message = latest.status_message or ""
        log(f"{name}: {latest.task_id} {latest.status} {progress} {message}".rstrip())

    try:
        task = wait_for_export(
            lambda: gateway.describe(task.task_id), task, deadline - time.monotonic(), policy, report,
            cancelled=CANCELLED,
        )
    except Cancelled:
        raise ExportIncomplete(f"{name}: cancelled while waiting for export task {task.task_id}; the task keeps "
                               "running in AWS and the next `pulumi up` resumes it", task) from None
    except WaitFailed as failure:
        raise ExportFailed(f"{name}: {failure}") from None
    except WaitTimedOut as timeout:
        raise ExportIncomplete(f"{name}: {timeout.explain(spec.timeout_minutes)}", timeout.task) from None
    except TaskVanished as vanished:
        if not gateway.object_exists(spec.s3_bucket, spec.s3_key(task.task_id)):
            raise ExportFailed(f"{name}: {vanished}, and no image was written") from None
        task = ExportTask(task_id=task.task_id, status="completed", tags=task.tags)
    finally:
        queue_for(gateway.region).release()  # an export of this process ended, or stopped being waited for
    log(f"{name}: {task.task_id} completed: s3://{spec.s3_bucket}/{spec.s3_key(task.task_id)}")
    return task


def adopt(spec: ExportSpec, gateway: AwsGateway) -> ExportTask:
    """Bring a task started outside Pulumi under management, if it is what the inputs describe.

    AWS's task record has no format or role, and on AWS usually no ImageId
    either (facts file): the image is compared only when the record carries it.
    The format and key come from DescribeExportTasks where AWS answers it, and
    a completed task's object must exist under the key the inputs give.
    """
    task_id = spec.existing_task_id or ""
    task = adoptable(task_id, gateway)
    theirs = {"s3_bucket": task.s3_bucket, "s3_prefix": task.s3_prefix or "", "description": task.description}
    if task.image_id is not None:
        theirs["image_id"] = task.image_id
    location = gateway.export_location(task_id)
    fmt, bucket, written = location if location is not None else (None, None, None)
    if fmt is not None:
        theirs["disk_image_format"] = fmt
    for name, value in theirs.items():
        if value != getattr(spec, name):
            raise ExportFailed(f"existing_task_id: export task {task_id} has {name}={value!r} but the {name} "
                               f"argument is {getattr(spec, name)!r}: set {name} to the task's, or drop existing_task_id")
    key = spec.s3_key(task_id)
    if written and written != key:
        raise ExportFailed(f"existing_task_id: export task {task_id} writes s3://{bucket}/{written}, not "
                           f"s3://{spec.s3_bucket}/{key}: check s3_prefix and disk_image_format")
    if task.status == "completed" and not gateway.object_exists(spec.s3_bucket, key):
        raise ExportFailed(f"existing_task_id: export task {task_id} completed, but s3://{spec.s3_bucket}/{key} "
                           "does not exist: check disk_image_format, or the image was deleted")
    return task


def adoptable(task_id: str, gateway: AwsGateway, argument: str = "existing_task_id",
              otherwise: str = ": drop existing_task_id") -> ExportTask:
    """The task, if AWS knows it and it has (or will have) an image; ExportFailed naming ``argument`` otherwise."""
    task = gateway.describe(task_id)
    if task is None:
        raise ExportFailed(f"{argument}: export task {task_id} is not known in {gateway.region}: "
                           "check the id and the region")
    if task.status not in ("active", "completed"):
        raise ExportFailed(f"{argument}: export task {task_id} is {task.status} "
                           f"({task.status_message or 'no message'}) and cannot be adopted{otherwise}")
    return task


def _take_over(task: ExportTask, spec: ExportSpec, gateway: AwsGateway) -> ExportTask:
    """Give an adopted or resumed task the program's tags (they may have changed) and the identity tags."""
    update_tags(task.task_id, user_tags(task.tags), spec.tags, gateway)
    gateway.set_tags(task.task_id, identity_tags(spec))
    return dataclasses.replace(task, tags={**spec.tags, **identity_tags(spec)})


def _start(spec: ExportSpec, gateway: AwsGateway, log: Log, policy: WaitPolicy, deadline: float) -> ExportTask:
    """ExportImage, once the region has a free slot (see slots.py)."""
    name = _name(spec)

    def attempt() -> ExportTask:
        return gateway.start_export(spec, str(uuid.uuid4()), {**spec.tags, **identity_tags(spec)})

    def waiting(reason: str) -> None:
        log(f"{name}: waiting for a free export slot ({reason})")

    try:
        task = queue_for(gateway.region).start(attempt, deadline, policy.first_delay, waiting,
                                               image_id=spec.image_id, cancelled=CANCELLED)
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


def read_export(
    spec: ExportSpec,
    task_id: str,
    gateway: AwsGateway,
    known_tags: Mapping[str, str],
    known: S3Object | None = None,
    log: Log | None = None,
) -> ExportState | None:
    """The export as AWS has it now, or None when it is gone.

    Task records do not live for ever, so when AWS no longer knows the task the
    S3 object decides: present, the export still exists (completed); absent, it
    is gone. A completed task whose object was deleted out of band is gone too,
    and so is a cancelled or failed one. So is one whose object was replaced:
    another ETag or version at the key than the one ``known`` (the state's) is
    not the image this export wrote.
    """
    task = gateway.describe(task_id)
    if task is not None and task.status not in ("active", "completed"):
        return None
    if task is not None and task.status == "active":
        return _state(spec, task)
    key = spec.s3_key(task_id)
    image = gateway.head_object(spec.s3_bucket, key)
    if image is None:
        return None
    if known is not None and replaced(known, image):
        if log is not None:
            kept = f"; its version {known.version_id} is still in the bucket" if known.version_id else ""
            log(f"{_name(spec)}: s3://{spec.s3_bucket}/{key} was replaced out of band "
                f"({_describe(known)} became {_describe(image)}): the export is treated as gone{kept}")
        return None
    if task is None:
        return ExportState(task_id, "completed", None, 100, key, dict(known_tags), image)
    return _state(spec, task, image)


def replaced(known: S3Object, found: S3Object) -> bool:
    """Is ``found`` another object than the ``known`` one: another version, or (unversioned) another ETag."""
    if known.version_id and found.version_id != known.version_id:
        return True
    return bool(known.etag) and found.etag != known.etag


def _describe(image: S3Object) -> str:
    version = f" version {image.version_id}" if image.version_id else ""
    return f"ETag {image.etag}{version}"


def update_tags(task_id: str, old: Mapping[str, str], new: Mapping[str, str], gateway: AwsGateway) -> None:
    """Make the task's user tags equal ``new``; the provider's own tags are left alone."""
    gateway.set_tags(task_id, {k: v for k, v in new.items() if old.get(k) != v})
    gateway.remove_tags(task_id, [k for k in old if k not in new])


def update_export(
    spec: ExportSpec, task_id: str, old_tags: Mapping[str, str], status: str | None, gateway: AwsGateway, log: Log
) -> ExportState | None:
    """Apply an in-place change: the tags, the identity tags, and a wait newly asked for.

    AWS drops task records after a while, but the export lives on in its object
    (see :func:`read_export`): tags then have nowhere to go, which is said once
    and is no reason to fail. Returns the export's state when it was waited for, else None.
    """
    try:
        update_tags(task_id, old_tags, spec.tags, gateway)
        gateway.set_tags(task_id, identity_tags(spec))
    except ExportError as error:
        if not error.code.startswith("InvalidExportTaskID"):
            raise
        log(f"{_name(spec)}: the tags could not be applied to export task {task_id}: AWS no longer keeps "
            "its record (the image is unchanged); the state holds the new tags")
        return None
    if spec.wait_for_completion and status == "active":
        task = gateway.describe(task_id)
        if task is not None and task.status == "active":
            task = wait_until_exported(spec, task, gateway, log)
        if task is not None and task.status == "completed":
            return _state(spec, task, _image(spec, task, gateway))
        if task is not None:
            raise ExportFailed(f"{_name(spec)}: export task {task_id} ended {task.status} "
                               f"({task.status_message or 'no message'}): run `pulumi refresh`, then `pulumi up`")
    return None


def delete_export(spec: ExportSpec, task_id: str, gateway: AwsGateway, log: Log, known: S3Object | None = None) -> None:
    """Cancel an active task, delete a completed one's object; whatever is gone already is fine.

    AWS removes a cancelled task's partial output itself. A task too far on to
    cancel (transferring its final image) is waited for, so that its object is
    deleted after it lands rather than before. A completed task keeps its record,
    so its identity tag is removed: a later create must not resume it. Tasks
    that interrupted creates of this resource left (unclaimed, so reported by
    nothing) go with it: the resource is leaving the stack, and nothing else
    would ever resume or cancel them.
    """
    for leftover in unclaimed_tasks(spec, gateway):
        if leftover.task_id != task_id:
            clear_unowned(leftover, gateway, lambda line: log(f"{_name(spec)}: {line}"))
    task = gateway.describe(task_id)
    if task is not None and task.status == "active":
        outcome = gateway.cancel(task_id)
        log(f"{_name(spec)}: export task {task_id}: cancel {outcome}")
        if outcome == "cancelled":
            return
        if outcome == "finished":
            try:
                task = wait_for_export(lambda: gateway.describe(task_id), task, spec.timeout_seconds)
            except (WaitFailed, TaskVanished):
                pass
            except WaitTimedOut as timeout:
                raise ExportFailed(f"delete: {timeout}") from None
    _delete_image(spec, task_id, gateway, log, known)
    if task is not None:
        _untag(task_id, gateway)


def _delete_image(spec: ExportSpec, task_id: str, gateway: AwsGateway, log: Log, known: S3Object | None) -> None:
    """Delete the export's image and nothing else: in a versioning bucket exactly its version, leaving no delete marker.

    With a version recorded (``known``, from state) that version is deleted by
    id, whatever else is at the key. Otherwise the current object is deleted
    (by its version id, if the bucket has started versioning since), unless its
    ETag shows it is someone else's.
    """
    key = spec.s3_key(task_id)
    where = f"s3://{spec.s3_bucket}/{key}"
    version = known.version_id if known is not None else None
    image = gateway.head_object(spec.s3_bucket, key, version)
    if image is None:
        return
    if version is None and known is not None and replaced(known, image):
        log(f"{_name(spec)}: export task {task_id}: {where} is not this export's image any more "
            f"({_describe(known)} became {_describe(image)}): left in place")
        return
    gateway.delete_object(spec.s3_bucket, key, image.version_id)
    log(f"{_name(spec)}: export task {task_id}: deleted {where}" + (f" version {image.version_id}" if image.version_id else ""))

