"""The exported image as outputs (size, ETag, version, last modified), and destroy in versioned buckets.

ImageExportProvider driven directly, through boto3 over HTTP to the emulator,
whose S3 is moto's: versioned buckets, delete markers and Object Lock behave as
moto has them. The CLI side (outputs used downstream, retain_on_delete) is in
test_cli_objects.py.
"""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import REPO_ROOT

from export_image_provider.image import version_delete_hint
from export_image_provider.provider import OBJECT_PROPERTIES
from test_provider import fresh_tasks, props, provider, world  # noqa: F401 - fixtures shared with test_provider
from test_reliability import policy_lacks


def new_bucket(emulator, versioned: bool = False, object_lock: bool = False) -> str:
    s3 = emulator.client("s3")
    name = f"objects-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def head(emulator, bucket, key, **extra):
    return emulator.client("s3").head_object(Bucket=bucket, Key=key, **extra)


def versions(emulator, bucket, key):
    """(version ids, delete-marker ids) at ``key``."""
    listed = emulator.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return ([v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key],
            [m["VersionId"] for m in listed.get("DeleteMarkers", []) if m["Key"] == key])


def overwrite(emulator, bucket, key):
    return emulator.client("s3").put_object(Bucket=bucket, Key=key, Body=b"someone else's disk image")


def test_completed_export_outputs_its_object(world, emulator, provider):
    created = provider.create(props(world))
    outs = created.outs
    found = head(emulator, world["bucket"], outs["s3_key"])
    assert outs["s3_object_size"] == found["ContentLength"] > 0
    assert outs["s3_etag"] == found["ETag"].strip('"') and '"' not in outs["s3_etag"]
    assert outs["s3_version_id"] is None, "an unversioned bucket has no version ids"
    assert outs["s3_last_modified"] == found["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert provider.read(created.id, outs).outs == outs


def test_active_export_has_no_object_outputs_until_read_sees_it_completed(world, emulator, provider):
    emulator.set_config(export_seconds=30)
    created = provider.create(props(world, wait_for_completion=False))
    assert {name: created.outs[name] for name in OBJECT_PROPERTIES} == dict.fromkeys(OBJECT_PROPERTIES)
    emulator.advance(31)
    read = provider.read(created.id, created.outs)
    assert read.outs["status"] == "completed"
    assert read.outs["s3_etag"] == head(emulator, world["bucket"], read.outs["s3_key"])["ETag"].strip('"')


def test_update_and_diff_carry_the_object_outputs(world, provider):
    created = provider.create(props(world, tags={"team": "a"}))
    news = {**props(world, tags={"team": "b"}), "resource_key": created.outs["resource_key"]}
    diff = provider.diff(created.id, created.outs, news)
    assert diff.changes and not diff.replaces and set(OBJECT_PROPERTIES) <= set(diff.stables)
    updated = provider.update(created.id, created.outs, news)
    for name in OBJECT_PROPERTIES:
        assert updated.outs[name] == created.outs[name], name


def test_versioned_bucket_records_the_version_and_destroy_leaves_no_version_and_no_marker(world, emulator, provider):
    bucket = new_bucket(emulator, versioned=True)
    created = provider.create(props(world, s3_bucket=bucket))
    key = created.outs["s3_key"]
    assert created.outs["s3_version_id"] == head(emulator, bucket, key)["VersionId"]
    provider.delete(created.id, created.outs)
    assert versions(emulator, bucket, key) == ([], [])
    provider.delete(created.id, created.outs)  # a repeat finds nothing to do
    assert versions(emulator, bucket, key) == ([], [])


def test_destroy_in_a_versioned_bucket_deletes_only_the_exports_version(world, emulator, provider, capsys):
    bucket = new_bucket(emulator, versioned=True)
    created = provider.create(props(world, s3_bucket=bucket))
    key = created.outs["s3_key"]
    theirs = overwrite(emulator, bucket, key)["VersionId"]
    provider.delete(created.id, created.outs)
    assert versions(emulator, bucket, key) == ([theirs], [])
    assert f"deleted s3://{bucket}/{key} version {created.outs['s3_version_id']}" in capsys.readouterr().err


def test_destroy_in_an_unversioned_bucket_leaves_someone_elses_object(world, emulator, provider, capsys):
    created = provider.create(props(world))
    key = created.outs["s3_key"]
    overwrite(emulator, world["bucket"], key)
    provider.delete(created.id, created.outs)
    assert head(emulator, world["bucket"], key)["ContentLength"] == len(b"someone else's disk image")
    assert "is not this export's image any more" in capsys.readouterr().err
    emulator.client("s3").delete_object(Bucket=world["bucket"], Key=key)


def test_destroy_of_a_state_without_object_outputs_still_deletes_the_image(world, emulator, provider):
    """State written before these outputs existed: the object at the key is the export's."""
    bucket = new_bucket(emulator, versioned=True)
    created = provider.create(props(world, s3_bucket=bucket))
    old_state = {**created.outs, **dict.fromkeys(OBJECT_PROPERTIES)}
    provider.delete(created.id, old_state)
    assert versions(emulator, bucket, created.outs["s3_key"]) == ([], [])


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_refresh_reports_an_object_overwritten_out_of_band_as_gone(world, emulator, provider, capsys, versioned):
    bucket = new_bucket(emulator, versioned=versioned)
    created = provider.create(props(world, s3_bucket=bucket))
    key = created.outs["s3_key"]
    capsys.readouterr()
    overwrite(emulator, bucket, key)
    read = provider.read(created.id, created.outs)
    assert read.id == "" and read.outs == {}
    [line] = capsys.readouterr().err.splitlines()
    name = created.outs["resource_key"].rsplit("/", 1)[-1]
    assert line.startswith(f"{name}: s3://{bucket}/{key} was replaced out of band (ETag {created.outs['s3_etag']}")
    assert "the export is treated as gone" in line
    if versioned:
        assert line.endswith(f"its version {created.outs['s3_version_id']} is still in the bucket")


def test_object_lock_refuses_destroy_with_one_line_and_keeps_the_version(world, emulator, provider):
    bucket = new_bucket(emulator, object_lock=True)
    emulator.client("s3").put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
    created = provider.create(props(world, s3_bucket=bucket))
    key, version = created.outs["s3_key"], created.outs["s3_version_id"]
    assert version and head(emulator, bucket, key)["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(Exception) as raised:
        provider.delete(created.id, created.outs)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("DeleteObject failed: AccessDenied")
    assert f"version {version} is held by Object Lock (COMPLIANCE retention until" in message
    assert "retain_on_delete" in message
    assert versions(emulator, bucket, key) == ([version], [])


def test_legal_hold_refuses_destroy_and_names_it(world, emulator, provider):
    bucket = new_bucket(emulator, object_lock=True)
    created = provider.create(props(world, s3_bucket=bucket))
    key, version = created.outs["s3_key"], created.outs["s3_version_id"]
    s3 = emulator.client("s3")
    s3.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "ON"})
    with pytest.raises(Exception, match=r"held by Object Lock \(a legal hold\)"):
        provider.delete(created.id, created.outs)
    s3.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "OFF"})
    provider.delete(created.id, created.outs)
    assert versions(emulator, bucket, key) == ([], [])


