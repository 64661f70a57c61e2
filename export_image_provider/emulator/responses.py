"""EC2 query-API handlers for export-image tasks, grafted onto moto's EC2Response.

moto dispatches an EC2 ``Action`` to the EC2Response method of the same name in
snake_case and serialises the returned ``ActionResult`` (and raised
``EC2ClientError``) with botocore's EC2 model, so the XML is what boto3 expects
of EC2. The methods of ``ExportImageResponse`` are copied onto EC2Response by
``server.install``; the wrappers of existing actions reach moto's own
implementation through ``ORIGINALS``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.exceptions import DryRunClientError, EC2ClientError
from werkzeug.exceptions import HTTPException

from .faults import render_error

from .models import TASK_RESOURCE_TYPE, ExportBackends, ExportError, ExportRequest
from .world import MotoWorld, check_pass_role, record_created_image, record_registered_image

export_backends = ExportBackends(MotoWorld())
"""The process-wide export backends, beside moto's own process-wide backends."""

ORIGINALS: dict[str, Callable[[Any], Any]] = {}
"""moto's EC2Response methods that ``server.install`` wrapped, by name."""

TASK_ID_PREFIX = "export-ami-"
NEW_ACTIONS = ("export_image", "describe_export_image_tasks", "cancel_export_task", "describe_export_tasks",
               "_determine_resource")
WRAPPED_ACTIONS = ("create_tags", "delete_tags", "register_image", "create_image")


