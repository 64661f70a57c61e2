"""State of emulated EC2 export-image tasks: no HTTP and no moto in here.

The backend owns the task state machine, the limits and ClientToken
idempotency; the task records are in ``task.py`` and the progress curve in
``curve.py`` (both re-exported here). Task faults come from the config each
task captured at creation: ``fail_at_progress`` ends it ``deleted`` with
``fail_message`` once Progress reaches that value, ``stall_at_progress`` holds
it active at the last Progress <= that value for ever (cancel still works), and
``expire_after_seconds`` drops ended records. What it needs from the rest of the emulated account
(is the AMI exportable, do role and bucket exist) and the one thing it does to
it (write the exported object) go through the ``World`` protocol, implemented
on moto in ``world.py``; tests can use a fake world and a simulated clock.

Seeding AMIs through boto3 against the emulator (``seed.py`` does this):
exportable -- ``register_image(Name=...)``; encrypted -- ``create_volume(
Encrypted=True)``, ``create_snapshot``, then ``register_image`` with
``BlockDeviceMappings=[{"DeviceName": ..., "Ebs": {"SnapshotId": ...}}]``, or
``create_image`` of an instance launched with ``Ebs.Encrypted=True`` (moto drops
both facts, so ``world.py`` records them); Marketplace -- ``run_instances``
from an AMI with ProductCodes (moto ships ``ami-0b301ce3ce3475r4f``), then
``create_image``, which inherits the codes as on AWS; Windows -- the same from
an AMI with Platform ``windows``; shared from another account -- any of moto's
default AMIs as they are.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .config import EmulatorConfig
from .curve import progress_at  # re-exported: the progress curve lives in curve.py
from .task import ExportRequest, ExportTask, placeholder_body  # re-exported: the task records

# Every guess about AWS lives in unsettled.py (re-exported here under its old names).
from .unsettled import (  # noqa: E402,F401
    CANCELLED_STATUS_MESSAGE,
    FAILED_STATUS,
    FINAL_TRANSFER_FRACTION,
    UNSETTLED_ERROR_CODES,
)

DISK_IMAGE_FORMATS = ("VMDK", "RAW", "VHD")
EXPORT_TASK_ID_RE = re.compile(r"^export-(ami|i)-([0-9a-z]{8}|[0-9a-z]{17})$")
AMI_ID_RE = re.compile(r"^ami-[0-9a-z]+$")
TASK_RESOURCE_TYPE = "export-image-task"
MAX_TAGS = 50
MAX_RESULTS_RANGE = (1, 500)

class ExportError(Exception):
    """An EC2 API error: the responses layer turns it into an EC2 XML body (HTTP ``status``)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class World(Protocol):
    """What the export backend needs from the rest of emulated AWS (``world.py``: moto)."""

    def check_exportable(self, account_id: str, region: str, request: ExportRequest) -> None:
        """Raise ExportError if the AMI, the service role or the bucket rule the export out."""

    def put_object(self, account_id: str, region: str, bucket: str, key: str, body: bytes) -> None: ...


