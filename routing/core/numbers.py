"""Phone numbers: normalise to E.164 and show in UK national form (pure)."""

from __future__ import annotations

import re

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
