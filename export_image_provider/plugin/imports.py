"""``pulumi import export-image:index:ImageExport NAME export-ami-...``: adopt a task started outside Pulumi.

The engine imports by calling Read with the id alone; the provider answers
with what the task's record and its object say. AWS's records carry no AMI id
and no role (see the facts file), and no format unless DescribeExportTasks
answers, so an import cannot know those: they are listed in the hidden
``import_unread`` property, left out of the imported inputs and outputs, and
the next ``up`` takes the program's values for them as no change (the plugin's
diff), where comparing with nothing would replace the export just adopted. That
``up`` updates the task in place: it gets the resource's identity tags and the
claim, as a create gives them (ownership.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..lifecycle import ExportFailed, adoptable
from ..ownership import NotYours, refuse_if_owned, user_tags
from ..spec import FORMATS

UNREAD = "import_unread"
# Never stored: lets the core build a spec for refresh and delete of a resource imported and not yet updated.
_STAND_IN = {"image_id": "ami-00000000", "disk_image_format": "VMDK"}


def read_for_import(task_id: str, gateway: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs, outputs) of the export task ``task_id`` as far as AWS tells; ExportFailed when it cannot be imported."""
    task = adoptable(task_id, gateway, "import", otherwise="")
    try:
        refuse_if_owned(task)
    except NotYours as refusal:
        raise ExportFailed(str(refusal).replace("existing_task_id: ", "import: ", 1)) from None
    inputs: dict[str, Any] = {"s3_bucket": task.s3_bucket, "s3_prefix": task.s3_prefix or "",
                              "tags": user_tags(task.tags), "region": gateway.region}
    if task.description:
        inputs["description"] = task.description
    if task.image_id:
        inputs["image_id"] = task.image_id
    location = gateway.export_location(task_id)
    fmt = location[0] if location else _format_of_object(task, gateway)
    if fmt:
        inputs["disk_image_format"] = fmt
    unread = [name for name in ("image_id", "disk_image_format", "role_name") if name not in inputs]
    inputs[UNREAD] = unread
    key = f"{task.s3_prefix or ''}{task_id}.{fmt.lower()}" if fmt else None
    image = gateway.head_object(task.s3_bucket, key) if key and task.status == "completed" else None
    completed = task.status == "completed"
    outputs = {
        **inputs,
        "export_image_task_id": task_id,
        "status": task.status,
        "status_message": None if completed else task.status_message,
        "progress": 100 if completed else task.progress,
        "s3_key": key,
        "s3_uri": f"s3://{task.s3_bucket}/{key}" if key else None,
        "s3_object_size": image.size if image else None,
        "s3_etag": image.etag if image else None,
        "s3_version_id": image.version_id if image else None,
        "s3_last_modified": image.last_modified if image else None,
    }
    return inputs, outputs


def _format_of_object(task: Any, gateway: Any) -> str | None:
    """A completed task's format from the object it wrote (``<prefix><task id>.<format>``), when no record says it."""
    if task.status != "completed" or not task.s3_bucket:
        return None
    for fmt in FORMATS:
        if gateway.object_exists(task.s3_bucket, f"{task.s3_prefix or ''}{task.task_id}.{fmt.lower()}"):
            return fmt
    return None


def unread(props: Mapping[str, Any]) -> list[str]:
    """The inputs an import could not read and no update has set since."""
    return list(props.get(UNREAD) or [])


def as_read(olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
    """``olds`` with what the import could not read taken from ``news``: for the diff, not a change."""
    return {**olds, **{name: news.get(name) for name in unread(olds)}}


def with_stand_ins(props: Mapping[str, Any]) -> dict[str, Any]:
    """``props`` the core can build a spec from, for reading or deleting an imported export not yet updated."""
    return {**props, **{name: _STAND_IN[name] for name in unread(props) if name in _STAND_IN and not props.get(name)}}


def without_stand_ins(outputs: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """The core's outputs without the stand-ins :func:`with_stand_ins` gave it."""
    return {k: v for k, v in outputs.items() if k not in unread(props)}
