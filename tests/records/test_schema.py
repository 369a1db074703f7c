"""The published JSON Schema of the contact record is the one the model generates."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import pytest
from pydantic import ValidationError

from records.model import (
    SCHEMA_ID,
    SCHEMA_VERSION,
    CallLanguage,
    ContactRecord,
    json_schema,
    json_schema_text,
)
from routing.core.linkedid import is_linkedid
from tests.records import factory
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


def test_a_record_of_schema_1_is_read_as_schema_2() -> None:
    """Schema 2 added ``language`` and ``callback`` (both optional): a record written under
    schema 1 (the archive keeps them) reads as a schema 2 record without them; a record naming
    a schema this code does not know is refused."""
    arrived = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    current = json.loads(factory.record("1795970000.7", arrived).model_dump_json())
    old = {k: v for k, v in current.items() if k not in ("language", "callback")} | {"schema_version": 1}
    read = ContactRecord.model_validate_json(json.dumps(old))
    assert read.schema_version == SCHEMA_VERSION == 2
    assert (read.language, read.callback) == (None, None)
    with pytest.raises(ValidationError):
        ContactRecord.model_validate_json(json.dumps(old | {"schema_version": 3}))


def test_the_language_may_have_come_with_the_call_from_a_partner() -> None:
    """``language.how`` = ``hop``: the language came with the call from a partner centre. The
    published schema takes it, and refuses a ``how`` it does not list."""
    arrived = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    current = json.loads(factory.record("1795970000.7", arrived).model_dump_json())
    validator = jsonschema.Draft202012Validator(json_schema())
    hop = current | {"language": {"code": "cy", "how": "hop", "key": None}}
    validator.validate(hop)
    assert ContactRecord.model_validate_json(json.dumps(hop)).language == CallLanguage(
        code="cy", how="hop", key=None
    )
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(current | {"language": {"code": "cy", "how": "carried", "key": None}})


@pytest.mark.parametrize(
    "record_id",
    [
        "1795970000.7",
        "ast1.charnwood.example-1795970000.7",  # systemname set (asterisk.conf): "%s-%li.%d"
        "harborough-pbx_2-1795970000.7",
        "n" * 64 + "-" + "9" * 19 + "." + "9" * 10,
    ],
)
def test_a_record_id_is_a_linkedid_with_or_without_a_system_name(record_id: str) -> None:
    """Schema 2 takes a Linkedid from an Asterisk with ``systemname`` set (docs/contact-records.md):
    the model (pydantic's regex engine) and the published schema (a JSON Schema validator) agree
    with ``routing.core.linkedid`` on what an id is, ``id`` and ``hop_from.id`` alike."""
    arrived = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    current = json.loads(factory.record("1795970000.7", arrived).model_dump_json())
    named = current | {"id": record_id, "hop_from": {"centre": "harborough", "id": record_id}}
    jsonschema.Draft202012Validator(json_schema()).validate(named)
    assert ContactRecord.model_validate_json(json.dumps(named)).id == record_id
    assert is_linkedid(record_id)


@pytest.mark.parametrize(
    "record_id",
    [
        "-1795970000.7",
        "..-1795970000.7",
        "ast 1-1795970000.7",
        "ast/1-1795970000.7",
        "n" * 65 + "-1795970000.7",
        "1" * 20 + ".7",
    ],
)
def test_anything_else_is_refused_by_the_model_and_the_schema(record_id: str) -> None:
    arrived = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    current = json.loads(factory.record("1795970000.7", arrived).model_dump_json())
    validator = jsonschema.Draft202012Validator(json_schema())
    for bad in (
        current | {"id": record_id},
        current | {"hop_from": {"centre": "harborough", "id": record_id}},
    ):
        assert not validator.is_valid(bad)
        with pytest.raises(ValidationError):
            ContactRecord.model_validate_json(json.dumps(bad))
    assert not is_linkedid(record_id)


def test_the_model_refuses_a_trailing_line_break() -> None:
    """(Not asked of the schema here: JSON Schema patterns are ECMA-262, where ``$`` is the end of
    the text, but the jsonschema package reads them with Python's ``re``, where it is not.)"""
    arrived = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    current = json.loads(factory.record("1795970000.7", arrived).model_dump_json())
    with pytest.raises(ValidationError):
        ContactRecord.model_validate_json(json.dumps(current | {"id": "ast1-1795970000.7\n"}))
