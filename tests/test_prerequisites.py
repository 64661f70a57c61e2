"""VmImportRole and examples/with-prerequisites, under Pulumi's unit-test mocks.

The AWS resource plugin cannot be installed here, so the example program runs
against ``pulumi.runtime.set_mocks``: the mocks return plausible ids and
outputs for the aws resources and the ImageExport dynamic resource, and a
monitor subclass records each registration's inputs and dependencies. The
assertions are about what the program asks AWS for: the role's trust policy,
its permissions on the bucket, and an export that gets the bucket and the
role name -- and waits for the role's policy -- without ``depends_on``.

    PYTHONPATH=.:tests .venv/bin/python -m pytest -q tests/test_prerequisites.py
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi_aws", reason="needs the [aws] extra: pip install pulumi-aws")
# pulumi-aws warns about its own deprecated modules when imported; not ours to fix.
pytestmark = pytest.mark.filterwarnings(r"ignore::DeprecationWarning:pulumi_aws\.")

import pulumi  # noqa: E402
from pulumi.runtime import mocks as pulumi_mocks  # noqa: E402
from pulumi.runtime.config import set_all_config  # noqa: E402
from pulumi.runtime.settings import reset_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "with-prerequisites" / "__main__.py"
PROJECT = "export-image-with-prerequisites"
STACK = "test"
ACCOUNT = "123456789012"
IMAGE_ID = "ami-0123456789abcdef0"

BUCKET_TYPE = "aws:s3/bucket:Bucket"
ROLE_TYPE = "aws:iam/role:Role"
ROLE_POLICY_TYPE = "aws:iam/rolePolicy:RolePolicy"
COMPONENT_TYPE = "export-image-provider:index:VmImportRole"
EXPORT_TYPE = "pulumi-python:dynamic/export_image_provider:ImageExport"


@dataclass
class Registration:
    typ: str
    name: str
    urn: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    dependencies: set[str] = field(default_factory=set)
    property_dependencies: dict[str, set[str]] = field(default_factory=dict)


class Mocks(pulumi.runtime.Mocks):
    """Plausible AWS answers: auto-named bucket, role ARN, ``role:policy`` id, a completed export."""

    def __init__(self) -> None:
        self.registrations: list[Registration] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        if args.typ == BUCKET_TYPE:
            name = inputs.get("bucket") or f"{args.name}-a1b2c3d"
            outputs = {**inputs, "bucket": name, "arn": f"arn:aws:s3:::{name}", "region": "us-east-1"}
            resource_id = name
        elif args.typ == ROLE_TYPE:
            name = inputs.get("name") or f"{args.name}-a1b2c3d"
            outputs = {**inputs, "name": name, "arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "uniqueId": "AROAEXAMPLE"}
            resource_id = name
        elif args.typ == ROLE_POLICY_TYPE:
            name = inputs.get("name") or f"{args.name}-a1b2c3d"
            outputs = {**inputs, "name": name}
            resource_id = f"{inputs['role']}:{name}"
        elif args.typ == EXPORT_TYPE:
            task_id = "export-ami-0123456789abcdef0"
            key = f"{inputs.get('s3_prefix') or ''}{task_id}.{inputs['disk_image_format'].lower()}"
            outputs = {
                **inputs,
                "export_image_task_id": task_id,
                "status": "completed",
                "status_message": None,
                "progress": None,
                "s3_key": key,
                "s3_uri": f"s3://{inputs['s3_bucket']}/{key}",
            }
            resource_id = task_id
        else:  # components (VmImportRole) and anything else
            outputs, resource_id = inputs, (f"{args.name}_id" if args.custom else None)
        for registration in reversed(self.registrations):
            if registration.typ == args.typ and registration.name == args.name and not registration.outputs:
                registration.inputs, registration.outputs = inputs, outputs
                break
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also keeps each registration's URN and dependencies (MockResourceArgs has neither)."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.recording = mocks

    def RegisterResource(self, request: Any) -> Any:
        # Registrations arrive from several threads: keep this one's record, not the list's last.
        registration = Registration(
            typ=request.type,
            name=request.name,
            dependencies=set(request.dependencies),
            property_dependencies={k: set(v.urns) for k, v in request.propertyDependencies.items()},
        )
        self.recording.registrations.append(registration)
        response = super().RegisterResource(request)
        registration.urn = response.urn
        return response


@pytest.fixture
def mocks() -> Iterator[Mocks]:
    recorder = Mocks()
    pulumi.runtime.set_mocks(recorder, project=PROJECT, stack=STACK, preview=False, monitor=RecordingMonitor(recorder))
    set_all_config({f"{PROJECT}:imageId": IMAGE_ID, f"{PROJECT}:format": "VHD"})
    yield recorder
    set_all_config({})
    reset_options()


def only(recorder: Mocks, typ: str) -> Registration:
    found = [r for r in recorder.registrations if r.typ == typ]
    assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
    return found[0]


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("with_prerequisites_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines program(); runs nothing: __name__ is not "__main__"
    return module


def test_example_program(mocks: Mocks) -> None:
    example = load_example()

    @pulumi.runtime.test
    def run() -> pulumi.Output:
        resources = example.program()
        export = resources["export"]

        def check_outputs(values: list[Any]) -> None:
            s3_uri, role_name, role_arn = values
            assert s3_uri.startswith("s3://exports-a1b2c3d/exports/export-ami-")
            assert s3_uri.endswith(".vhd")
            assert role_name == "vmimport"
            assert role_arn == f"arn:aws:iam::{ACCOUNT}:role/vmimport"

        return pulumi.Output.all(export.s3_uri, resources["role"].role_name, resources["role"].role_arn).apply(
            check_outputs
        )

    run()

    bucket = only(mocks, BUCKET_TYPE)
    component = only(mocks, COMPONENT_TYPE)
    role = only(mocks, ROLE_TYPE)
    policy = only(mocks, ROLE_POLICY_TYPE)
    export = only(mocks, EXPORT_TYPE)
    bucket_name = bucket.outputs["bucket"]

    # The role: named vmimport, trusted by VM Import/Export with the documented external id.
    assert role.inputs["name"] == "vmimport"
    assert f"{COMPONENT_TYPE}$" in role.urn and f"{COMPONENT_TYPE}$" in policy.urn  # children of the component
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Version"] == "2012-10-17"
    [statement] = trust["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Service": "vmie.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:Externalid": "vmimport"}},
    }

    # Its inline policy: the S3 actions on the created bucket and its objects, the EC2 actions on *.
    assert policy.inputs["role"] == "vmimport"
    document = json.loads(policy.inputs["policy"])
    s3_statement, ec2_statement = document["Statement"]
    assert s3_statement["Effect"] == "Allow"
    assert sorted(s3_statement["Action"]) == sorted(
        ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:GetBucketAcl"]
    )
    assert s3_statement["Resource"] == [f"arn:aws:s3:::{bucket_name}", f"arn:aws:s3:::{bucket_name}/*"]
    assert ec2_statement["Effect"] == "Allow"
    assert sorted(ec2_statement["Action"]) == sorted(
        ["ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:Describe*"]
    )
    assert ec2_statement["Resource"] == "*"
    assert bucket.urn in policy.property_dependencies["policy"]

    # The export: into the created bucket, with the component's role, from config.
    assert export.inputs["s3_bucket"] == bucket_name
    assert export.inputs["role_name"] == "vmimport"
    assert export.inputs["image_id"] == IMAGE_ID
    assert export.inputs["disk_image_format"] == "VHD"
    assert export.inputs["s3_prefix"] == "exports/"
    assert export.inputs["resource_key"] == f"{PROJECT}/{STACK}/image"
    assert "__provider" in export.inputs

    # Implicit ordering: role_name carries the role *and* its policy, s3_bucket the bucket.
    assert {role.urn, policy.urn} <= export.property_dependencies["role_name"]
    assert bucket.urn in export.property_dependencies["s3_bucket"]
    assert {bucket.urn, role.urn, policy.urn} <= export.dependencies
    assert component.urn.endswith(f"{COMPONENT_TYPE}::vmimport")


def test_vm_import_role_several_buckets_and_custom_name(mocks: Mocks) -> None:
    from export_image_provider.prerequisites import VmImportRole

    @pulumi.runtime.test
    def run() -> pulumi.Output:
        role = VmImportRole("exports", buckets=["bucket-a", pulumi.Output.from_input("bucket-b")], role_name="vmimport-ci")
        return pulumi.Output.all(role.role_name, role.role_arn).apply(
            lambda values: assertions(*values)
        )

    def assertions(role_name: str, role_arn: str) -> None:
        assert role_name == "vmimport-ci"
        assert role_arn == f"arn:aws:iam::{ACCOUNT}:role/vmimport-ci"

    run()
    role = only(mocks, ROLE_TYPE)
    policy = only(mocks, ROLE_POLICY_TYPE)
    assert role.inputs["name"] == "vmimport-ci"
    # The external id stays "vmimport" whatever the role is called: it is what AWS documents.
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"sts:Externalid": "vmimport"}}
    s3_statement = json.loads(policy.inputs["policy"])["Statement"][0]
    assert s3_statement["Resource"] == [
        "arn:aws:s3:::bucket-a",
        "arn:aws:s3:::bucket-a/*",
        "arn:aws:s3:::bucket-b",
        "arn:aws:s3:::bucket-b/*",
    ]


def test_permissions_policy_needs_a_bucket() -> None:
    from export_image_provider.prerequisites import permissions_policy

    with pytest.raises(ValueError):
        permissions_policy([])


def test_package_does_not_import_pulumi_aws() -> None:
    """pulumi-aws is an optional extra: importing the package (as the dynamic-provider process does) must not load it."""
    code = "import sys, export_image_provider; print('pulumi_aws' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_component_policies_match_the_documented_json() -> None:
    """VmImportRole and policies/*.json (what the README tells people to apply by hand) say the same."""
    from export_image_provider.prerequisites import permissions_policy, trust_policy

    policies = ROOT / "policies"
    assert trust_policy() == json.loads((policies / "vmimport-trust-policy.json").read_text())
    assert permissions_policy(["EXPORT_BUCKET"]) == json.loads((policies / "vmimport-role-policy.json").read_text())
