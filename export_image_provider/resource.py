"""ImageExport: the resource a Pulumi program declares, and its args object.

Like pulumi-aws resources, it takes either keyword arguments or an
:class:`ImageExportArgs`, and every input may be a plain value or a
``pulumi.Output``. The dynamic provider only reports outputs for keys present in
the props, so every output is declared here as ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

import pulumi
import pulumi.dynamic

from .provider import OUTPUT_PROPERTIES, ImageExportProvider
from .stack_identity import stack_identity


@dataclass
class ImageExportArgs:
    """The inputs of an :class:`ImageExport`; see the README for each one."""

    image_id: pulumi.Input[str]
    disk_image_format: pulumi.Input[str]
    s3_bucket: pulumi.Input[str]
    s3_prefix: Optional[pulumi.Input[str]] = None
    role_name: Optional[pulumi.Input[str]] = None
    description: Optional[pulumi.Input[str]] = None
    tags: Optional[pulumi.Input[Mapping[str, pulumi.Input[str]]]] = None
    region: Optional[pulumi.Input[str]] = None
    wait_for_completion: Optional[pulumi.Input[bool]] = None
    timeout_minutes: Optional[pulumi.Input[float]] = None
    existing_task_id: Optional[pulumi.Input[str]] = None


class ImageExport(pulumi.dynamic.Resource, module="export_image_provider", name="ImageExport"):
    """An EC2 AMI exported to S3 as a VMDK, RAW or VHD disk image.

    ``pulumi up`` starts the export and (by default) waits until the image is in
    S3; changing the image, format or location replaces it, changing tags updates
    it in place; ``pulumi destroy`` cancels a running export or deletes the image.
    """

    image_id: pulumi.Output[str]
    disk_image_format: pulumi.Output[str]
    s3_bucket: pulumi.Output[str]
    s3_prefix: pulumi.Output[str]
    role_name: pulumi.Output[str]
    description: pulumi.Output[Optional[str]]
    tags: pulumi.Output[dict[str, str]]
    region: pulumi.Output[str]
    wait_for_completion: pulumi.Output[bool]
    timeout_minutes: pulumi.Output[float]
    existing_task_id: pulumi.Output[Optional[str]]
    export_image_task_id: pulumi.Output[str]
    status: pulumi.Output[str]
    status_message: pulumi.Output[Optional[str]]
    progress: pulumi.Output[Optional[int]]
    s3_key: pulumi.Output[str]
    s3_uri: pulumi.Output[str]
    s3_object_size: pulumi.Output[Optional[int]]
    s3_etag: pulumi.Output[Optional[str]]
    s3_version_id: pulumi.Output[Optional[str]]
    s3_last_modified: pulumi.Output[Optional[str]]

    def __init__(
        self,
        resource_name: str,
        args: Optional[ImageExportArgs] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
        **kwargs: Any,
    ) -> None:
        if args is not None and kwargs:
            raise TypeError("ImageExport takes either an ImageExportArgs or keyword arguments, not both")
        args = args if args is not None else ImageExportArgs(**kwargs)
        props: dict[str, Any] = {f.name: getattr(args, f.name) for f in fields(args)}
        props["resource_key"] = f"{pulumi.get_project()}/{pulumi.get_stack()}/{resource_name}"
        props["stack_identity"] = stack_identity()
        props.update(dict.fromkeys(OUTPUT_PROPERTIES))
        super().__init__(ImageExportProvider(), resource_name, props, opts)
