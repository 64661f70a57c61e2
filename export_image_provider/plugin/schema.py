"""The ``export-image`` package schema, generated from the code's own tables.

Nothing here is written twice: the inputs are spec.py's REPLACE_PROPERTIES,
UPDATE_PROPERTIES and provider.py's BEHAVIOUR_PROPERTIES, the outputs
provider.py's OUTPUT_PROPERTIES, the replacing inputs (``replaceOnChanges``)
spec.py's REPLACE_PROPERTIES, and the provider config stack_config.py's
honoured keys. What the tables cannot say (each property's type and one line of
description) is the two dicts below, and tests/test_plugin_schema.py fails when
a property lacks either. ``python -m export_image_provider.plugin.schema``
prints the schema as JSON (the Go SDK generator in tools/sdkgen reads it).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..provider import BEHAVIOUR_PROPERTIES, OUTPUT_PROPERTIES
from ..spec import DEFAULT_ROLE_NAME, DEFAULT_TIMEOUT_MINUTES, FORMATS, REPLACE_PROPERTIES, UPDATE_PROPERTIES
from ..stack_config import KEYS
from .values import camel

PACKAGE = "export-image"
VERSION = "0.1.0"
RESOURCE_TOKEN = f"{PACKAGE}:index:ImageExport"

INPUT_PROPERTIES = (*REPLACE_PROPERTIES, *UPDATE_PROPERTIES, *BEHAVIOUR_PROPERTIES)
REQUIRED_INPUTS = ("image_id", "disk_image_format", "s3_bucket")
# Outputs every ImageExport in a state has, an imported one included (AWS's records carry no AMI id or role).
REQUIRED_OUTPUTS = ("export_image_task_id", "status", "s3_key", "s3_uri", "s3_bucket", "disk_image_format")

_STRING = {"type": "string"}
TYPES: dict[str, dict[str, Any]] = {
    "image_id": _STRING,
    "disk_image_format": _STRING,
    "s3_bucket": _STRING,
    "s3_prefix": _STRING,
    "role_name": _STRING,
    "description": _STRING,
    "tags": {"type": "object", "additionalProperties": _STRING},
    "region": _STRING,
    "wait_for_completion": {"type": "boolean"},
    "timeout_minutes": {"type": "number"},
    "existing_task_id": _STRING,
    "export_image_task_id": _STRING,
    "status": _STRING,
    "status_message": _STRING,
    "progress": {"type": "integer"},
    "s3_key": _STRING,
    "s3_uri": _STRING,
    "s3_object_size": {"type": "integer"},
    "s3_etag": _STRING,
    "s3_version_id": _STRING,
    "s3_last_modified": _STRING,
}

DESCRIPTIONS: dict[str, str] = {
    "image_id": "The AMI to export: `ami-` and 8 or 17 hex digits. It must be exportable (not encrypted, "
                "not from the Marketplace, owned by the caller).",
    "disk_image_format": f"The disk image format: {', '.join(FORMATS)} (any case; upper case in the state).",
    "s3_bucket": "An existing bucket in the export's account and region (not SSE-KMS) that receives the image.",
    "s3_prefix": "Prefix of the image's key, used verbatim (no `/` is added); no leading `/`. Default: empty.",
    "role_name": f"The service role VM Import/Export assumes. Default: `{DEFAULT_ROLE_NAME}`.",
    "description": "A description of the export task, at most 255 characters.",
    "tags": "Tags on the export-image task; changed in place. Keys up to 127 characters, not `aws:`; at most 46.",
    "region": "The region the export runs in. Default: the provider's `export-image:region`, else AWS_REGION.",
    "wait_for_completion": "Whether `up` waits until the image is in S3 (default true). With false, `up` returns "
                           "once the task is started and `refresh` follows it.",
    "timeout_minutes": f"How long `up` waits for a free slot and the export (default {DEFAULT_TIMEOUT_MINUTES:g}); "
                       "the resource's customTimeouts bound it too. On timeout the task is kept in the state "
                       "as not yet initialised and the next `up` waits for it again.",
    "existing_task_id": "Adopt an export task started outside Pulumi (`export-ami-...`) instead of starting one; "
                        "`pulumi import` does the same.",
    "export_image_task_id": "The export task's id, `export-ami-...`; also the resource's id.",
    "status": "`active` or `completed`.",
    "status_message": "AWS's status message while the export is active (`validating`, `converting`, ...).",
    "progress": "Percent done while active, 100 once completed.",
    "s3_key": "Where AWS writes the image: the prefix, the task id and the format's extension.",
    "s3_uri": "`s3://bucket/key` of the image.",
    "s3_object_size": "The image's size in bytes, once completed.",
    "s3_etag": "The image's ETag (without quotes), once completed.",
    "s3_version_id": "The image's S3 version id when the bucket versions objects.",
    "s3_last_modified": "When S3 stored the image, ISO 8601 UTC.",
}

# Provider config: stack_config.py's honoured keys (the same names pulumi-aws uses), under `export-image:`.
SECRET_CONFIG = ("accessKey", "secretKey", "token")
_CONFIG_TYPES: dict[str, dict[str, Any]] = {
    "skipCredentialsValidation": {"type": "boolean"},
    "allowedAccountIds": {"type": "array", "items": _STRING},
    "forbiddenAccountIds": {"type": "array", "items": _STRING},
    "assumeRoles": {"type": "array", "items": {"$ref": "pulumi.json#/Any"}},
    "assumeRole": {"$ref": "pulumi.json#/Any"},
}
CONFIG_KEYS = tuple(key for key, rule in KEYS.items() if rule.honoured)


def _property(name: str) -> dict[str, Any]:
    return {**TYPES[name], "description": DESCRIPTIONS[name]}


def _config_property(key: str) -> dict[str, Any]:
    spec: dict[str, Any] = {**_CONFIG_TYPES.get(key, _STRING), "description": KEYS[key].note}
    if key in SECRET_CONFIG:
        spec["secret"] = True
    return spec


def schema() -> dict[str, Any]:
    """The package schema (https://www.pulumi.com/docs/iac/extending-pulumi/schema/) as a dict."""
    inputs = {camel(name): _property(name) for name in INPUT_PROPERTIES}
    outputs = {camel(name): _property(name) for name in (*INPUT_PROPERTIES, *OUTPUT_PROPERTIES)}
    config = {key: _config_property(key) for key in CONFIG_KEYS}
    return {
        "name": PACKAGE,
        "version": VERSION,
        "displayName": "EC2 Image Export",
        "description": "EC2 AMI exports (ExportImage) to S3 as VMDK, RAW or VHD disk images.",
        "keywords": ["pulumi", "aws", "ec2", "ami", "export", "category/cloud", "kind/native"],
        "license": "Apache-2.0",
        "repository": "https://github.com/export-image-provider/export-image-provider",
        "meta": {"moduleFormat": "(.*)"},
        "config": {"variables": config},
        "provider": {
            "description": "The export-image provider: which AWS account and region exports run in.",
            "inputProperties": config,
        },
        "resources": {
            RESOURCE_TOKEN: {
                "description": "An EC2 AMI exported to S3 as a VMDK, RAW or VHD disk image. `up` starts the export "
                               "and waits until the image is in S3; changing the image, format or location replaces "
                               "it, changing tags updates it in place; `destroy` cancels a running export or deletes "
                               "the image.",
                "inputProperties": inputs,
                "requiredInputs": [camel(name) for name in REQUIRED_INPUTS],
                "properties": outputs,
                "required": [camel(name) for name in REQUIRED_OUTPUTS],
                "replaceOnChanges": [camel(name) for name in REPLACE_PROPERTIES],
            },
        },
        "language": {
            "go": {"importBasePath": "github.com/export-image-provider/export-image-provider/sdk/go/exportimage",
                   "generateResourceContainerTypes": True},
            "nodejs": {"packageName": "@export-image-provider/export-image"},
            "python": {"packageName": "pulumi_export_image"},
            "csharp": {"rootNamespace": "ExportImage"},
        },
    }


def schema_json() -> str:
    return json.dumps(schema(), indent=2, sort_keys=False)


if __name__ == "__main__":
    sys.stdout.write(schema_json() + "\n")