def _ec2_errors(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Turn a models.ExportError into moto's EC2 error, serialised as EC2 XML, HTTP 400."""

    @functools.wraps(method)
    def wrapper(self: Any) -> Any:
        try:
            return method(self)
        except ExportError as exc:
            if exc.status == 403:
                raise Ec2Forbidden(exc.code, exc.message) from None
            raise EC2ClientError(exc.code, exc.message) from None

    wrapper.__export_emulator__ = True  # type: ignore[attr-defined]
    return wrapper


class Ec2Forbidden(HTTPException):
    """An EC2 XML error answered HTTP 403 (moto's EC2 errors are all 400): UnauthorizedOperation."""

    code = 403

    def __init__(self, error_code: str, message: str):
        super().__init__(description=render_error("ec2", error_code, message)[2].decode())

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [("Content-Type", "text/xml;charset=UTF-8")]


def _required(response: Any, name: str) -> Any:
    value = response._get_param(name)
    if value in (None, ""):
        raise ExportError("MissingParameter", f"The request must contain the parameter {name}")
    return value


def _tag_specifications(specs: list[dict[str, Any]]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for spec in specs or []:
        resource_type = spec.get("ResourceType")
        if resource_type != TASK_RESOURCE_TYPE:
            msg = f"'{resource_type}' is not a valid taggable resource type for this operation."
            raise ExportError("InvalidParameterValue", msg)
        for tag in spec.get("Tags") or []:
            tags[tag.get("Key", "")] = tag.get("Value", "")
    return tags


def _backend(response: Any) -> Any:
    return export_backends.get(response.current_account, response.region)


def _dry_run(response: Any) -> bool:
    return bool(response._get_param("DryRun", False))


def _int_param(response: Any, name: str) -> int | None:
    value = response._get_param(name)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExportError("InvalidParameterValue", f"Value ({value}) for parameter {name} is invalid. "
                          "Expecting an integer") from None


def _split_ids(ids: list[str]) -> tuple[list[str], list[str]]:
    ours = [i for i in ids if i.startswith(TASK_ID_PREFIX)]
    return ours, [i for i in ids if not i.startswith(TASK_ID_PREFIX)]


def _call_original_with_resources(response: Any, name: str, resources: list[str]) -> Any:
    saved = response.params.get("Resources")
    response.params["Resources"] = resources
    try:
        return ORIGINALS[name](response)
    finally:
        response.params["Resources"] = saved


class ExportImageResponse:
    """The handlers; ``self`` is moto's EC2Response at run time."""

    _get_param: Callable[..., Any]
    params: dict[str, Any]
    current_account: str
    region: str

    @_ec2_errors
    def export_image(self) -> ActionResult:
        location = _required(self, "S3ExportLocation")
        bucket = location.get("S3Bucket") if isinstance(location, dict) else None
        if not bucket:
            raise ExportError("MissingParameter", "The request must contain the parameter S3ExportLocation.S3Bucket")
        request = ExportRequest(
            image_id=_required(self, "ImageId"),
            disk_image_format=_required(self, "DiskImageFormat"),
            s3_bucket=bucket,
            s3_prefix=location.get("S3Prefix"),
            role_name=self._get_param("RoleName"),
            description=self._get_param("Description"),
            tags=_tag_specifications(self._get_param("TagSpecifications", [])),
            client_token=self._get_param("ClientToken"),
        )
        if export_backends.config.caller_policy:
            check_pass_role(self, request.role_name or "vmimport")
        result = _backend(self).export_image(request, dry_run=_dry_run(self))
        if result is None:
            raise DryRunClientError()
        return ActionResult(result)

    @_ec2_errors
    def describe_export_image_tasks(self) -> ActionResult:
        filters = {f.get("Name"): f.get("Values", []) for f in self._get_param("Filters", [])}
        tasks, token = _backend(self).describe(
            task_ids=self._get_param("ExportImageTaskIds", []),
            filters=filters,
            max_results=_int_param(self, "MaxResults"),
            next_token=self._get_param("NextToken"),
        )
        if _dry_run(self):
            raise DryRunClientError()
        result: dict[str, Any] = {"ExportImageTasks": tasks}
        if token:
            result["NextToken"] = token
        return ActionResult(result)

    @_ec2_errors
    def cancel_export_task(self) -> EmptyResult:
        _backend(self).cancel(_required(self, "ExportTaskId"))  # CancelExportTask has no DryRun parameter
        return EmptyResult()

    @_ec2_errors
    def describe_export_tasks(self) -> ActionResult:
        """The older call; lists export-ami tasks (the emulator has no instance exports)."""
        tasks = _backend(self).describe_export_tasks(self._get_param("ExportTaskIds", []))
        if _dry_run(self):
            raise DryRunClientError()
        return ActionResult({"ExportTasks": tasks})

    def _determine_resource(self) -> str:
        """The resource moto's IAM access control checks: an export-image-task ARN for its tags."""
        if self._get_action() in ("CreateTags", "DeleteTags"):  # type: ignore[attr-defined]
            ours, rest = _split_ids(self._get_param("Resources", []))
            if ours and not rest:
                return f"arn:aws:ec2:{self.region}:{self.current_account}:{TASK_RESOURCE_TYPE}/{ours[0]}"
        return "*"

    @_ec2_errors
    def create_tags(self) -> Any:
        ours, rest = _split_ids(self._get_param("Resources", []))
        if not ours:
            return ORIGINALS["create_tags"](self)
        tags = {t.get("Key", ""): t.get("Value", "") for t in self._get_param("Tags", [])}
        if _dry_run(self):
            _backend(self).create_tags(ours, tags, dry_run=True)
            raise DryRunClientError()
        if rest:
            _call_original_with_resources(self, "create_tags", rest)
        _backend(self).create_tags(ours, tags)
        return EmptyResult()

    @_ec2_errors
    def delete_tags(self) -> Any:
        ours, rest = _split_ids(self._get_param("Resources", []))
        if not ours:
            return ORIGINALS["delete_tags"](self)
        tags = self._get_param("Tags")
        if _dry_run(self):
            _backend(self).delete_tags(ours, tags, dry_run=True)
            raise DryRunClientError()
        if rest:
            _call_original_with_resources(self, "delete_tags", rest)
        _backend(self).delete_tags(ours, tags)
        return EmptyResult()

    @_ec2_errors
    def register_image(self) -> Any:
        """moto ignores BlockDeviceMappings; remember their snapshots to know if the AMI is encrypted."""
        mappings = self._get_param("BlockDeviceMappings", []) or []
        snapshot_ids = [m["Ebs"]["SnapshotId"] for m in mappings if (m.get("Ebs") or {}).get("SnapshotId")]
        ec2 = self.ec2_backend  # type: ignore[attr-defined]
        for snapshot_id in snapshot_ids:
            ec2.get_snapshot(snapshot_id)
        result = ORIGINALS["register_image"](self)
        if isinstance(result, ActionResult) and isinstance(result.result, dict):
            record_registered_image(ec2, result.result["ImageId"], snapshot_ids)
        return result

    @_ec2_errors
    def create_image(self) -> Any:
        """Remember what moto drops: encrypted volumes and inherited product codes of the instance."""
        result = ORIGINALS["create_image"](self)
        if isinstance(result, ActionResult) and isinstance(result.result, dict):
            record_created_image(self.ec2_backend, result.result["ImageId"])  # type: ignore[attr-defined]
        return result


ExportImageResponse._determine_resource.__export_emulator__ = True  # type: ignore[attr-defined]
