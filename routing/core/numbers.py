"""Phone numbers: normalise to E.164 and show in UK national form (pure)."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

_SEPARATORS = re.compile(r"[\s\-().]")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class NumberError(ValueError):
    """A string that cannot be read as a phone number."""


def normalise(raw: str, country_code: str = "44") -> str:
    """Return ``raw`` in E.164 form: ``01632 960001`` -> ``+441632960001``.

    Accepts E.164 (``+44...``), international with ``00``, national with a
    trunk ``0``, and the bare ``44...`` form some carriers put in the DNID."""
    digits = _SEPARATORS.sub("", raw)
    if digits.startswith("+"):
        candidate = digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    elif digits.startswith("0"):
        candidate = f"+{country_code}{digits[1:]}"
    elif digits.startswith(country_code) and len(digits) >= 11:
        candidate = "+" + digits
    else:
        raise NumberError(f"'{raw}' is not a phone number (expected 01632 960001 or +441632960001)")
    if not _E164.match(candidate):
        raise NumberError(f"'{raw}' is not a phone number (expected 01632 960001 or +441632960001)")
    return candidate


def try_normalise(raw: str) -> str | None:
    """Like :func:`normalise`, but ``None`` for anything that is not a number."""
    try:
        return normalise(raw)
    except NumberError:
        return None


def display(e164: str) -> str:
    """Show a UK number the way a person writes it: ``+441632960001`` -> ``01632 960001``."""
    if not e164.startswith("+44"):
        return e164
    national = "0" + e164[3:]
    if len(national) == 11:
        return f"{national[:5]} {national[5:]}"
    return national


# --- callback numbers: what kind of UK number a caller keyed ---------------------------------

NumberKind = Literal["geographic", "non_geographic", "mobile", "freephone", "premium", "international"]
"""Ofcom's ranges as a callback needs them (the plan's ``CallbackPolicy.allow_numbers``)."""

_NATIONAL = re.compile(r"^0[1-9][0-9]{8,9}$")  # the trunk 0 and 9 or 10 digits
_SHORT_PREMIUM = re.compile(r"^118[0-9]{3}$")  # directory enquiries (118 xxx)


@dataclass(frozen=True, slots=True)
class Classified:
    """A keyed or presented number: its ``kind`` and E.164 form, or ``kind`` None with the
    ``problem`` (not a number, not a UK range a person can be called on)."""

    kind: NumberKind | None
    e164: str | None = None
    problem: str = ""


def _uk_kind(national: str) -> NumberKind | None:
    """The kind of a UK national number (``0`` + 9 or 10 digits), None for unused ranges."""
    if national[:2] in ("01", "02"):
        return "geographic"
    if national[:2] == "03":
        return "non_geographic" if len(national) == 11 else None
    if national[:3] in ("070", "076"):
        return "premium"  # personal numbering and pagers: charged at a premium rate
    if national[:2] == "07":
        return "mobile" if len(national) == 11 else None
    if national[:3] == "080":
        return "freephone"
    if national[:2] == "09" or national[:3] in ("084", "087"):
        return "premium" if len(national) == 11 else None
    return None  # 04, 05, 06, 081-083, 085, 086, 088, 089: nothing a person is called on


def classify(raw: str, country_code: str = "44") -> Classified:
    """What kind of number ``raw`` is (pure): keyed digits (``07700900123``, ``00...``), the
    caller id Asterisk presents, or E.164. Premium-rate ranges (09, 084, 087, 070, 076, 118)
    and international numbers are classified, not refused: the plan's ``allow_numbers`` decides.
    """
    digits = _SEPARATORS.sub("", raw)
    if _SHORT_PREMIUM.match(digits):
        return Classified("premium", None, "a directory enquiries number")
    try:
        e164 = normalise(digits, country_code)
    except NumberError:
        return Classified(None, None, "not a phone number")
    if not e164.startswith(f"+{country_code}"):
        return Classified("international", e164)
    national = "0" + e164[1 + len(country_code) :]
    if not _NATIONAL.match(national):
        return Classified(None, None, "not the length of a UK number")
    kind = _uk_kind(national)
    if kind is None:
        return Classified(None, None, "not a UK range a person can be called on")
    return Classified(kind, e164)


def callback_number(raw: str, allowed: Collection[str]) -> Classified:
    """``raw`` as a number to call back: classified, and refused (``e164`` None, ``problem``
    set, ``kind`` kept for the record) unless its kind is in ``allowed``."""
    found = classify(raw)
    if found.kind is None or found.kind in allowed:
        return found
    return Classified(found.kind, None, f"{found.kind.replace('_', '-')} numbers are not called back")
