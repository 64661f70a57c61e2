"""The records of emulated export tasks: what was asked, and what a task reports.

``ExportTask`` stores its status; while active, its Progress is derived from
the elapsed time through the curve in ``curve.py`` (held at ``stall_at_progress``
if that was set when the task was created) and its StatusMessage from that
Progress (``status_message``; kept apart from the curve, which only shapes
progress). The shapes of the answers follow real captures (facts file): task
records carry no ImageId, DiskImageFormat or RoleName; ExportImage's answer has
RoleName only when it was passed and Tags only when some were given. The state
machine that moves tasks is in ``models.py``, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import EmulatorConfig
from .curve import progress_at, stall_fraction
from .unsettled import CONVERTING_FROM_PROGRESS, EXPORT_TASK_FORMAT_AS_REQUESTED, EXPORT_TASK_STATES


def status_message(progress: str) -> str:
    """StatusMessage of an active task at ``progress``: validating, updating, converting."""
    value = int(progress)
    if value == 0:
        return "validating"
    return "updating" if value < CONVERTING_FROM_PROGRESS else "converting"


@dataclass
class ExportRequest:
    image_id: str
    disk_image_format: str
    s3_bucket: str
    s3_prefix: str | None = None
    role_name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    client_token: str | None = None

    def fingerprint(self) -> tuple[Any, ...]:
        """What must match for a repeated ClientToken to return the original task."""
        base = (self.image_id, self.disk_image_format, self.s3_bucket, self.s3_prefix or "")
        return (*base, self.role_name or "vmimport", self.description or "", tuple(sorted(self.tags.items())))


@dataclass
class ExportTask:
    """One task; ``status`` is stored, progress of an active task is derived from time."""

    task_id: str
    seq: int
    request: ExportRequest
    created_at: float
    config: EmulatorConfig
    tags: dict[str, str]
    status: str = "active"
    status_message: str | None = None
    ended_at: float | None = None
    cancelled_at: float | None = None
    captured: dict[str, Any] | None = None
    """A record replayed as captured on AWS (``POST /_emulator/tasks``): answered verbatim, never advanced."""

    @property
    def deadline(self) -> float:
        return self.created_at + self.config.export_seconds

    @property
    def object_key(self) -> str:
        return f"{self.request.s3_prefix or ''}{self.task_id}.{self.request.disk_image_format.lower()}"

    def fraction(self, now: float) -> float:
        """Elapsed share of export_seconds, held just short of the next step if stall_at_progress is set."""
        elapsed = 1.0 if self.config.export_seconds <= 0 else (now - self.created_at) / self.config.export_seconds
        stall = self.config.stall_at_progress
        return elapsed if stall is None else min(elapsed, stall_fraction(stall, self.config.progress_curve))

    def stalled(self, now: float) -> bool:
        stall = self.config.stall_at_progress
        return stall is not None and self.fraction(now) >= stall_fraction(stall, self.config.progress_curve)

    def record(self, now: float) -> dict[str, Any]:
        """The DescribeExportImageTasks record: no ImageId, DiskImageFormat or RoleName (as captured)."""
        if self.captured is not None:
            out = dict(self.captured)
            if "Tags" in out or self.tags:
                out["Tags"] = [{"Key": k, "Value": v} for k, v in self.tags.items()]
            return out
        location = {"S3Bucket": self.request.s3_bucket}
        if self.request.s3_prefix is not None:
            location["S3Prefix"] = self.request.s3_prefix
        out: dict[str, Any] = {
            "ExportImageTaskId": self.task_id,
            "S3ExportLocation": location,
            "Status": self.status,
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
        }
        if self.request.description is not None:
            out["Description"] = self.request.description
        message, progress = self.status_message, None
        if self.status == "active":
            progress = progress_at(self.fraction(now), self.config.progress_curve)[1]
            message = status_message(progress) if progress is not None else None
        if message is not None:
            out["StatusMessage"] = message
        if progress is not None:
            out["Progress"] = progress
        return out

    def export_response(self, now: float) -> dict[str, Any]:
        """ExportImage's answer: ImageId and DiskImageFormat; RoleName only if passed, Tags only if given."""
        out = self.record(now)
        out["ImageId"] = self.request.image_id
        out["DiskImageFormat"] = self.request.disk_image_format
        if self.request.role_name is not None:
            out["RoleName"] = self.request.role_name
        if not self.request.tags:
            out.pop("Tags")
        return out

    def export_task(self) -> dict[str, Any]:
        """The task as the older DescribeExportTasks lists it: the one read with the format."""
        fmt = self.request.disk_image_format
        out: dict[str, Any] = {
            "ExportTaskId": self.task_id,
            "ExportToS3Task": {
                "DiskImageFormat": fmt if EXPORT_TASK_FORMAT_AS_REQUESTED else fmt.lower(),
                "S3Bucket": self.request.s3_bucket,
                "S3Key": self.object_key,
            },
            "State": EXPORT_TASK_STATES.get(self.status, self.status),
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
        }
        if self.request.description is not None:
            out["Description"] = self.request.description
        if self.status_message is not None and self.status != "active":
            out["StatusMessage"] = self.status_message
        return out

    def debug(self, now: float) -> dict[str, Any]:
        """Everything known about the task (``/_emulator/tasks``), not an AWS shape."""
        return {**self.record(now), "ImageId": self.request.image_id,
                "DiskImageFormat": self.request.disk_image_format,
                "RoleName": self.request.role_name or "vmimport"}


def placeholder_body(task: ExportTask) -> bytes:
    magic = {"VMDK": b"KDMV", "VHD": b"conectix", "RAW": b""}[task.request.disk_image_format]
    return magic + f"\nemulated export of {task.request.image_id} by {task.task_id}\n".encode()
