"""The provider plugin's schema, checked against the code's own tables, and its value translation (pure: no CLI, no AWS).

The schema is generated from spec.py, provider.py and stack_config.py; these
checks pin that what the engine and the SDK generators read says the same as
what the provider does: every input the spec takes, exactly the replacing ones
in ``replaceOnChanges``, every output, and credentials as secrets.
"""

from __future__ import annotations

import json
import subprocess
import sys

from pulumi_cli import REPO_ROOT

from export_image_provider.plugin import schema as plugin_schema
from export_image_provider.plugin.values import camel, snake
from export_image_provider.provider import BEHAVIOUR_PROPERTIES, OUTPUT_PROPERTIES, ImageExportProvider
from export_image_provider.spec import REPLACE_PROPERTIES, UPDATE_PROPERTIES, normalize
from export_image_provider.stack_config import KEYS

SCHEMA = plugin_schema.schema()
RESOURCE = SCHEMA["resources"]["export-image:index:ImageExport"]
SPEC_INPUTS = {*REPLACE_PROPERTIES, *UPDATE_PROPERTIES, *BEHAVIOUR_PROPERTIES}


def test_every_spec_input_is_a_described_input_in_camel_case():
    assert {snake(name) for name in RESOURCE["inputProperties"]} == SPEC_INPUTS
    assert "s3ObjectSize" in RESOURCE["properties"] and "imageId" in RESOURCE["inputProperties"]
    for name, prop in RESOURCE["inputProperties"].items():
        assert prop.get("description"), name
        assert prop.get("type"), name
    assert set(RESOURCE["requiredInputs"]) == {"imageId", "diskImageFormat", "s3Bucket"}


def test_the_required_inputs_are_the_ones_the_spec_cannot_do_without():
    # normalize fills every default: the inputs it leaves unset are exactly the required ones (or optional ones).
    defaulted = {name for name, value in normalize({}).items() if value is not None}
    assert not defaulted & {snake(name) for name in RESOURCE["requiredInputs"]}


def test_replace_on_changes_is_exactly_the_replacing_inputs():
    assert sorted(RESOURCE["replaceOnChanges"]) == sorted(camel(name) for name in REPLACE_PROPERTIES)
    # ...and the provider's diff agrees: changing each one replaces, changing tags does not.
    provider = ImageExportProvider()
    olds = normalize({"image_id": "ami-12345678", "disk_image_format": "VMDK", "s3_bucket": "bucket-one",
                      "region": "us-east-1", "description": "d", "role_name": "vmimport", "s3_prefix": "p/"})
    changed = {"image_id": "ami-87654321", "disk_image_format": "RAW", "s3_bucket": "bucket-two",
               "s3_prefix": "q/", "role_name": "other", "description": "e", "region": "eu-west-1",
               "tags": {"a": "b"}}
    replacing = {name for name, value in changed.items()
                 if provider.diff("export-ami-0123456789abcdef0", olds, {**olds, name: value}).replaces}
    assert {camel(name) for name in replacing} == set(RESOURCE["replaceOnChanges"])


def test_outputs_are_every_input_and_every_output_property():
    assert {snake(name) for name in RESOURCE["properties"]} == SPEC_INPUTS | set(OUTPUT_PROPERTIES)
    for name, prop in RESOURCE["properties"].items():
        assert prop.get("description") and prop.get("type"), name
    assert set(RESOURCE["required"]) <= set(RESOURCE["properties"])
    assert {"imageId", "roleName"}.isdisjoint(RESOURCE["required"]), "an imported export has neither"


def test_credentials_are_secret_config_and_the_config_is_the_honoured_keys():
    variables = SCHEMA["config"]["variables"]
    assert set(variables) == {key for key, rule in KEYS.items() if rule.honoured}
    assert {key for key, prop in variables.items() if prop.get("secret")} == {"accessKey", "secretKey", "token"}
    assert SCHEMA["provider"]["inputProperties"] == variables


def test_camel_and_snake_are_inverse_on_every_name():
    for name in SPEC_INPUTS | set(OUTPUT_PROPERTIES):
        assert snake(camel(name)) == name


def test_module_prints_the_schema_as_json():
    printed = subprocess.run([sys.executable, "-m", "export_image_provider.plugin.schema"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(printed) == json.loads(json.dumps(SCHEMA))
    assert json.loads(printed)["name"] == "export-image"


# -- values.py: the engine's property values to the core's plain dicts and back ---------------------


def test_unknowns_cross_both_ways_as_the_engines_unknown():
    from pulumi.provider.experimental.property_value import PropertyValue
    from pulumi.runtime.rpc import UNKNOWN

    from export_image_provider.plugin.values import inputs, outputs

    # On the wire an unknown is the engine's sentinel string (the SDK cannot marshal its own Computed).
    core = {"s3_prefix": UNKNOWN, "tags": {"a": UNKNOWN}}
    wire = PropertyValue.marshal_map(outputs(core))
    assert wire["s3Prefix"] == UNKNOWN
    assert wire["tags"]["a"] == UNKNOWN
    assert inputs(PropertyValue.unmarshal_map(wire)) == core
    assert inputs({"s3Prefix": PropertyValue.computed()}) == {"s3_prefix": UNKNOWN}


def test_numbers_are_floats_on_the_wire_and_integers_in_the_core():
    from pulumi.provider.experimental.property_value import PropertyValue

    from export_image_provider.plugin.values import inputs, outputs

    assert outputs({"s3_object_size": 78, "progress": None, "status": "completed"}) == {
        "s3ObjectSize": PropertyValue(78.0), "status": PropertyValue("completed")}
    core = inputs({"s3ObjectSize": PropertyValue(78.0), "timeoutMinutes": PropertyValue(90.0)})
    assert core == {"s3_object_size": 78, "timeout_minutes": 90.0} and isinstance(core["s3_object_size"], int)


def test_tag_keys_are_the_users_and_are_not_renamed():
    from pulumi.provider.experimental.property_value import PropertyValue

    from export_image_provider.plugin.values import inputs, outputs

    tags = {"costCenter": PropertyValue("x"), "team_name": PropertyValue("y")}
    assert inputs({"tags": PropertyValue(tags)})["tags"] == {"costCenter": "x", "team_name": "y"}
    assert set(outputs({"tags": {"costCenter": "x"}})["tags"].value) == {"costCenter"}


def test_secret_inputs_stay_secret_in_what_the_plugin_answers():
    from pulumi.provider.experimental.property_value import PropertyValue

    from export_image_provider.plugin.provider import _answer, _secret_names
    from export_image_provider.plugin.values import inputs

    given = {"description": PropertyValue("private", is_secret=True), "s3Bucket": PropertyValue("b")}
    answered = _answer(inputs(given), _secret_names(given))
    assert answered["description"].is_secret and not answered["s3Bucket"].is_secret
    assert inputs(given)["description"] == "private"


def test_resource_key_is_the_dynamic_resources_project_stack_name():
    from export_image_provider.plugin.provider import resource_key

    urn = "urn:pulumi:dev::export-image-yaml::export-image:index:ImageExport::nightly"
    assert resource_key(urn) == "export-image-yaml/dev/nightly"
