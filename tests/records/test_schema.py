"""The published JSON Schema of the contact record is the one the model generates."""

from __future__ import annotations

import json

import jsonschema
import pytest

from records.model import SCHEMA_ID, SCHEMA_VERSION, json_schema, json_schema_text
from tests.records.support import SCHEMA_FILE


def test_the_checked_in_schema_is_the_generated_one() -> None:
    """docs/contact-record.schema.json is regenerated with `python -m records.model`."""
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text()


def test_the_schema_is_a_valid_draft_2020_12_schema_naming_its_version() -> None:
    document = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$id"] == SCHEMA_ID == f"urn:callrouter:contact-record:{SCHEMA_VERSION}"
    assert document["properties"]["schema_version"] == {
        "const": SCHEMA_VERSION,
        "title": "Schema Version",
        "type": "integer",
    }


def test_the_schema_refuses_what_a_record_must_not_hold() -> None:
    """A survey score outside +1/0/-1, a key that is not one DTMF key, an unknown field."""
    validator = jsonschema.Draft202012Validator(json_schema())
    survey = json_schema()["properties"]["survey"]
    assert not jsonschema.Draft202012Validator(survey).is_valid(2)
    key = json_schema()["$defs"]["MenuVisit"]["properties"]["keys"]["items"]
    assert not jsonschema.Draft202012Validator(key).is_valid("4111111111111111")
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"unexpected": 1})
