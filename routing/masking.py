"""Caller numbers are personal data: what of them may be shown in logs, traces and views."""

from __future__ import annotations

import re

_ASCII_DIGIT = re.compile(r"[0-9]")
_NUMBER_LIKE = re.compile(r"[0-9]{7,}")
_VISIBLE_DIGITS = 3


def mask_number(number: str) -> str:
    """Hide all but the last three characters of a phone number.

    ``01632960123`` -> ``********123``. Values without digits (``""``, ``anonymous``,
    ``unknown``, ``withheld``) and numbers of three characters or fewer are returned as-is.
    Masking is idempotent (a masked value is returned unchanged)."""
    hidden = len(number) - _VISIBLE_DIGITS
    if hidden <= 0:
        return number
    head = number[:hidden]
    if head == "*" * hidden:  # already masked (a bound ``caller``, at every event)
        return number
    if number.isascii():
        if _ASCII_DIGIT.search(number) is None:
            return number
    elif not any(char.isdigit() for char in number):
        return number
    return "*" * hidden + number[hidden:]


def shown_escaped(text: str, limit: int) -> str:
    """Text from outside (a name Asterisk sent) as a log line may show it: cut to ``limit``
    characters, escaped (a quoted Python literal: no control character, no line break), and any
    run of 7 or more digits masked with :func:`mask_number`, as a caller number would be."""
    return ascii(_NUMBER_LIKE.sub(lambda run: mask_number(run[0]), text[:limit]))
