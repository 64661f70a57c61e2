"""ExportSpec validation and normalisation: pure functions, tested directly."""

import pytest

from export_image_provider.spec import ExportSpec, normalize, to_spec, validate

VALID = {"image_id": "ami-0123456789abcdef0", "disk_image_format": "vmdk", "s3_bucket": "my-exports"}


def problems(**changes):
    return {p.property: p.reason for p in validate(normalize({**VALID, **changes}))}


def test_valid_input_is_normalised_with_defaults():
    props = normalize(VALID)
    assert validate(props) == []
    assert props["disk_image_format"] == "VMDK"
    assert props["s3_prefix"] == "" and props["role_name"] == "vmimport"
    assert props["wait_for_completion"] is True and props["timeout_minutes"] == 360
    assert props["tags"] == {}


@pytest.mark.parametrize(
    "changes, prop, words",
    [
        ({"image_id": ""}, "image_id", "required"),
        ({"image_id": None}, "image_id", "required"),
        ({"image_id": "i-0123456789abcdef0"}, "image_id", "not an AMI id"),
        ({"image_id": "ami-XYZ"}, "image_id", "not an AMI id"),
        ({"image_id": 42}, "image_id", "must be a string"),
        ({"disk_image_format": "qcow2"}, "disk_image_format", "VMDK, RAW, VHD"),
        ({"disk_image_format": None}, "disk_image_format", "required"),
        ({"disk_image_format": 3}, "disk_image_format", "must be one of"),
        ({"s3_bucket": "s3://my-exports"}, "s3_bucket", "name only"),
        ({"s3_bucket": "my-exports/images"}, "s3_bucket", "name only"),
        ({"s3_bucket": "My_Bucket"}, "s3_bucket", "not a valid S3 bucket name"),
        ({"s3_bucket": "ab"}, "s3_bucket", "not a valid S3 bucket name"),
        ({"s3_bucket": "a..b"}, "s3_bucket", "not a valid S3 bucket name"),
        ({"s3_bucket": "192.168.1.1"}, "s3_bucket", "not a valid S3 bucket name"),
        ({"s3_bucket": "xn--exports"}, "s3_bucket", "not a valid S3 bucket name"),
        ({"s3_bucket": "exports-s3alias"}, "s3_bucket", "not a valid S3 bucket name"),
        ({"s3_bucket": None}, "s3_bucket", "required"),
        ({"s3_prefix": "/exports/"}, "s3_prefix", "use 'exports/'"),
        ({"s3_prefix": 5}, "s3_prefix", "must be a string"),
        ({"s3_prefix": "x" * 1000}, "s3_prefix", "1024"),
        ({"role_name": "arn:aws:iam::123456789012:role/vmimport"}, "role_name", "name only"),
        ({"role_name": "bad role"}, "role_name", "not an IAM role name"),
        ({"description": "d" * 256}, "description", "at most 255"),
        ({"description": 7}, "description", "must be a string"),
        ({"tags": {"aws:team": "x"}}, "tags", "AWS reserves"),
        ({"tags": {"k" * 128: "x"}}, "tags", "at most 127"),
        ({"tags": {"team": "v" * 257}}, "tags", "at most 256"),
        ({"tags": {"team": 3}}, "tags", "must be a string"),
        ({"tags": {"export-image-provider:resource": "x"}}, "tags", "reserves"),
        ({"tags": {f"k{i}": "v" for i in range(47)}}, "tags", "at most 46"),
        ({"tags": ["team"]}, "tags", "mapping"),
        ({"region": "Europe"}, "region", "not an AWS region"),
        ({"wait_for_completion": "yes"}, "wait_for_completion", "true or false"),
        ({"timeout_minutes": 0}, "timeout_minutes", "positive"),
        ({"timeout_minutes": -5}, "timeout_minutes", "positive"),
        ({"timeout_minutes": "soon"}, "timeout_minutes", "number of minutes"),
        ({"existing_task_id": "ami-0123456789abcdef0"}, "existing_task_id", "not an export-image task id"),
    ],
)
def test_each_invalid_input_names_the_argument_and_the_fix(changes, prop, words):
    found = problems(**changes)
    assert prop in found, found
    assert words in found[prop]
    assert list(found) == [prop]


