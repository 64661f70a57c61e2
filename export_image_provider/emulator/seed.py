"""Seed a running emulator with what an export needs, through boto3 only.

Creates (or finds, so re-running is harmless) an exportable AMI, AMIs that
ExportImage must refuse (encrypted, Marketplace, Windows), an export bucket and
the ``vmimport`` service role -- the way one would on AWS, so the same calls
document how the emulator represents those AMIs (see ``models.py``).

    python -m export_image_provider.emulator.seed --endpoint http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import boto3

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_session_token": "testing"}
MARKETPLACE_SOURCE_AMI = "ami-0b301ce3ce3475r4f"
"""One of moto's default AMIs; it carries ProductCodes like a Marketplace AMI."""

VMIMPORT_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "vmie.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:Externalid": "vmimport"}},
        }
    ],
}


def _vmimport_policy(bucket: str) -> dict[str, Any]:
    """policies/vmimport-role-policy.json for ``bucket``, widened to every bucket of the account.

    The emulator checks the role's permissions like AWS (world.py); tests and
    demos create further buckets and export to them with the seeded role.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:GetBucketAcl"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*", "arn:aws:s3:::*", "arn:aws:s3:::*/*"],
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:Describe*"],
                "Resource": "*",
            },
        ],
    }


def client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for the emulator with dummy credentials passed explicitly."""
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, **DUMMY_CREDENTIALS)


def _own_image(ec2: Any, name: str) -> str | None:
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
    return images[0]["ImageId"] if images else None


def _image_from_instance(ec2: Any, name: str, source_ami: str, **run_args: Any) -> str:
    found = _own_image(ec2, name)
    if found:
        return found
    instance = ec2.run_instances(ImageId=source_ami, MinCount=1, MaxCount=1, InstanceType="t3.micro", **run_args)
    instance_id = instance["Instances"][0]["InstanceId"]
    image_id = ec2.create_image(InstanceId=instance_id, Name=name)["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    return image_id


def _exportable_image(ec2: Any, name: str) -> str:
    return _own_image(ec2, name) or ec2.register_image(
        Name=name, Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm"
    )["ImageId"]


def _encrypted_image(ec2: Any, name: str, region: str) -> str:
    found = _own_image(ec2, name)
    if found:
        return found
    volume = ec2.create_volume(AvailabilityZone=f"{region}a", Size=8, Encrypted=True)
    snapshot = ec2.create_snapshot(VolumeId=volume["VolumeId"], Description=f"encrypted root of {name}")
    ec2.delete_volume(VolumeId=volume["VolumeId"])
    mapping = {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot["SnapshotId"]}}
    return ec2.register_image(
        Name=name, Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm",
        BlockDeviceMappings=[mapping],
    )["ImageId"]


def _windows_source(ec2: Any) -> str:
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "platform", "Values": ["windows"]}])["Images"]
    if not images:
        raise RuntimeError("the emulator offers no Windows AMI to copy (MOTO_EC2_LOAD_DEFAULT_AMIS off?)")
    return sorted(images, key=lambda i: i["ImageId"])[0]["ImageId"]


def _bucket(s3: Any, name: str, region: str) -> None:
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if name in existing:
        return
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})


def _role(iam: Any, name: str, bucket: str) -> str:
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(VMIMPORT_TRUST))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-{bucket}", PolicyDocument=json.dumps(_vmimport_policy(bucket)))
    return arn


def seed(
    endpoint_url: str,
    region: str = "us-east-1",
    bucket: str | None = None,
    role_name: str = "vmimport",
    prefix: str = "seed",
) -> dict[str, str]:
    """Create the fixtures of an export in the emulator at ``endpoint_url``; idempotent.

    Returns ``endpoint_url, region, account_id, bucket, role_name, role_arn,
    image_id`` (exportable), ``encrypted_image_id``, ``marketplace_image_id``,
    ``windows_image_id`` and ``foreign_image_id`` (owned by another account).
    """
    ec2 = client("ec2", endpoint_url, region)
    account_id = client("sts", endpoint_url, region).get_caller_identity()["Account"]
    bucket = bucket or f"{prefix}-exports-{account_id}-{region}"
    _bucket(client("s3", endpoint_url, region), bucket, region)
    role_arn = _role(client("iam", endpoint_url, region), role_name, bucket)
    return {
        "endpoint_url": endpoint_url,
        "region": region,
        "account_id": account_id,
        "bucket": bucket,
        "role_name": role_name,
        "role_arn": role_arn,
        "image_id": _exportable_image(ec2, f"{prefix}-exportable"),
        "encrypted_image_id": _encrypted_image(ec2, f"{prefix}-encrypted", region),
        "marketplace_image_id": _image_from_instance(ec2, f"{prefix}-marketplace", MARKETPLACE_SOURCE_AMI),
        "windows_image_id": _image_from_instance(ec2, f"{prefix}-windows", _windows_source(ec2)),
        "foreign_image_id": _linux_foreign(ec2),
    }


def _linux_foreign(ec2: Any) -> str:
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}])
    return sorted(i["ImageId"] for i in images["Images"])[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export_image_provider.emulator.seed", description=__doc__)
    parser.add_argument("--endpoint", required=True, help="the emulator URL printed on its READY line")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--bucket", default=None)
    parser.add_argument("--role-name", default="vmimport")
    args = parser.parse_args(argv)
    json.dump(seed(args.endpoint, args.region, args.bucket, args.role_name), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
