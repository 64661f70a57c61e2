"""Stack config under ``aws:``: every key honoured as pulumi-aws does, or refused with a line naming it.

The table (``stack_config.KEYS``) is checked against the installed pulumi-aws
SDK's own list of config keys and against the README. Honoured keys are checked
against the emulator over HTTP: the provider assumes the configured roles (moto
serves STS AssumeRole; a key it issued answers GetCallerIdentity as the assumed
role), signs the ExportImage call with the role's key (the emulator records the
access key of every call), and refuses a wrong account before any EC2 call. The
engine path, Configure then Check/Create over gRPC, runs through
``python -m pulumi.dynamic`` (tests/engine.py).
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import re
import urllib.request
import uuid
from pathlib import Path

import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from conftest import REPO_ROOT
from engine import DynamicProviderProcess
from reliability_report import output_of, set_program
from test_provider import props, world  # noqa: F401 - fixture

from export_image_provider import ImageExportProvider
from export_image_provider.aws import AwsAuth
from export_image_provider.aws import _session as aws_session
from export_image_provider.stack_config import KEYS, StackConfigError, read_stack_config

pytest_plugins = ["reliability_report"]

ROLE_POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}'
OTHER_ACCOUNT = "111111111111"


def refused(raw: dict[str, str]) -> str:
    with pytest.raises(StackConfigError) as caught:
        read_stack_config(raw)
    return str(caught.value)


# -- the table ---------------------------------------------------------------------------------


def test_the_table_covers_every_config_key_of_the_installed_pulumi_aws():
    spec = importlib.util.find_spec("pulumi_aws")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pulumi-aws is not installed (pip install export-image-provider[aws])")
    source = (Path(spec.submodule_search_locations[0]) / "config" / "vars.py").read_text()
    theirs = set(re.findall(r"__config__\.get\w*\('(\w+)'\)", source))
    assert len(theirs) > 30
    assert theirs - set(KEYS) == set()


def test_the_readme_documents_every_key_of_the_table():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Region, credentials, endpoints", 1)[1].split("\n## ", 1)[0]
    missing = [key for key in KEYS if f"`aws:{key}`" not in section]
    assert missing == []


@pytest.mark.parametrize("key", [k for k, rule in KEYS.items() if not rule.honoured])
def test_each_refused_key_fails_with_a_line_naming_it_and_what_to_do(key):
    line = refused({f"aws:{key}": "something", "aws:region": "us-east-1"})
    assert line.startswith(f"aws:{key}: not supported by ImageExport") and KEYS[key].note in line
    assert "\n" not in line


@pytest.mark.parametrize("key, value", [(k, r.accepts) for k, r in KEYS.items() if r.accepts])
def test_a_refused_key_set_to_what_the_provider_does_anyway_is_accepted(key, value):
    read_stack_config({f"aws:{key}": value})


def test_unknown_aws_keys_are_refused_and_other_namespaces_left_alone():
    assert refused({"aws:s3ForcePathStyle": "true"}).startswith("aws:s3ForcePathStyle: not a pulumi-aws config key")
    assert read_stack_config({"proj:anything": "x", "gcp:project": "p"}) == read_stack_config({})


def test_static_credentials_and_region_are_read():
    config = read_stack_config({"aws:region": "eu-west-1", "aws:profile": "ops", "aws:accessKey": "AKIAX",
                                "aws:secretKey": "s3cret", "aws:token": "tok", "aws:stsRegion": "eu-west-1"})
    assert (config.region, config.profile, config.access_key, config.secret_key, config.token, config.sts_region) == (
        "eu-west-1", "ops", "AKIAX", "s3cret", "tok", "eu-west-1")
    assert "s3cret" not in repr(config) and "tok" not in repr(config)


# -- assume roles: pulumi-aws's shapes ---------------------------------------------------------


def test_assume_roles_take_every_pulumi_aws_field_to_its_sts_parameter():
    roles = [
        {"roleArn": "arn:aws:iam::123456789012:role/a", "sessionName": "deploy", "externalId": "ext",
         "duration": "1h30m", "policy": ROLE_POLICY, "policyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
         "sourceIdentity": "alice", "tags": {"team": "platform"}, "transitiveTagKeys": ["team"]},
        {"roleArn": "arn:aws:iam::210987654321:role/b", "durationSeconds": 900},
    ]
    config = read_stack_config({"aws:assumeRoles": json.dumps(roles)})
    first, second = config.assume_roles
    assert first.sts_arguments() == {
        "RoleSessionName": "deploy", "ExternalId": "ext", "DurationSeconds": 5400, "Policy": ROLE_POLICY,
        "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}], "SourceIdentity": "alice",
        "Tags": [{"Key": "team", "Value": "platform"}], "TransitiveTagKeys": ["team"],
    }
    assert (second.role_arn, second.sts_arguments(), second.key) == (
        "arn:aws:iam::210987654321:role/b", {"DurationSeconds": 900}, "aws:assumeRoles[1]")


def test_the_v6_single_assume_role_object_is_honoured():
    config = read_stack_config({"aws:assumeRole": '{"roleArn": "arn:aws:iam::123456789012:role/a", '
                                                  '"sessionName": "s", "durationSeconds": 3600}'})
    [role] = config.assume_roles
    assert (role.key, role.session_name, role.duration_seconds) == ("aws:assumeRole", "s", 3600)


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"aws:assumeRoles": '{"roleArn": "arn:aws:iam::123456789012:role/a"}'}, "aws:assumeRoles: expected a list"),
        ({"aws:assumeRoles": '[{"sessionName": "s"}]'}, "aws:assumeRoles[0].roleArn: missing"),
        ({"aws:assumeRoles": '[{"roleArn": "deployer"}]'}, "aws:assumeRoles[0].roleArn: 'deployer' is not a role ARN"),
        ({"aws:assumeRoles": '[{"roleArn": "arn:aws:iam::123456789012:role/a", "role": "x"}]'},
         "aws:assumeRoles[0].role: not an assume-role field"),
        ({"aws:assumeRoles": '[{"roleArn": "arn:aws:iam::123456789012:role/a", "duration": "10m"}]'},
         "aws:assumeRoles[0].duration: '10m' is outside AssumeRole's 15 minutes to 12 hours"),
        ({"aws:assumeRoles": '[{"roleArn": "arn:aws:iam::123456789012:role/a", "duration": "an hour"}]'},
         "is not a duration such as 1h"),
        ({"aws:assumeRoles": '[{"roleArn": "arn:aws:iam::123456789012:role/a", "duration": "1h", '
                             '"durationSeconds": 3600}]'}, "set duration or durationSeconds, not both"),
        ({"aws:assumeRoles": "[{roleArn: x}]"}, "aws:assumeRoles: '[{roleArn: x}]' is not valid JSON"),
        ({"aws:assumeRole": '{"roleArn": "arn:aws:iam::123456789012:role/a"}',
          "aws:assumeRoles": '[{"roleArn": "arn:aws:iam::123456789012:role/a"}]'}, "not both"),
        ({"aws:allowedAccountIds": '["12345"]'}, "aws:allowedAccountIds: 12345 is not a 12-digit account id"),
        ({"aws:allowedAccountIds": '["123456789012"]', "aws:forbiddenAccountIds": '["111111111111"]'},
         "set aws:allowedAccountIds or aws:forbiddenAccountIds, not both"),
        ({"aws:skipCredentialsValidation": "maybe"}, "aws:skipCredentialsValidation: expected true or false"),
    ],
)
def test_malformed_honoured_keys_are_refused_with_the_key_named(raw, words):
    assert words in refused(raw)


def test_account_ids_come_as_a_json_list_or_one_bare_id():
    assert read_stack_config({"aws:allowedAccountIds": '["123456789012", 210987654321]'}).allowed_account_ids == (
        "123456789012", "210987654321")
    assert read_stack_config({"aws:forbiddenAccountIds": "123456789012"}).forbidden_account_ids == ("123456789012",)


def test_auth_is_hashable_and_its_repr_shows_no_secret():
    roles = read_stack_config({"aws:assumeRoles": json.dumps([
        {"roleArn": "arn:aws:iam::123456789012:role/a", "externalId": "ext-SECRET", "policy": ROLE_POLICY}])})
    auth = AwsAuth("p", "AKIASECRET", "SECRETKEY", "SECRETTOKEN", roles.assume_roles, "us-east-1")
    assert hash(auth) == hash(AwsAuth("p", "AKIASECRET", "SECRETKEY", "SECRETTOKEN", roles.assume_roles, "us-east-1"))
    assert "SECRET" not in repr(auth) and "Allow" not in repr(auth) and "role/a" in repr(auth)


# -- against the emulator -----------------------------------------------------------------------


@pytest.fixture
def fresh(emulator):
    emulator.reset()
    emulator.set_config(export_seconds=0.5)


def configured(**config: str) -> ImageExportProvider:
    provider = ImageExportProvider()
    provider.configure(ConfigureRequest(Config({"aws:region": "us-east-1", **config}, "proj")))
    return provider


def unique_key() -> str:
    """An access key no other test used: credentials-scoped caches (sessions, account ids) start empty."""
    return "AKIA" + uuid.uuid4().hex[:16].upper()


def assumed_roles(emulator) -> dict[str, dict]:
    """moto's own record of each AssumeRole it served, by the access key it issued."""
    with urllib.request.urlopen(f"{emulator.url}/moto-api/data.json", timeout=10) as response:
        data = json.loads(response.read())
    return {r["access_key_id"]: r for r in data.get("sts", {}).get("AssumedRole", [])}


