"""The AWS gateway: the only module that talks to boto3.

Every call the provider makes to EC2 and S3 is a method here, and every error
it can raise leaves as one :class:`ExportError` whose text is one readable line:
the operation, the AWS code, AWS's message and, for the known prerequisites, what
to do about it.

Clients are created inside the provider process, never held by the pickled
provider object, and cached per (service, region, credentials source) behind a lock: boto3's
session is not safe for creating clients from several threads at once (boto3
issue 1592), while the clients themselves are. Endpoints come from boto3's own
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_EC2`` / ``AWS_ENDPOINT_URL_S3`` support;
retries of throttling and 5xx come from botocore's ``standard`` retry mode.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from . import __version__
from .batching import BATCH_WINDOW, BATCH_WINDOW_ENV, DescribeBatcher
from .credentials import assumed_session
from .errors import ExportError, translate
from .image import S3Object, version_delete_hint
from .spec import ExportSpec
from .stack_config import AssumeRole

TASK_ID_PREFIX = "export-ami-"
MAX_DESCRIBE_IDS = 200

_BOTOCORE_CONFIG = botocore.config.Config(
    retries={"mode": "standard", "max_attempts": 10},
    user_agent_extra=f"export-image-provider/{__version__}",
    connect_timeout=10,
    read_timeout=60,
)

_CLIENT_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, str | None, AwsAuth], Any] = {}
_SESSIONS: dict[AwsAuth, boto3.session.Session] = {}
_BATCHERS: dict[tuple[str, AwsAuth], DescribeBatcher] = {}
_ACCOUNTS: dict[tuple[str, AwsAuth], str] = {}

@dataclass(frozen=True)
class ExportTask:
    """One export-image task as DescribeExportImageTasks reports it."""

    task_id: str
    status: str
    status_message: str | None = None
    progress: int | None = None
    image_id: str | None = None
    description: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_aws(cls, record: Mapping[str, Any]) -> ExportTask:
        location = record.get("S3ExportLocation") or {}
        progress = record.get("Progress")
        return cls(
            task_id=record["ExportImageTaskId"],
            status=record.get("Status", ""),
            status_message=record.get("StatusMessage") or None,
            progress=int(progress) if progress not in (None, "") else None,
            image_id=record.get("ImageId"),
            description=record.get("Description") or None,
            s3_bucket=location.get("S3Bucket"),
            s3_prefix=location.get("S3Prefix", ""),
            tags={t["Key"]: t.get("Value", "") for t in record.get("Tags") or ()},
        )


@dataclass(frozen=True)
class AwsAuth:
    """Where credentials come from: a profile or keys from stack config (None fields mean boto3's chain),
    then the roles of ``aws:assumeRoles`` assumed in turn.

    Lives only in the provider process (the provider pickles to nothing); hashable,
    as clients are cached by it, and its repr never shows a key.
    """

    profile: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    assume_roles: tuple[AssumeRole, ...] = ()
    sts_region: str | None = None


Profile = AwsAuth | str | None


def _auth(profile: Profile) -> AwsAuth:
    return profile if isinstance(profile, AwsAuth) else AwsAuth(profile=profile)


def _session(profile: Profile) -> boto3.session.Session:
    auth = _auth(profile)
    session = _SESSIONS.get(auth)
    if session is None:
        session = boto3.session.Session(
            profile_name=auth.profile,
            aws_access_key_id=auth.access_key,
            aws_secret_access_key=auth.secret_key,
            aws_session_token=auth.token,
        )
        if auth.assume_roles:
            session = assumed_session(session, auth.assume_roles, auth.profile, auth.sts_region, _BOTOCORE_CONFIG)
        _SESSIONS[auth] = session
    return session


def _client(service: str, region: str | None, profile: Profile) -> Any:
    key = (service, region, _auth(profile))
    client = _CLIENTS.get(key)
    if client is None:
        with _CLIENT_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                try:
                    client = _session(profile).client(service, region_name=region, config=_BOTOCORE_CONFIG)
                except Exception as error:  # noqa: BLE001 - translate() re-raises what it does not know
                    raise translate(f"create {service} client", error) from error
                _CLIENTS[key] = client
    return client


def resolve_region(region: str | None, profile: Profile) -> str:
    """The region an export runs in: the argument, else the profile/environment default."""
    if region:
        return region
    with _CLIENT_LOCK:
        try:
            found = _session(profile).region_name
        except Exception as error:  # noqa: BLE001
            raise translate("resolve region", error) from error
    if not found:
        raise translate("resolve region", botocore.exceptions.NoRegionError())
    return found


class AwsGateway:
    """EC2 and S3 calls for exports in one region, each translated to :class:`ExportError`."""

    def __init__(self, region: str, profile: Profile = None) -> None:
        self.region = region
        self.profile = _auth(profile)

    @property
    def ec2(self) -> Any:
        return _client("ec2", self.region, self.profile)

    @property
    def s3(self) -> Any:
        return _client("s3", self.region, self.profile)

    @property
    def account_id(self) -> str:
        """The caller's account: export buckets must belong to it, so S3 calls name it as the owner."""
        key = (self.region, self.profile)
        account = _ACCOUNTS.get(key)
        if account is None:
            try:
                account = _client("sts", self.region, self.profile).get_caller_identity()["Account"]
            except Exception as error:  # noqa: BLE001
                raise translate("GetCallerIdentity", error) from error
            _ACCOUNTS[key] = account
        return account

    def start_export(self, spec: ExportSpec, client_token: str, tags: Mapping[str, str]) -> ExportTask:
        request: dict[str, Any] = {
            "ImageId": spec.image_id,
            "DiskImageFormat": spec.disk_image_format,
            "S3ExportLocation": {"S3Bucket": spec.s3_bucket, "S3Prefix": spec.s3_prefix},
            "RoleName": spec.role_name,
            "ClientToken": client_token,
            "TagSpecifications": [
                {"ResourceType": "export-image-task", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ],
        }
        if spec.description is not None:
            request["Description"] = spec.description
        try:
            return ExportTask.from_aws(self.ec2.export_image(**request))
        except Exception as error:  # noqa: BLE001
            raise translate("ExportImage", error) from error

    def describe(self, task_id: str) -> ExportTask | None:
        """The task, or None when AWS no longer knows it.

        Describes of single tasks from concurrent operations (a refresh reads
        every export at once; many creates poll at once) are answered by one
        DescribeExportImageTasks call per batch.
        """
        window = float(os.environ.get(BATCH_WINDOW_ENV, BATCH_WINDOW))
        if window <= 0:
            return self.describe_many([task_id]).get(task_id)
        key = (self.region, self.profile)
        with _CLIENT_LOCK:
            batcher = _BATCHERS.get(key)
            if batcher is None:
                batcher = _BATCHERS[key] = DescribeBatcher(self.describe_many, window)
        return batcher.describe(task_id)

    def describe_many(self, task_ids: Iterable[str]) -> dict[str, ExportTask]:
        """The known tasks among ``task_ids``, by id; ids AWS does not know are left out.

        AWS rejects a whole request when one id is unknown, so such a batch is
        split and retried until the unknown ids are isolated.
        """
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, ExportTask] = {}
        for start in range(0, len(ids), MAX_DESCRIBE_IDS):
            found.update(self._describe_batch(ids[start:start + MAX_DESCRIBE_IDS]))
        return found

    def _describe_batch(self, ids: list[str]) -> dict[str, ExportTask]:
        if not ids:
            return {}
        try:
            return self._follow_pages(ids)
        except botocore.exceptions.ClientError as error:
            if not error.response.get("Error", {}).get("Code", "").startswith("InvalidExportTaskID"):
                raise translate("DescribeExportImageTasks", error) from error
            if len(ids) == 1:
                return {}
            middle = len(ids) // 2
            return {**self._describe_batch(ids[:middle]), **self._describe_batch(ids[middle:])}
        except Exception as error:  # noqa: BLE001
            raise translate("DescribeExportImageTasks", error) from error

    def _follow_pages(self, ids: list[str]) -> dict[str, ExportTask]:
        """Describe by ids; AWS may add a NextToken even then (facts file): follow it until every id is in.

        Once every id has its record the token is ignored; a token that comes back
        twice while ids are still missing is an error, never an empty answer (which
        would read as 'the task is gone').
        """
        found: dict[str, ExportTask] = {}
        request: dict[str, Any] = {"ExportImageTaskIds": ids}
        seen: set[str] = set()
        while True:
            page = self.ec2.describe_export_image_tasks(**request)
            found.update((t.task_id, t) for t in map(ExportTask.from_aws, page.get("ExportImageTasks") or ()))
            token = page.get("NextToken")
            if not token or set(ids) <= found.keys():
                return found
            if token in seen:
                raise ExportError("DescribeExportImageTasks", "RepeatedNextToken",
                                  f"AWS returned the NextToken {token[:20]}... twice for ids {', '.join(ids[:3])}")
            seen.add(token)
            request["NextToken"] = token

    def export_location(self, task_id: str) -> tuple[str, str, str] | None:
        """(DiskImageFormat, S3Bucket, S3Key) of an export-ami task from DescribeExportTasks, or None.

        DescribeExportImageTasks records carry no format (and often no ImageId);
        the older DescribeExportTasks lists export-ami tasks with their
        ExportToS3Task. None when AWS does not know the task there or the caller
        may not call it (ec2:DescribeExportTasks is not in the documented caller policy).
        """
        try:
            tasks = self.ec2.describe_export_tasks(ExportTaskIds=[task_id]).get("ExportTasks") or []
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code.startswith("InvalidExportTaskID") or code in ("UnauthorizedOperation", "AccessDenied"):
                return None
            raise translate("DescribeExportTasks", error) from error
        except Exception as error:  # noqa: BLE001
            raise translate("DescribeExportTasks", error) from error
        target = next((t.get("ExportToS3Task") or {} for t in tasks if t.get("ExportTaskId") == task_id), None)
        if not target or not target.get("DiskImageFormat"):
            return None
        return str(target["DiskImageFormat"]).upper(), target.get("S3Bucket", ""), target.get("S3Key", "")

    def tasks_tagged(self, key: str, value: str) -> Iterator[ExportTask]:
        """Active and completed tasks carrying tag ``key=value``.

        DescribeExportImageTasks documents only the ``task-state`` filter, so tags
        are matched here rather than by a ``tag:`` filter AWS might ignore.
        """
        try:
            pages = self.ec2.get_paginator("describe_export_image_tasks").paginate(
                Filters=[{"Name": "task-state", "Values": ["active", "completed"]}],
                PaginationConfig={"PageSize": 500},
            )
            for page in pages:
                for record in page["ExportImageTasks"]:
                    task = ExportTask.from_aws(record)
                    if task.tags.get(key) == value and task.status in ("active", "completed"):
                        yield task
        except Exception as error:  # noqa: BLE001
            raise translate("DescribeExportImageTasks", error) from error

    def cancel(self, task_id: str) -> str:
        """Cancel a task: 'cancelled', 'gone' when AWS no longer knows it, or 'finished' when too late."""
        try:
            self.ec2.cancel_export_task(ExportTaskId=task_id)
            return "cancelled"
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code.startswith("InvalidExportTaskID") and code.endswith("NotFound"):
                return "gone"
            if code == "IncorrectState":
                return "finished"
            raise translate("CancelExportTask", error) from error
        except Exception as error:  # noqa: BLE001
            raise translate("CancelExportTask", error) from error

    def set_tags(self, task_id: str, tags: Mapping[str, str]) -> None:
        if not tags:
            return
        try:
            self.ec2.create_tags(Resources=[task_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        except Exception as error:  # noqa: BLE001
            raise translate("CreateTags", error) from error

    def remove_tags(self, task_id: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if not keys:
            return
        try:
            self.ec2.delete_tags(Resources=[task_id], Tags=[{"Key": k} for k in keys])
        except Exception as error:  # noqa: BLE001
            raise translate("DeleteTags", error) from error

    def object_exists(self, bucket: str, key: str) -> bool:
        return self.head_object(bucket, key) is not None

    def head_object(self, bucket: str, key: str, version_id: str | None = None) -> S3Object | None:
        """The object at ``key`` (its current version, or ``version_id``), or None when there is none.

        Only a 404 means gone: a 403 (no s3:ListBucket, another owner) raises,
        so that a refresh never drops an export it merely cannot see.
        """
        request = {"Bucket": bucket, "Key": key, "ExpectedBucketOwner": self.account_id}
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            return S3Object.from_head(self.s3.head_object(**request))
        except botocore.exceptions.ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or error.response.get("Error", {}).get("Code") in _GONE_CODES:
                return None
            raise translate("HeadObject", error) from error
        except Exception as error:  # noqa: BLE001
            raise translate("HeadObject", error) from error

    def delete_object(self, bucket: str, key: str, version_id: str | None = None) -> None:
        """Delete the object at ``key``; with ``version_id``, exactly that version, leaving no delete marker.

        A refused delete of a version (Object Lock retention or legal hold, MFA
        delete, or no s3:DeleteObjectVersion) leaves as one line saying what to do.
        S3 answers a locked version with 403 AccessDenied (ceph/s3-tests'
        object-lock cases, which run against AWS); for MFA delete AWS documents
        only that "the request fails" (S3 User Guide, UsingMFADelete), and S3
        clones answer 403. Unsettled, so guessed here: any 403, or an error
        naming MFA, on a version delete gets the hint.
        """
        request = {"Bucket": bucket, "Key": key, "ExpectedBucketOwner": self.account_id}
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            self.s3.delete_object(**request)
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in _GONE_CODES:
                return
            failure = translate("DeleteObject", error)
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if version_id is not None and (status == 403 or "mfa" in f"{failure.code} {failure.message}".lower()):
                held = self._protection(bucket, key, version_id)
                failure.hint = version_delete_hint(bucket, key, version_id, held)
            raise failure from error
        except Exception as error:  # noqa: BLE001
            raise translate("DeleteObject", error) from error

    def _protection(self, bucket: str, key: str, version_id: str) -> str | None:
        """What Object Lock holds the version with, as HeadObject shows it to a caller allowed to see it."""
        try:
            found = self.head_object(bucket, key, version_id)
        except ExportError:
            return None
        return found.protection if found is not None else None


_GONE_CODES = ("404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion")
