"""The callback number classifier: which UK ranges a caller may be called back on."""

from __future__ import annotations

import pytest

from routing.core.numbers import callback_number, classify

DEFAULT_ALLOWED = ("geographic", "non_geographic", "mobile")


@pytest.mark.parametrize(
    ("keyed", "kind", "e164"),
    [
        ("01632960123", "geographic", "+441632960123"),
        ("02079460000", "geographic", "+442079460000"),
        ("03001234567", "non_geographic", "+443001234567"),
        ("07700900123", "mobile", "+447700900123"),
        ("+447700900123", "mobile", "+447700900123"),
        ("08001234567", "freephone", "+448001234567"),
        ("0800123456", "freephone", "+44800123456"),
        ("07000123456", "premium", "+447000123456"),
        ("07624123456", "premium", "+447624123456"),
        ("09012345678", "premium", "+449012345678"),
        ("08451234567", "premium", "+448451234567"),
        ("08701234567", "premium", "+448701234567"),
        ("0033123456789", "international", "+33123456789"),
    ],
)
def test_kinds(keyed: str, kind: str, e164: str) -> None:
    found = classify(keyed)
    assert (found.kind, found.e164) == (kind, e164)


@pytest.mark.parametrize("keyed", ["", "12345", "0555123456", "0412345678", "077009001", "0770090012345"])
def test_not_a_number_to_call(keyed: str) -> None:
    found = classify(keyed)
    assert found.kind is None
    assert found.e164 is None
    assert found.problem


def test_directory_enquiries_is_premium() -> None:
    assert classify("118118").kind == "premium"


@pytest.mark.parametrize("keyed", ["09012345678", "08451234567", "118118", "0033123456789", "07000123456"])
def test_premium_and_international_refused_by_default(keyed: str) -> None:
    found = callback_number(keyed, DEFAULT_ALLOWED)
    assert found.e164 is None
    assert found.kind in ("premium", "international")
    assert "not called back" in found.problem or found.kind == "premium"


def test_international_allowed_when_the_plan_lists_it() -> None:
    found = callback_number("0033123456789", (*DEFAULT_ALLOWED, "international"))
    assert (found.kind, found.e164) == ("international", "+33123456789")


def test_freephone_only_when_listed() -> None:
    assert callback_number("08001234567", DEFAULT_ALLOWED).e164 is None
    assert callback_number("08001234567", ("freephone",)).e164 == "+448001234567"