def role(emulator, name: str) -> str:
    iam = emulator.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]})
    try:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName=name)["Role"]["Arn"]


def test_create_runs_as_the_assumed_role_with_the_configured_session(world, emulator, fresh):
    arn = role(emulator, "deployer")
    source = unique_key()
    provider = configured(**{
        "aws:accessKey": source, "aws:secretKey": "source-secret", "aws:allowedAccountIds": '["123456789012"]',
        "aws:assumeRoles": json.dumps([{"roleArn": arn, "sessionName": "image-export", "externalId": "ext-42",
                                        "duration": "30m", "policy": ROLE_POLICY}]),
    })
    emulator.reset_calls()
    created = provider.create(props(world))
    assert created.outs["status"] == "completed"
    calls = emulator.call_detail()
    [assume] = [c for c in calls if c["action"] == "AssumeRole"]
    [export] = [c for c in calls if c["action"] == "ExportImage"]
    assert assume["access_key"] == source and export["access_key"] not in (source, "testing")
    session = assumed_roles(emulator)[export["access_key"]]
    assert session["arn"] == "arn:aws:sts::123456789012:assumed-role/deployer/image-export"
    assert (session["role_arn"], session["external_id"], session["policy"]) == (arn, "ext-42", ROLE_POLICY)
    # moto's data.json leaves out the expiry; the credentials the provider holds carry what STS answered.
    credentials = aws_session(provider._auth()).get_credentials()
    lasts = credentials._expiry_time - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(minutes=20) < lasts <= datetime.timedelta(minutes=30)
    assert {c["access_key"] for c in calls if c["action"] != "AssumeRole"} == {export["access_key"]}


