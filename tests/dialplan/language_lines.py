"""The dialplan lines of ``X-Callrouter-Language`` (the caller's language, sent with a call to a
partner centre), which no capture ran: each is a captured line of ``X-Callrouter-Dialled`` with
the header's and the variable's names changed (checked in ``test_language_header_conformance.py``)."""

from __future__ import annotations

# callrouter-inbound: cleared, then read and URI-encoded on a PJSIP channel
LANGUAGE_INBOUND_LINES = (
    "same => n,Set(CR_FROM_LANGUAGE=)",
    "same => n,Set(CR_FROM_LANGUAGE=${URIENCODE(${PJSIP_HEADER(read,X-Callrouter-Language)})})",
)
# callrouter-headers,partner: added on the dialled leg from the pre-dial handler's 4th argument
LANGUAGE_HEADER_LINE = (
    'same => n,ExecIf($["${ARG4}" != ""]?Set(PJSIP_HEADER(add,X-Callrouter-Language)=${ARG4}))'
)


def as_dialled(line: str) -> str:
    """A language line as the captured X-Callrouter-Dialled line it copies."""
    renamed = line.replace("CR_FROM_LANGUAGE", "CR_FROM_DIALLED")
    return renamed.replace("X-Callrouter-Language", "X-Callrouter-Dialled")