def test_refusal_without_visible_lock_names_mfa_delete_and_permissions():
    """S3 answers 403 AccessDenied alike for MFA delete and a missing permission (moto has no MFA delete)."""
    hint = version_delete_hint("b", "exports/x.vmdk", "v1", None)
    assert "s3:DeleteObjectVersion" in hint and "MFA" in hint and "--version-id v1 --mfa" in hint
    assert "retain_on_delete" in hint and "\n" not in hint



def test_caller_policy_allows_the_version_calls(world, emulator, provider):
    """A versioned lifecycle's calls (HeadObject and DeleteObject by version id) against policies/caller-policy.json."""
    bucket = new_bucket(emulator, versioned=True)
    created = provider.create(props(world, s3_bucket=bucket))
    emulator.reset_calls()
    provider.read(created.id, created.outs)
    provider.delete(created.id, created.outs)
    seen = {f"{c['service']}:{c['action']}" for c in emulator.call_detail() if c["access_key"] == "testing"}
    assert {"s3:HeadObjectVersion", "s3:DeleteObjectVersion"} <= seen, seen
    policy = json.loads((REPO_ROOT / "policies" / "caller-policy.json").read_text().replace("EXPORT_BUCKET", bucket))
    assert policy_lacks(seen, policy, {"bucket": bucket, "account": world["account_id"], "region": "us-east-1"}) == []