def test_roles_are_assumed_in_turn_each_with_the_one_before(world, emulator, fresh):
    first, second = role(emulator, "hop-one"), role(emulator, "hop-two")
    source = unique_key()
    provider = configured(**{"aws:accessKey": source, "aws:secretKey": "s",
                             "aws:assumeRoles": json.dumps([{"roleArn": first}, {"roleArn": second}])})
    emulator.reset_calls()
    provider.create(props(world))
    calls = emulator.call_detail()
    hops = [c["access_key"] for c in calls if c["action"] == "AssumeRole"]
    [export] = [c["access_key"] for c in calls if c["action"] == "ExportImage"]
    sessions = assumed_roles(emulator)
    assert hops[0] == source and sessions[hops[1]]["role_arn"] == first
    assert sessions[export]["role_arn"] == second


def test_a_role_in_an_account_not_allowed_is_refused_before_any_ec2_call(world, emulator, fresh):
    arn = f"arn:aws:iam::{OTHER_ACCOUNT}:role/elsewhere"
    provider = configured(**{"aws:accessKey": unique_key(), "aws:secretKey": "s",
                             "aws:assumeRoles": json.dumps([{"roleArn": arn}]),
                             "aws:allowedAccountIds": '["123456789012"]'})
    emulator.reset_calls()
    with pytest.raises(Exception) as caught:
        provider.create(props(world))
    assert str(caught.value).startswith(f"aws:allowedAccountIds: the credentials are for account {OTHER_ACCOUNT}, "
                                        "which is not one of 123456789012")
    assert {c["service"] for c in emulator.call_detail()} == {"sts"}


