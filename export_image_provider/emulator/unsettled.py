"""Every guess the emulator makes where AWS's documents and captures leave behaviour open.

This is the one place to look for (and change) what the emulator assumes about
AWS beyond the evidence in /work/shared/reference/ec2-export-image-facts.md.
It imports nothing, so the config, the task records, the world and the
backend can all read it; ``models.py`` re-exports it under the names it always
had. What *is* settled by evidence (no ImageId in task records, RoleName in
the ExportImage response only when passed, no Tags there when none were given,
``validating`` at "0") is coded where it applies and cites the facts file.
"""

from __future__ import annotations

UNSETTLED_ERROR_CODES = {
    "bucket_missing": "InvalidParameter",
    "bucket_other_region": "InvalidParameter",
    "bucket_kms": "InvalidParameter",
    "ami_not_owned": "NotExportable",
    "ami_export_in_progress": "IncorrectState",
    "too_many_active": "ResourceLimitExceeded",
    "cancel_not_cancellable": "IncorrectState",
    "bad_next_token": "InvalidPaginationToken",
}
"""Error codes for refusals whose code AWS does not document (facts: 'unsettled')."""

FINAL_TRANSFER_FRACTION = 0.97
"""From this elapsed fraction on the image is 'transferring its final image' and
CancelExportTask is refused like on a completed task."""

FAILED_STATUS = "deleted"
"""Failed export tasks end like failed import tasks: ``deleted`` + ``ClientError: ...``."""

CANCELLED_STATUS_MESSAGE: str | None = None
"""A cancelled task shows no StatusMessage while ``deleting`` and once ``deleted``."""

RECORD_RETENTION_SECONDS = 7 * 24 * 3600.0
"""How long an ended task stays visible (emulator clock): AWS does not document it for
exports; import tasks are documented to stay 7 days. Default of ``expire_after_seconds``."""

DELETING_SECONDS = 1.0
"""How long a cancelled task shows ``deleting`` before ``deleted``. Default of ``deleting_seconds``."""

CONVERTING_FROM_PROGRESS = 30
"""StatusMessage by Progress: "0" is ``validating`` (every capture), ``updating`` was seen
at "21" (CLI reference, user guide), ``converting`` at "80"/"85" (user guide, 2023
capture). Where ``updating`` turns into ``converting`` is a guess: from this Progress on."""

EXPORT_TASK_STATES = {"active": "active", "completed": "completed", "deleting": "cancelling", "deleted": "cancelled"}
"""DescribeExportTasks ``State`` (active | cancelling | cancelled | completed) of an
export-ami task, by its DescribeExportImageTasks ``Status``: the mapping is a guess."""

EXPORT_TASK_FORMAT_AS_REQUESTED = True
"""DescribeExportTasks ``ExportToS3Task.DiskImageFormat`` of an export-ami task: the
format as ExportImage was given it (upper case); instance exports show lower case."""

ROLE_PERMISSIONS = (
    ("s3:GetBucketLocation", "bucket"), ("s3:GetBucketAcl", "bucket"), ("s3:ListBucket", "bucket"),
    ("s3:PutObject", "object"), ("s3:GetObject", "object"),
    ("ec2:ModifySnapshotAttribute", "*"), ("ec2:CopySnapshot", "*"), ("ec2:RegisterImage", "*"),
    ("ec2:DescribeImages", "*"),
)
"""What the service role's policies must allow (facts: 'Prerequisites'); which of them an
export really needs, and when AWS checks them (at ExportImage, not later), is a guess."""

SERVICE_EXTERNAL_ID = "vmimport"
"""The sts:ExternalId VM Import/Export presents when it assumes the service role. A trust
statement with other condition keys than sts:ExternalId is taken as met (a guess)."""

BY_ID_NEXT_TOKEN_MODES = ("partial", "trailing", "stuck")
"""``by_id_next_token``: how a describe by ids carries a NextToken (seen on AWS, shape unknown):
``partial`` one record per page, ``trailing`` every record plus a token to an empty page,
``stuck`` the first record and the same token on every page (a paginator that never ends: the
provider must stop, not loop or read the missing records as gone)."""
