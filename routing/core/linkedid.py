"""A call's Linkedid, which is also its contact record's id (pure).

Asterisk gives every channel a Uniqueid of the form ``<seconds>.<sequence>``: the Unix time the
channel was made (a C ``long``: at most 19 digits) and the count of channels made since Asterisk
started (a C ``int``: at most 10 digits), e.g. ``1795533594.71``. A call's Linkedid is the
Uniqueid of its first channel; callrouter files the call's contact record under it, and passes it
to a partner centre in ``X-Callrouter-Linkedid``. Every place that takes one from outside (a web
request, a header, a stored callback) checks it here, with the same bounds.
"""

from __future__ import annotations

import re

SECONDS_DIGITS_MAX = 19
SEQUENCE_DIGITS_MAX = 10
LINKEDID_MAX = SECONDS_DIGITS_MAX + 1 + SEQUENCE_DIGITS_MAX
LINKEDID_PATTERN = rf"[0-9]{{1,{SECONDS_DIGITS_MAX}}}\.[0-9]{{1,{SEQUENCE_DIGITS_MAX}}}"
"""The shape, for :func:`re.fullmatch` (no anchors: ``$`` would let a trailing newline in)."""
LINKEDID = re.compile(LINKEDID_PATTERN)


def is_linkedid(text: str) -> bool:
    """Whether ``text`` is a whole Linkedid (digits.digits within the bounds), nothing around it."""
    return LINKEDID.fullmatch(text) is not None