@pytest.mark.parametrize(
    "changes",
    [
        {"image_id": "ami-0123abcd"},
        {"s3_bucket": "abc"},
        {"s3_prefix": "p" * 980},
        {"s3_prefix": "\u00e9" * 490},
        {"role_name": "r" * 64},
        {"description": "d" * 255},
        {"tags": {"k" * 127: "v" * 256}},
        {"tags": {f"k{i}": "v" for i in range(46)}},
        {"region": "eu-west-1"},
        {"wait_for_completion": False},
        {"timeout_minutes": 0.5},
        {"existing_task_id": "export-ami-0123456789abcdef0"},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_each_input_at_its_limit_is_accepted(changes):
    assert problems(**changes) == {}


def test_a_long_tag_key_is_shown_by_its_first_20_characters():
    assert problems(tags={"k" * 128: "x"})["tags"].startswith(f"key {'k' * 20!r}... is 128 characters long")


def test_tags_after_an_unknown_value_are_still_checked():
    unknown = object()
    props = normalize({**VALID, "tags": {"team": unknown, "aws:team": "x"}})
    assert [p.property for p in validate(props, lambda v: v is unknown)] == ["tags"]


def test_a_prefix_is_measured_in_bytes_not_characters():
    assert "s3_prefix" in problems(s3_prefix="\u00e9" * 491)


def test_unknown_values_pass_validation():
    unknown = object()
    props = normalize({**VALID, "s3_bucket": unknown, "tags": {"team": unknown}})
    assert validate(props, lambda v: v is unknown) == []


def test_arguments_after_an_unknown_value_are_still_checked():
    unknown = object()
    props = normalize({**VALID, "image_id": unknown, "description": "d" * 256})
    assert [p.property for p in validate(props, lambda v: v is unknown)] == ["description"]


def test_specs_and_problems_are_immutable():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        to_spec(VALID).s3_prefix = "elsewhere/"
    [problem] = validate(normalize({**VALID, "image_id": ""}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.reason = "fine"


def test_format_is_case_insensitive_and_upper_in_spec():
    spec = to_spec({**VALID, "disk_image_format": "Vhd", "s3_prefix": "exports/"})
    assert spec.disk_image_format == "VHD"
    assert spec.s3_key("export-ami-0123456789abcdef0") == "exports/export-ami-0123456789abcdef0.vhd"


def test_to_spec_keeps_the_task_to_adopt_and_reads_empty_as_none():
    assert to_spec({**VALID, "existing_task_id": "export-ami-0123456789abcdef0"}).existing_task_id == (
        "export-ami-0123456789abcdef0")
    assert to_spec({**VALID, "existing_task_id": ""}).existing_task_id is None


def test_to_spec_refuses_invalid_props():
    with pytest.raises(ValueError, match="disk_image_format"):
        to_spec({**VALID, "disk_image_format": "iso"})


def test_fingerprint_follows_what_the_export_produces():
    base = to_spec(VALID)
    assert base.fingerprint() == to_spec({**VALID, "disk_image_format": "VMDK"}).fingerprint()
    assert base.fingerprint() == to_spec({**VALID, "tags": {"team": "x"}, "timeout_minutes": 5}).fingerprint()
    assert base.fingerprint() != to_spec({**VALID, "disk_image_format": "RAW"}).fingerprint()
    assert base.fingerprint() != to_spec({**VALID, "s3_prefix": "p/"}).fingerprint()
    assert isinstance(base, ExportSpec)


def test_timeout_minutes_become_seconds_in_one_place():
    spec = ExportSpec(image_id="ami-0123456789abcdef0", disk_image_format="VMDK", s3_bucket="b", timeout_minutes=1.5)
    assert spec.timeout_seconds == 90.0
