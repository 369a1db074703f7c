"""The dialplan lines of ``X-Callrouter-Language`` (the caller's language, sent with a call to a
partner centre). ``agi_inbound_language_header.txt`` ran them as shipped
(``test_language_header_conformance.py``); the earlier partner-header captures ran the shipped
contexts without them, so a test replaying one of those leaves these lines out."""

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
