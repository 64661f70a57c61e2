"""ExportError: every AWS failure as the one readable line the user sees, with what to do about it.

The gateway (aws.py) translates every boto3/botocore failure here; the hints
name the known prerequisites of an export and the fix AWS's documents support.
"""

from __future__ import annotations

import botocore.exceptions

ENCRYPTED_AMI_HINT = (
    "AMIs with encrypted EBS snapshots cannot be exported, and no copy of the AMI or snapshot removes "
    "encryption: launch an instance from the AMI, copy its data onto new unencrypted EBS volumes, "
    "create an AMI from those volumes and export that, or fix image_id"
)
# Known prerequisites: (code, words in AWS's message) -> what the user should do.
_HINTS: tuple[tuple[str, str, str], ...] = (
    ("InvalidParameter", "service role", "create the service role as the README's 'IAM' section shows "
     "(trusted by vmie.amazonaws.com), or set role_name to one that exists"),
    ("InvalidParameter", "kms", "VM Import/Export cannot write to a bucket whose default encryption is SSE-KMS: "
     "use a bucket with SSE-S3 (AES256) default encryption, or fix s3_bucket"),
    ("InvalidParameter", "bucket", "create the bucket in the export's region first, or fix s3_bucket"),
    # VM Import/Export guide, "Considerations for image export": no image with encrypted EBS snapshots;
    # EBS guide, "Changing the encryption state": no copy removes encryption, data can move between volumes.
    ("InvalidParameter", "encrypted", ENCRYPTED_AMI_HINT),
    ("NotExportable", "another account", "only AMIs owned by the caller's account can be exported: "
     "copy the AMI into this account (ec2 copy-image) and export the copy, or fix image_id"),
    ("NotExportable", "", "AMIs with Marketplace or AWS-provided third-party software (such as Windows) "
     "cannot be exported: export an AMI built without it, or fix image_id"),
    ("InvalidAMIID.NotFound", "", "check image_id, and that the AMI lives in the export's region"),
    ("InvalidAMIID.Malformed", "", "check image_id: it looks like ami-0123456789abcdef0"),
    ("ResourceLimitExceeded", "", "the region's limit of concurrent export tasks is reached: "
     "wait for running exports or request a quota increase"),
    ("IdempotentParameterMismatch", "", "an earlier export used the same client token with other inputs"),
    ("UnauthorizedOperation", "", "grant the caller the permissions in the README's 'IAM' section"),
    ("AccessDenied", "", "grant the caller the permissions in the README's 'IAM' section"),
    ("NoSuchBucket", "", "create the bucket first, or fix s3_bucket"),
)


class ExportError(Exception):
    """An AWS call failed; ``str()`` is the one line the user sees."""

    def __init__(self, operation: str, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(operation, code, message, hint)
        self.operation = operation
        self.code = code
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        line = f"{self.operation} failed: {self.code}: {self.message}"
        return f"{line} ({self.hint})" if self.hint else line


def translate(operation: str, error: Exception) -> ExportError:
    """Turn any boto3/botocore failure into one readable :class:`ExportError`."""
    if isinstance(error, ExportError):
        return error
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        message = str(details.get("Message") or "").strip() or "no message"
        return ExportError(operation, code, message, _hint(code, message))
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return ExportError(operation, "NoCredentials", "no AWS credentials were found",
                           "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or aws:profile in stack config")
    if isinstance(error, botocore.exceptions.NoRegionError):
        return ExportError(operation, "NoRegion", "no AWS region is set",
                           "set the region argument, `pulumi config set aws:region REGION`, or AWS_REGION")
    if isinstance(error, botocore.exceptions.BotoCoreError):  # some, e.g. ParamValidationError, span lines
        return ExportError(operation, type(error).__name__, " ".join(str(error).split()))
    raise error


def _hint(code: str, message: str) -> str | None:
    lowered = message.lower()
    for hint_code, words, hint in _HINTS:
        if code == hint_code and words in lowered:
            return hint
    return None
