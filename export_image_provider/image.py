"""The exported image in S3: what HeadObject says about it, and what to do when S3 will not delete it.

Pure data and text, no boto3: the gateway (aws.py) fills :class:`S3Object` from
HeadObject; the lifecycle compares the one in state with the one at the key to
tell the export's own image from one written over it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class S3Object:
    """One version of an exported image as HeadObject reports it."""

    size: int
    etag: str  # without S3's surrounding quotes
    version_id: str | None  # None when the bucket has never versioned
    last_modified: str  # ISO 8601, UTC
    protection: str | None = None  # Object Lock retention or legal hold, when S3 shows it

    @classmethod
    def from_head(cls, answer: Mapping[str, Any]) -> S3Object:
        modified = answer.get("LastModified")
        held = []
        if answer.get("ObjectLockMode"):
            until = answer.get("ObjectLockRetainUntilDate")
            held.append(f"{answer['ObjectLockMode']} retention until {_iso(until) if until else 'unknown'}")
        if answer.get("ObjectLockLegalHoldStatus") == "ON":
            held.append("a legal hold")
        return cls(
            size=int(answer.get("ContentLength") or 0),
            etag=str(answer.get("ETag") or "").strip('"'),
            version_id=answer.get("VersionId") or None,
            last_modified=_iso(modified) if modified else "",
            protection=" and ".join(held) or None,
        )


def _iso(moment: Any) -> str:
    if hasattr(moment, "astimezone"):
        return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(moment)


def version_delete_hint(bucket: str, key: str, version_id: str, held: str | None) -> str:
    """What to do when S3 refuses to delete the export's version (it answers 403 AccessDenied for each cause)."""
    keep = "or keep the image: set the retain_on_delete resource option, run pulumi up, then destroy"
    if held:
        return (f"s3://{bucket}/{key} version {version_id} is held by Object Lock ({held}): "
                f"destroy again once it is released, {keep}")
    return (f"permanently deleting s3://{bucket}/{key} version {version_id} needs s3:DeleteObjectVersion, "
            "no Object Lock retention or legal hold on it, and, in a bucket with MFA delete, the root user with "
            f"an MFA code (aws s3api delete-object --version-id {version_id} --mfa ...): fix that and destroy again, "
            f"{keep}")