def validate_tags(tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        if not key:
            raise ExportError("InvalidParameterValue", "Tag keys must not be empty")
        if len(key) > 127:
            raise ExportError("InvalidParameterValue", f"Tag key exceeds the maximum length of 127 characters: {key[:20]}...")
        if len(value) > 256:
            raise ExportError("InvalidParameterValue", f"Tag value exceeds the maximum length of 256 characters for key {key}")
        if key.lower().startswith("aws:"):
            raise ExportError("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Serialise a backend operation on the registry lock (the server is threaded)."""

    @functools.wraps(method)
    def wrapper(self: ExportImageBackend, *args: Any, **kwargs: Any) -> Any:
        with self.registry.lock:
            return method(self, *args, **kwargs)

    return wrapper


def _encode_token(seq: int, again: bool = False) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": seq, **({"again": True} if again else {})}).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["after"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ExportError(UNSETTLED_ERROR_CODES["bad_next_token"], "The specified pagination token is not valid") from None


class ExportImageBackend:
    """Export tasks of one account in one region (like one moto BackendDict entry)."""

    def __init__(self, registry: ExportBackends, account_id: str, region: str):
        self.registry = registry
        self.account_id = account_id
        self.region = region
        self.tasks: dict[str, ExportTask] = {}
        self.tokens: dict[str, ExportTask] = {}

    # -- the state machine --------------------------------------------------
    @_locked
    def settle(self, now: float) -> None:
        """Move every task whose next transition is due; writes completed objects."""
        for task in list(self.tasks.values()):
            if task.status == "active" and task.captured is None:
                self._advance_active(task, now)
            if task.status == "deleting" and task.cancelled_at is not None:
                if now >= task.cancelled_at + task.config.deleting_seconds:
                    task.status, task.ended_at = "deleted", now
            expire = task.config.expire_after_seconds
            if expire is not None and task.ended_at is not None and task.status in ("completed", "deleted"):
                if now >= task.ended_at + expire:
                    del self.tasks[task.task_id]

    def _advance_active(self, task: ExportTask, now: float) -> None:
        fraction = task.fraction(now)
        fail_at = task.config.fail_at_progress
        if fail_at is not None:
            _, progress = progress_at(fraction, task.config.progress_curve)
            if fraction >= 1 or int(progress or 0) >= fail_at:
                task.status, task.status_message, task.ended_at = FAILED_STATUS, task.config.fail_message, now
                return
        if fraction < 1:
            return
        try:
            body = placeholder_body(task)
            self.registry.world.put_object(self.account_id, self.region, task.request.s3_bucket, task.object_key, body)
        except Exception as exc:  # the bucket vanished while exporting
            task.status, task.ended_at = FAILED_STATUS, now
            task.status_message = f"ClientError: Unable to write to S3 bucket {task.request.s3_bucket}: {exc}"
            return
        task.status, task.status_message, task.ended_at = "completed", None, task.deadline

    # -- API operations -----------------------------------------------------
    @_locked
    def export_image(self, req: ExportRequest, dry_run: bool = False) -> dict[str, Any] | None:
        """Start a task (or return the ClientToken's original); ``dry_run``: validate only, return None."""
        now = self.registry.now()
        self.settle(now)
        if dry_run:
            self._validate(req)
            return None
        if req.client_token is not None:
            if len(req.client_token) > 64:
                raise ExportError("InvalidParameterValue", "ClientToken must be at most 64 characters")
            original = self.tokens.get(req.client_token)
            if original is not None:
                if original.request.fingerprint() != req.fingerprint():
                    msg = f"The client token {req.client_token} was already used with different parameters"
                    raise ExportError("IdempotentParameterMismatch", msg)
                return original.export_response(now)
        self._validate(req)
        task_id = "export-ami-" + secrets.token_hex(9)[:17]
        task = ExportTask(task_id, self.registry.next_seq(), req, now, self.registry.config, dict(req.tags))
        self.tasks[task.task_id] = task
        if req.client_token is not None:
            self.tokens[req.client_token] = task
        self.settle(now)
        return task.export_response(now)

    def _validate(self, req: ExportRequest) -> None:
        codes = UNSETTLED_ERROR_CODES
        if req.disk_image_format not in DISK_IMAGE_FORMATS:
            msg = f"Value ({req.disk_image_format}) for parameter DiskImageFormat is invalid."
            raise ExportError("InvalidParameterValue", f"{msg} Supported formats: {', '.join(DISK_IMAGE_FORMATS)}")
        if req.description is not None and len(req.description) > 255:
            raise ExportError("InvalidParameterValue", "The description must be at most 255 characters long")
        validate_tags(req.tags)
        if len(req.tags) > MAX_TAGS:
            raise ExportError("TagLimitExceeded", f"A resource can have at most {MAX_TAGS} tags")
        self.registry.world.check_exportable(self.account_id, self.region, req)
        active = [t for t in self.tasks.values() if t.status == "active"]
        busy = next((t for t in active if t.request.image_id == req.image_id), None)
        if busy is not None:
            msg = f"An export of image {req.image_id} is already in progress: {busy.task_id}"
            raise ExportError(codes["ami_export_in_progress"], msg)
        limit = self.registry.config.max_active  # AWS counts import tasks too; moto 5.2 has none to count
        if len(active) >= limit:
            msg = f"You have reached the maximum of {limit} export tasks in progress in {self.region}"
            raise ExportError(codes["too_many_active"], msg)

    def _get(self, task_id: str) -> ExportTask:
        if not EXPORT_TASK_ID_RE.match(task_id or ""):
            raise ExportError("InvalidExportTaskID.Malformed", f"The export task ID '{task_id}' is malformed")
        task = self.tasks.get(task_id)
        if task is None:
            raise ExportError("InvalidExportTaskID.NotFound", f"The export task ID '{task_id}' does not exist")
        return task

    @_locked
    def describe(
        self,
        task_ids: list[str] | None = None,
        filters: Mapping[str, list[str]] | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of records and the NextToken; by ids, ``by_id_next_token`` may add a token."""
        now = self.registry.now()
        self.settle(now)
        for name in filters or {}:
            if name != "task-state":
                raise ExportError("InvalidParameterValue", f"The filter '{name}' is invalid")
        if max_results is not None and not MAX_RESULTS_RANGE[0] <= max_results <= MAX_RESULTS_RANGE[1]:
            msg = f"Value ({max_results}) for parameter maxResults is invalid. Expecting a value between 1 and 500"
            raise ExportError("InvalidParameterValue", msg)
        tasks = list(self.tasks.values())
        if task_ids:
            wanted = {self._get(task_id).task_id for task_id in task_ids}
            tasks = [t for t in tasks if t.task_id in wanted]
        states = (filters or {}).get("task-state")
        if states:
            tasks = [t for t in tasks if t.status in states]
        mode = self.registry.config.by_id_next_token if task_ids else None
        if mode == "stuck" and tasks:
            return [tasks[0].record(now)], _encode_token(tasks[0].seq - 1, again=True)
        if next_token:
            after = _decode_token(next_token)
            tasks = [t for t in tasks if t.seq > after]
        page = 1 if mode == "partial" and max_results is None else max_results
        token = None
        if page is not None and len(tasks) > page:
            tasks = tasks[:page]
            token = _encode_token(tasks[-1].seq)
        if mode == "trailing" and token is None and not next_token and tasks:
            token = _encode_token(tasks[-1].seq)
        return [t.record(now) for t in tasks], token

    @_locked
    def describe_export_tasks(self, task_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """DescribeExportTasks: export-ami tasks with ExportToS3Task (format, bucket, key) and State."""
        self.settle(self.registry.now())
        if task_ids:
            return [self._get(task_id).export_task() for task_id in dict.fromkeys(task_ids)]
        return [t.export_task() for t in self.tasks.values()]

    @_locked
    def cancel(self, task_id: str) -> None:
        now = self.registry.now()
        self.settle(now)
        task = self._get(task_id)
        if task.status != "active" or (task.fraction(now) >= FINAL_TRANSFER_FRACTION and not task.stalled(now)):
            stage = "transferring its final image" if task.status == "active" else f"in state {task.status}"
            msg = f"Export task {task_id} cannot be cancelled: it is {stage}"
            raise ExportError(UNSETTLED_ERROR_CODES["cancel_not_cancellable"], msg)
        task.status, task.status_message, task.cancelled_at = "deleting", CANCELLED_STATUS_MESSAGE, now
        task.captured = None
        self.settle(now)

    @_locked
    def create_tags(self, task_ids: list[str], tags: Mapping[str, str], dry_run: bool = False) -> None:
        self.settle(self.registry.now())
        validate_tags(tags)
        tasks = [self._get(task_id) for task_id in task_ids]
        for task in tasks:
            if len({**task.tags, **tags}) > MAX_TAGS:
                raise ExportError("TagLimitExceeded", f"A resource can have at most {MAX_TAGS} tags")
        for task in tasks if not dry_run else ():
            task.tags.update(tags)

    @_locked
    def delete_tags(self, task_ids: list[str], tags: list[dict[str, Any]] | None, dry_run: bool = False) -> None:
        """EC2 semantics: no Tags deletes all; a Key alone deletes any value; Key+Value only that value."""
        self.settle(self.registry.now())
        tasks = [self._get(task_id) for task_id in task_ids]
        for task in tasks if not dry_run else ():
            if not tags:
                task.tags.clear()
                continue
            for tag in tags:
                key = tag.get("Key")
                if key in task.tags and ("Value" not in tag or tag["Value"] == task.tags[key]):
                    del task.tags[key]


class ExportBackends:
    """All export backends, keyed by account and region, sharing config, clock and lock.

    ``clock`` is any zero-argument callable returning seconds (``time.monotonic``
    by default); tests and benchmarks pass a simulated clock or call ``advance``.
    """

    def __init__(self, world: World, config: EmulatorConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.world = world
        self.config = config or EmulatorConfig()
        self.clock = clock
        self.offset = 0.0
        self.lock = threading.RLock()
        self._backends: dict[tuple[str, str], ExportImageBackend] = {}
        self._seq = 0

    def now(self) -> float:
        return self.clock() + self.offset

    def advance(self, seconds: float) -> float:
        with self.lock:
            self.offset += seconds
            return self.offset

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def get(self, account_id: str, region: str) -> ExportImageBackend:
        with self.lock:
            key = (account_id, region)
            if key not in self._backends:
                self._backends[key] = ExportImageBackend(self, account_id, region)
            return self._backends[key]

    def set_config(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        with self.lock:
            self.config = self.config.updated(changes)
            return self.config

    def replay(self, account_id: str, region: str, record: Mapping[str, Any], disk_image_format: str,
               image_id: str | None = None) -> dict[str, Any]:
        """Add a task that answers DescribeExportImageTasks with ``record`` as captured on AWS.

        ``disk_image_format`` (and ``image_id``) are what the capture does not
        show; DescribeExportTasks and the per-AMI rule use them.
        """
        location = record.get("S3ExportLocation") or {}
        request = ExportRequest(image_id or "ami-00000000000000000", disk_image_format.upper(), location["S3Bucket"],
                                location.get("S3Prefix"), description=record.get("Description"))
        tags = {t["Key"]: t.get("Value", "") for t in record.get("Tags") or ()}
        with self.lock:
            backend = self.get(account_id, region)
            task = ExportTask(record["ExportImageTaskId"], self.next_seq(), request, self.now(), self.config, tags,
                              status=record["Status"], status_message=record.get("StatusMessage"),
                              captured=dict(record))
            backend.tasks[task.task_id] = task
            return task.record(self.now())

    def settle_all(self) -> None:
        with self.lock:
            now = self.now()
            for backend in list(self._backends.values()):
                backend.settle(now)

    def reset(self) -> None:
        with self.lock:
            self._backends.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        """Every task with its account and region, for debugging and tests."""
        with self.lock:
            now = self.now()
            return [
                {"AccountId": b.account_id, "Region": b.region, **t.debug(now)}
                for b in self._backends.values()
                for t in b.tasks.values()
            ]
