"""ExportSpec: what the user asked for, validated and normalised.

Everything here is pure: no AWS, no Pulumi. The provider's ``check`` calls
:func:`validate` before any AWS call, so every rule that can be decided from the
inputs alone lives here, each failure naming the argument and the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("VMDK", "RAW", "VHD")
DEFAULT_ROLE_NAME = "vmimport"
DEFAULT_TIMEOUT_MINUTES = 360.0

# Tags under this prefix are the provider's own bookkeeping on the task (see
# lifecycle.py); users may not set them and never see them in outputs.
RESERVED_TAG_PREFIX = "export-image-provider:"
MAX_USER_TAGS = 46  # AWS allows 50 tags per resource; the provider uses 4 (lifecycle.py).

REPLACE_PROPERTIES = (
    "image_id",
    "disk_image_format",
    "s3_bucket",
    "s3_prefix",
    "role_name",
    "description",
    "region",
)
UPDATE_PROPERTIES = ("tags",)

_AMI_ID = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_TASK_ID = re.compile(r"^export-ami-[0-9a-z]{17}$")


@dataclass(frozen=True)
class Problem:
    """One invalid argument: which one, and what to do about it."""

    property: str
    reason: str


@dataclass(frozen=True)
class ExportSpec:
    """A validated, normalised ImageExport request."""

    image_id: str
    disk_image_format: str
    s3_bucket: str
    s3_prefix: str = ""
    role_name: str = DEFAULT_ROLE_NAME
    description: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    region: str | None = None
    wait_for_completion: bool = True
    timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES
    existing_task_id: str | None = None
    resource_key: str | None = None
    stack_identity: str | None = None

    @property
    def timeout_seconds(self) -> float:
        """``timeout_minutes`` as the waits count it: the one place minutes become seconds."""
        return self.timeout_minutes * 60

    @property
    def extension(self) -> str:
        return self.disk_image_format.lower()

    def s3_key(self, task_id: str) -> str:
        """Where AWS writes the image: the prefix verbatim, then ``<task id>.<format>``."""
        return f"{self.s3_prefix}{task_id}.{self.extension}"

    def fingerprint(self) -> str:
        """A short digest of every input that decides what the export produces.

        Two specs with the same fingerprint would start identical exports, so a
        task carrying it may be adopted instead of starting another.
        """
        material = {name: getattr(self, name) for name in REPLACE_PROPERTIES if name != "region"}
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode())
        return digest.hexdigest()[:16]


def never_unknown(_value: Any) -> bool:
    return False


def normalize(props: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and canonical case; leave values it cannot read for :func:`validate`."""
    out = dict(props)
    fmt = out.get("disk_image_format")
    if isinstance(fmt, str):
        out["disk_image_format"] = fmt.strip().upper()
    for name, default in (
        ("s3_prefix", ""),
        ("role_name", DEFAULT_ROLE_NAME),
        ("wait_for_completion", True),
        ("timeout_minutes", DEFAULT_TIMEOUT_MINUTES),
        ("tags", {}),
    ):
        if out.get(name) is None:
            out[name] = default
    return out


def validate(props: Mapping[str, Any], is_unknown: Callable[[Any], bool] = never_unknown) -> list[Problem]:
    """Every problem with normalised ``props``; values for which ``is_unknown`` holds pass."""
    problems: list[Problem] = []
    for name, rule in _RULES:
        value = props.get(name)
        if is_unknown(value):
            continue
        reason = rule(value, is_unknown)
        if reason:
            problems.append(Problem(name, reason))
    return problems


def to_spec(props: Mapping[str, Any]) -> ExportSpec:
    """Build the spec from normalised, valid props (raises ValueError otherwise)."""
    props = normalize(props)
    problems = validate(props)
    if problems:
        raise ValueError("; ".join(f"{p.property}: {p.reason}" for p in problems))
    return ExportSpec(
        image_id=props["image_id"],
        disk_image_format=props["disk_image_format"],
        s3_bucket=props["s3_bucket"],
        s3_prefix=props["s3_prefix"],
        role_name=props["role_name"],
        description=props.get("description"),
        tags=dict(props["tags"]),
        region=props.get("region"),
        wait_for_completion=bool(props["wait_for_completion"]),
        timeout_minutes=float(props["timeout_minutes"]),
        existing_task_id=props.get("existing_task_id") or None,
        resource_key=props.get("resource_key"),
        stack_identity=props.get("stack_identity"),
    )


def _type_error(value: Any, expected: str) -> str:
    return f"must be {expected}, got {type(value).__name__} {value!r}"


