"""The emulator's knobs, one flat dataclass so a new fault flag is one new field.

Kept apart from ``models.py`` because the control endpoint, the CLI and the
Python API all read and write it; nothing here touches moto or HTTP.

Fields (None is JSON null; names as in ``--config``, ``POST /_emulator/config`` and
``start_emulator(config=...)``):

Tasks -- captured by each task when it is created:
  ``export_seconds`` (30.0): wall-clock duration of an export; 0 completes at once.
  ``deleting_seconds`` (1.0): how long a cancelled task stays ``deleting``.
  ``fail_at_progress`` (None, 0..100): the task ends ``deleted`` with
  ``fail_message`` once its Progress reaches this value.
  ``fail_message`` ("ClientError: Disk validation failed [...]"): its StatusMessage.
  ``stall_at_progress`` (None, 0..100): the task climbs until its Progress would
  pass this value, then stays active there for ever (cancel still works).
  ``expire_after_seconds`` (604800, 7 days; a guess, see unsettled.py): ended records
  vanish this long after ending (emulator clock); None keeps them for ever.
  ``progress_curve`` ("realistic"): the shape of Progress over the export, one of
  ``curve.SHAPES``: realistic, classic, jump, late, steps (see ``curve.py``); the
  StatusMessage at each Progress comes from ``unsettled.py``.
Limits and answers -- read at each call:
  ``max_active`` (5): active export tasks per account and region.
  ``by_id_next_token`` (None): a DescribeExportImageTasks by ids carries a NextToken,
  as seen on AWS: "partial" (one record per page), "trailing" (all records, then a
  token to an empty page) or "stuck" (the first record and the same token, forever).
  ``caller_policy`` (false): evaluate the IAM policies of the calling identity (moto's
  IAM access control): requests must be signed with keys of an IAM user of the account,
  EC2 answers UnauthorizedOperation, S3 AccessDenied; ExportImage also needs
  iam:PassRole on the service role.
Request faults -- read at each AWS request (never at ``/_emulator/*``):
  ``throttle_fraction`` (0.0): share of requests answered HTTP 503
  ``RequestLimitExceeded`` (S3: ``SlowDown``; IAM/STS: ``Throttling``).
  ``error_fraction`` (0.0): share answered HTTP 500 ``InternalError``.
  ``latency_seconds`` (0.0): sleep before answering every request.
  ``fault_seed`` (None): seeds the fault dice afresh whenever the config is set
  or reset; None draws from system randomness.
  ``lose_responses`` (0): the next N matching requests are applied, then their
  connection is dropped without an answer (the client sees a lost response and retries);
  counts down.
  ``lose_responses_of`` (None): which requests, e.g. "ec2:ExportImage"; None: any.
  ``deny_actions`` (""): comma-separated ``service:Action`` names (e.g.
  "s3:HeadObject,s3:DeleteObject") answered HTTP 403 (S3 AccessDenied, EC2
  UnauthorizedOperation) before the backend sees them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .curve import DEFAULT_SHAPE, SHAPES
from .unsettled import BY_ID_NEXT_TOKEN_MODES, DELETING_SECONDS, RECORD_RETENTION_SECONDS


@dataclass(frozen=True)
class EmulatorConfig:
    """Knobs of the emulator, one flat record so a new fault flag is one new field.

    Task values are captured by each task when it is created, so changing them
    affects only later tasks (``max_active`` applies to later ExportImage calls,
    the request faults to later requests). The module docstring lists the fields.
    """

    export_seconds: float = 30.0
    max_active: int = 5
    deleting_seconds: float = DELETING_SECONDS
    fail_at_progress: int | None = None
    fail_message: str = "ClientError: Disk validation failed [Unsupported specified file format]"
    expire_after_seconds: float | None = RECORD_RETENTION_SECONDS
    stall_at_progress: int | None = None
    progress_curve: str = DEFAULT_SHAPE
    throttle_fraction: float = 0.0
    error_fraction: float = 0.0
    latency_seconds: float = 0.0
    fault_seed: int | None = None
    by_id_next_token: str | None = None
    caller_policy: bool = False
    lose_responses: int = 0
    lose_responses_of: str | None = None
    deny_actions: str = ""

    def __post_init__(self) -> None:
        if self.export_seconds < 0 or self.deleting_seconds < 0:
            raise ValueError("durations must be >= 0")
        if self.max_active < 0:
            raise ValueError("max_active must be >= 0")
        if self.fail_at_progress is not None and not 0 <= self.fail_at_progress <= 100:
            raise ValueError("fail_at_progress must be within 0..100")
        if self.expire_after_seconds is not None and self.expire_after_seconds < 0:
            raise ValueError("expire_after_seconds must be >= 0")
        if self.stall_at_progress is not None and not 0 <= self.stall_at_progress <= 100:
            raise ValueError("stall_at_progress must be within 0..100")
        if self.progress_curve not in SHAPES:
            raise ValueError(f"progress_curve must be one of {', '.join(SHAPES)}, not {self.progress_curve!r}")
        for name in ("throttle_fraction", "error_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1")
        if self.throttle_fraction + self.error_fraction > 1:
            raise ValueError("throttle_fraction + error_fraction must be <= 1")
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must be >= 0")
        if self.by_id_next_token is not None and self.by_id_next_token not in BY_ID_NEXT_TOKEN_MODES:
            raise ValueError(f"by_id_next_token must be null or one of {', '.join(BY_ID_NEXT_TOKEN_MODES)}")
        if self.lose_responses < 0:
            raise ValueError("lose_responses must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with ``changes`` applied; unknown names and wrong types raise ValueError."""
        known = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown config field {name!r}")
            clean[name] = _coerce(name, str(known[name].type), value)
        return dataclasses.replace(self, **clean)


def _coerce(name: str, type_text: str, value: Any) -> Any:
    if value is None:
        if "None" in type_text:
            return None
        raise ValueError(f"{name} may not be null")
    if isinstance(value, bool) and "bool" not in type_text:
        raise ValueError(f"{name} must not be a boolean")
    for type_name, kind, accepted in (
        ("float", float, (int, float)),
        ("int", int, (int,)),
        ("str", str, (str,)),
        ("bool", bool, (bool,)),
    ):
        if type_text.startswith(type_name):
            if not isinstance(value, accepted):
                raise ValueError(f"{name} must be {type_name}")
            return kind(value)
    raise ValueError(f"{name}: unsupported field type {type_text}")