@pytest.mark.parametrize("operation", ["create", "delete"])
def test_a_forbidden_account_is_refused_for_every_operation(world, emulator, fresh, operation):
    provider = configured(**{"aws:accessKey": unique_key(), "aws:secretKey": "s",
                             "aws:forbiddenAccountIds": json.dumps([world["account_id"]])})
    emulator.reset_calls()
    with pytest.raises(Exception, match=f"aws:forbiddenAccountIds: the credentials are for account "
                                        f"{world['account_id']}, which is forbidden"):
        if operation == "create":
            provider.create(props(world))
        else:
            provider.delete("export-ami-0123456789abcdef0", props(world))
    assert [c["action"] for c in emulator.call_detail()] == ["GetCallerIdentity"]


@pytest.mark.parametrize("skip", ["false", "true"])
def test_credentials_are_validated_first_unless_skipped(world, emulator, fresh, skip):
    provider = configured(**{"aws:accessKey": unique_key(), "aws:secretKey": "s",
                             "aws:skipCredentialsValidation": skip})
    emulator.reset_calls()
    provider.create(props(world))
    actions = [c["action"] for c in emulator.call_detail()]
    if skip == "true":
        assert actions[0] != "GetCallerIdentity"
    else:
        assert actions[0] == "GetCallerIdentity" and actions.count("GetCallerIdentity") == 1


def test_the_engine_path_refuses_an_unsupported_key_at_check_and_honours_assume_roles(world, emulator, fresh):
    arn = role(emulator, "engine-deployer")
    env = {"AWS_ENDPOINT_URL": emulator.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    refusing = DynamicProviderProcess(ImageExportProvider(), env=env)
    try:
        refusing.configure({"aws:region": "us-east-1", "aws:defaultTags": '{"tags": {"team": "x"}}'})
        with pytest.raises(Exception, match=r"details = \"aws:defaultTags: not supported by ImageExport"):
            refusing.check(props(world))
    finally:
        refusing.close()
    server = DynamicProviderProcess(ImageExportProvider(), env=env)
    try:
        server.configure({"aws:region": "us-east-1", "aws:assumeRoles": json.dumps([
            {"roleArn": arn, "sessionName": "over-grpc"}])})
        inputs, failures = server.check(props(world))
        assert not failures
        emulator.reset_calls()
        server.create("assumed", inputs)
    finally:
        server.close()
    [export] = [c["access_key"] for c in emulator.call_detail() if c["action"] == "ExportImage"]
    assert assumed_roles(emulator)[export]["arn"].endswith(":assumed-role/engine-deployer/over-grpc")


def test_through_the_cli_path_config_assumes_roles_and_refuses_a_wrong_account_or_key(world, emulator, fresh,
                                                                                       make_project):
    arn = role(emulator, "cli-deployer")
    args = {"image_id": world["image_id"], "disk_image_format": "VMDK", "s3_bucket": world["bucket"],
            "s3_prefix": f"cli-{uuid.uuid4().hex[:8]}/"}
    project = make_project("stack-config-cli", [("img", args)])
    project.config_set("aws:assumeRoles[0].roleArn", arn, path=True)
    project.config_set("aws:assumeRoles[0].sessionName", "via-cli", path=True)
    project.config_set("aws:allowedAccountIds[0]", world["account_id"], path=True)
    emulator.reset_calls()
    project.up()
    [export] = [c["access_key"] for c in emulator.call_detail() if c["action"] == "ExportImage"]
    assert assumed_roles(emulator)[export]["arn"].endswith(":assumed-role/cli-deployer/via-cli")

    project.config_set("aws:allowedAccountIds[0]", "222222222222", path=True)
    set_program(project, [("img", {**args, "tags": {"team": "other"}})])  # an update: the provider calls AWS
    emulator.reset_calls()
    refused_update = project.up(check=False)
    assert refused_update.code != 0
    assert (f"aws:allowedAccountIds: the credentials are for account {world['account_id']}, which is not one of "
            "222222222222") in output_of(refused_update)
    assert {c["service"] for c in emulator.call_detail()} == {"sts"}
    project.config_set("aws:allowedAccountIds[0]", world["account_id"], path=True)

    project.config_set("aws:defaultTags.tags.team", "platform", path=True)
    refused_preview = project.preview(check=False)
    assert refused_preview.code != 0
    assert "aws:defaultTags: not supported by ImageExport" in output_of(refused_preview)
    project.run("config", "rm", "aws:defaultTags")
    project.up()  # records the restored config on the provider, which destroy uses
    project.destroy()
