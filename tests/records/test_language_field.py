"""The record's language: how a call's language was set, schema-valid, and old records still valid."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import get_args

import jsonschema
import pytest

from records.export import CSV_HEADER, csv_row
from records.facts import CallArrived, IvrAbandoned, LanguageChosen
from records.model import ContactRecord, LanguageHow
from routing.core.language import ChoiceHow
from tests.records.factory import record
from tests.records.support import CALLER, all_due, builder, schema

ARRIVED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fact", "expected"),
    [
        (LanguageChosen("1.1", 11.0, "cy", "chosen", "1"), {"code": "cy", "how": "chosen", "key": "1"}),
        (LanguageChosen("1.1", 11.0, "cy", "timeout"), {"code": "cy", "how": "timeout", "key": None}),
        (LanguageChosen("1.1", 11.0, "cy", "invalid"), {"code": "cy", "how": "invalid", "key": None}),
        (LanguageChosen("1.1", 11.0, "en", "single"), {"code": "en", "how": "single", "key": None}),
        (LanguageChosen("1.1", 11.0, "cy", "not_offered"), {"code": "cy", "how": "not_offered", "key": None}),
    ],
)
def test_each_way_a_language_is_set(fact: LanguageChosen, expected: dict[str, str | None]) -> None:
    b = builder(grace_s=0.0)
    b.feed_ivr(CallArrived("1.1", 10.0, dialled="+441632960001", caller=CALLER, tenant="harborough"))
    b.feed_ivr(fact)
    b.feed_ivr(IvrAbandoned("1.1", 12.0, "main"))
    [document] = all_due(b, 12.0)  # checked against the published schema
    assert document["language"] == expected


def test_a_call_that_reached_no_route_has_no_language() -> None:
    b = builder(grace_s=0.0)
    b.feed_ivr(CallArrived("1.2", 10.0, dialled="+441632960001", caller=CALLER, tenant="harborough"))
    b.feed_ivr(IvrAbandoned("1.2", 10.5, "route"))
    [document] = all_due(b, 11.0)
    assert document["language"] is None


@pytest.mark.parametrize(
    "fact",
    [
        LanguageChosen("1.1", 11.0, "Welsh", "chosen", "1"),
        LanguageChosen("1.1", 11.0, "cy", "guessed"),  # type: ignore[arg-type]
        LanguageChosen("1.1", 11.0, "cy", "chosen", "12"),
    ],
    ids=["not-a-code", "unknown-how", "not-a-key"],
)
def test_a_malformed_language_fact_is_refused_before_it_touches_a_record(fact: LanguageChosen) -> None:
    b = builder(grace_s=0.0)
    with pytest.raises(ValueError, match="LanguageChosen"):
        b.feed_ivr(fact)
    assert all_due(b, 100.0) == []


def test_a_record_made_before_the_language_field_is_still_valid() -> None:
    """Records already delivered or archived have no ``language`` key: the schema and the model
    still accept them (it is not required), and read it as null."""
    document = record("1795533594.71", ARRIVED).model_dump(mode="json")
    del document["language"]
    jsonschema.validate(document, schema(), format_checker=jsonschema.FormatChecker())
    assert ContactRecord.model_validate_json(json.dumps(document)).language is None
    assert "language" not in schema()["required"]


def test_the_export_has_the_language_and_how() -> None:
    welsh = record("1795533594.72", ARRIVED, language={"code": "cy", "how": "chosen", "key": "1"})
    older = record("1795533594.73", ARRIVED)
    rows = [dict(zip(CSV_HEADER, csv_row(r), strict=True)) for r in (welsh, older)]
    assert [(row["language"], row["language_how"]) for row in rows] == [("cy", "chosen"), ("", "")]


def test_the_record_knows_every_way_the_controller_sets_a_language() -> None:
    assert get_args(LanguageHow) == get_args(ChoiceHow)