def _image_id(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if value is None or value == "":
        return "is required: the id of the AMI to export, like ami-0123456789abcdef0"
    if not isinstance(value, str):
        return _type_error(value, "a string like ami-0123456789abcdef0")
    if not _AMI_ID.match(value):
        return f"{value!r} is not an AMI id: expected 'ami-' followed by 8 or 17 lowercase hex digits"
    return None


def _disk_image_format(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if value is None or value == "":
        return f"is required: one of {', '.join(FORMATS)}"
    if not isinstance(value, str):
        return _type_error(value, f"one of {', '.join(FORMATS)}")
    if value.upper() not in FORMATS:
        return f"{value!r} is not a format ExportImage writes: use one of {', '.join(FORMATS)}"
    return None


def _s3_bucket(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if value is None or value == "":
        return "is required: the name of an existing bucket in the export's region"
    if not isinstance(value, str):
        return _type_error(value, "a bucket name")
    if value.startswith("s3://") or "/" in value:
        return f"{value!r} is not a bucket name: give the name only, and put any path in s3_prefix"
    if (
        not _BUCKET.match(value)
        or ".." in value
        or _IP_ADDRESS.match(value)
        or value.startswith(("xn--", "sthree-"))
        or value.endswith(("-s3alias", "--ol-s3"))
    ):
        return (
            f"{value!r} is not a valid S3 bucket name: 3-63 characters of lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit"
        )
    return None


def _s3_prefix(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if not isinstance(value, str):
        return _type_error(value, "a string (may be empty)")
    if value.startswith("/"):
        return f"{value!r} starts with '/': S3 keys have no leading slash; use {value.lstrip('/')!r}"
    if len(value.encode()) > 980:
        return "is longer than 980 bytes: with the task id and extension the S3 key would pass 1024 bytes"
    return None


def _role_name(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if not isinstance(value, str):
        return _type_error(value, "an IAM role name")
    if value.startswith("arn:"):
        return f"{value!r} is an ARN: give the role's name only (for example 'vmimport')"
    if not _ROLE_NAME.match(value):
        return f"{value!r} is not an IAM role name: 1-64 characters of letters, digits and +=,.@_-"
    return None


def _description(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return _type_error(value, "a string")
    if len(value) > 255:
        return f"is {len(value)} characters long: ExportImage takes at most 255"
    return None


def _tags(value: Any, is_unknown: Callable[[Any], bool]) -> str | None:
    if not isinstance(value, Mapping):
        return _type_error(value, "a mapping of tag keys to string values")
    if len(value) > MAX_USER_TAGS:
        return f"has {len(value)} tags: at most {MAX_USER_TAGS} are allowed (AWS's 50 less the 4 the provider uses)"
    for key, tag_value in value.items():
        if not isinstance(key, str) or not key:
            return f"key {key!r} must be a non-empty string"
        if len(key) > 127:
            return f"key {key[:20]!r}... is {len(key)} characters long: tag keys take at most 127"
        if key.lower().startswith("aws:"):
            return f"key {key!r} starts with 'aws:', which AWS reserves: choose another key"
        if key.startswith(RESERVED_TAG_PREFIX):
            return f"key {key!r} starts with {RESERVED_TAG_PREFIX!r}, which this provider reserves"
        if is_unknown(tag_value):
            continue
        if not isinstance(tag_value, str):
            return f"value of {key!r} must be a string, got {type(tag_value).__name__} {tag_value!r}"
        if len(tag_value) > 256:
            return f"value of {key!r} is {len(tag_value)} characters long: tag values take at most 256"
    return None


def _region(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _REGION.match(value):
        return f"{value!r} is not an AWS region name like 'eu-west-1'"
    return None


def _wait_for_completion(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if not isinstance(value, bool):
        return _type_error(value, "true or false")
    return None


def _timeout_minutes(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _type_error(value, "a number of minutes")
    if not value > 0:
        return f"is {value}: it must be a positive number of minutes (for example 360)"
    return None


def _existing_task_id(value: Any, _u: Callable[[Any], bool]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TASK_ID.match(value):
        return f"{value!r} is not an export-image task id like export-ami-0123456789abcdef0"
    return None


_RULES: tuple[tuple[str, Callable[[Any, Callable[[Any], bool]], str | None]], ...] = (
    ("image_id", _image_id),
    ("disk_image_format", _disk_image_format),
    ("s3_bucket", _s3_bucket),
    ("s3_prefix", _s3_prefix),
    ("role_name", _role_name),
    ("description", _description),
    ("tags", _tags),
    ("region", _region),
    ("wait_for_completion", _wait_for_completion),
    ("timeout_minutes", _timeout_minutes),
    ("existing_task_id", _existing_task_id),
)
