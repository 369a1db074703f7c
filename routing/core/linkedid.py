"""A call's Linkedid, which is also its contact record's id (pure).

Asterisk gives every channel a Uniqueid of the form ``<seconds>.<sequence>``: the Unix time the
channel was made (a C ``long``: at most 19 digits) and the count of channels made since Asterisk
started (a C ``int``: at most 10 digits), e.g. ``1795533594.71``. When ``asterisk.conf`` sets
``systemname`` (or ``autosystemname = yes``, which takes the host's name), the Uniqueid is
``<systemname>-<seconds>.<sequence>`` instead (``main/channel_internal_api.c``: ``"%s-%li.%d"``),
e.g. ``harborough-ast1-1795533594.71``. A call's Linkedid is the Uniqueid of its first channel;
callrouter files the call's contact record under it, and passes it to a partner centre in
``X-Callrouter-Linkedid``. Every place that takes one from outside (a web request, a header, a
stored callback, a fact, an AMI event, an archived line) checks it here, with the same bounds.

The system name is bounded and restricted to what is safe everywhere the id travels (a URL path,
a Redis key, a CSV cell, JSON, a log line, a SIP header): 1 to :data:`SYSTEM_NAME_MAX` letters,
digits, ``.``, ``-`` and ``_``, starting with a letter or digit (so an id is never ``.`` or
``..``, and holds no ``/``, space, quote or separator). A host name, as ``autosystemname`` gives,
fits. A name may itself hold ``-``: an id is read from the right (:func:`split_linkedid`).
"""

from __future__ import annotations

import re

SECONDS_DIGITS_MAX = 19
SEQUENCE_DIGITS_MAX = 10
SYSTEM_NAME_MAX = 64
SYSTEM_NAME_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{SYSTEM_NAME_MAX - 1}}}"
"""asterisk.conf ``systemname`` as callrouter takes it, for :func:`re.fullmatch`."""
_SECONDS = rf"[0-9]{{1,{SECONDS_DIGITS_MAX}}}"
_SEQUENCE = rf"[0-9]{{1,{SEQUENCE_DIGITS_MAX}}}"
LINKEDID_MAX = SYSTEM_NAME_MAX + 1 + SECONDS_DIGITS_MAX + 1 + SEQUENCE_DIGITS_MAX
LINKEDID_PATTERN = rf"(?:{SYSTEM_NAME_PATTERN}-)?{_SECONDS}\.{_SEQUENCE}"
"""The shape, for :func:`re.fullmatch` (no anchors: ``$`` would let a trailing newline in). It
needs no look-around, so JSON Schema validators and pydantic's regex engine take it as it is."""
LINKEDID = re.compile(LINKEDID_PATTERN)
SYSTEM_NAME = re.compile(SYSTEM_NAME_PATTERN)
_PARTS = re.compile(rf"(?:({SYSTEM_NAME_PATTERN})-)?({_SECONDS})\.({_SEQUENCE})")

FIX = "set systemname in asterisk.conf to letters, digits, '.', '-' and '_' only (64 at most)"
"""What to do about an Asterisk whose ids do not fit (said where one is refused)."""


def is_linkedid(text: str) -> bool:
    """Whether ``text`` is a whole Linkedid (``[<systemname>-]<seconds>.<sequence>`` within the
    bounds), nothing around it."""
    return LINKEDID.fullmatch(text) is not None


def is_system_name(text: str) -> bool:
    """Whether ``text`` is a ``systemname`` whose ids callrouter takes."""
    return SYSTEM_NAME.fullmatch(text) is not None


def split_linkedid(text: str) -> tuple[str, int, int] | None:
    """``(system name or "", seconds, sequence)`` of a Linkedid; None when ``text`` is not one.
    The digits are the last ``-``'s right (a name may hold ``-``; the digits part never does)."""
    match = _PARTS.fullmatch(text)
    if match is None:
        return None
    return match[1] or "", int(match[2]), int(match[3])


def linkedid_seconds(text: str) -> int | None:
    """The Unix time the call's first channel was made, from its Linkedid (None: not one)."""
    parts = split_linkedid(text)
    return None if parts is None else parts[1]


def make_uniqueid(seconds: int, sequence: int, system_name: str = "") -> str:
    """A Uniqueid as Asterisk makes it: ``"%li.%d"``, or ``"%s-%li.%d"`` with a system name
    (``main/channel_internal_api.c``). The name is used as given (Asterisk does not check it)."""
    return f"{system_name}-{seconds}.{sequence}" if system_name else f"{seconds}.{sequence}"
