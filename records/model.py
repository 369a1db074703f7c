"""The contact record: one per call, keyed by the call's Linkedid (pure).

Every field is always present (``null`` or an empty list when it does not apply), so a CRM
can rely on the shape. ``schema_version`` names the JSON Schema the record follows
(``docs/contact-record.schema.json``); ``version`` counts the record's own revisions (a
disposition that arrives after the record was delivered makes version 2).

What a record never holds: card data, the digits of a payment reference, any key typed at a
payment or reference prompt. The complete caller number is in ``caller.number`` only.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from routing.core.linkedid import LINKEDID_MAX, LINKEDID_PATTERN

SCHEMA_VERSION: Literal[2] = 2
"""2: ``language`` (``how``: chosen, timeout, invalid, single, not_offered or hop) and ``callback``
added (optional: a record of version 1 is read as one of version 2 without them, e.g. from the
archive)."""
SCHEMA_ID = f"urn:callrouter:contact-record:{SCHEMA_VERSION}"

CALLER_MAX = 40
"""Longest caller number kept (E.164 numbers have at most 15 digits)."""
TEXT_MAX = 200
"""Longest free text kept in a field (longer text is cut)."""
LIST_MAX = 200
"""Most items kept in a list (menus, keys, reasons, transfers...): a looping caller cannot grow a record."""

Text = Annotated[str, Field(max_length=TEXT_MAX)]
Linkedid = Annotated[str, Field(max_length=LINKEDID_MAX, pattern=f"^{LINKEDID_PATTERN}$")]
"""A call's Linkedid: ``[<systemname>-]<seconds>.<sequence>`` (:mod:`routing.core.linkedid`)."""
DtmfKey = Annotated[str, Field(pattern=r"^[0-9*#]$")]
Seconds = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]

DecisionKind = Literal["open", "closed", "holiday", "emergency", "overflow", "unknown_number"]
QueueOutcome = Literal["answered", "abandoned", "timed_out", "withdrawn", "callback", "unknown"]
HungUpBy = Literal["caller", "adviser", "centre", "unknown"]
TransferKind = Literal["blind", "attended"]
TransferResult = Literal["completed", "returned", "failed", "attempted"]
DispositionKind = Literal["resolved", "back_office", "avoidable", "complaint"]
SurveyScore = Literal[-1, 0, 1]
LanguageHow = Literal["chosen", "timeout", "invalid", "single", "not_offered", "hop"]
LANGUAGE_CODE = r"^[a-z]{2}(_[A-Z]{2})?$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Caller(Model):
    """Who called: the complete number (for the CRM and the owner's export only) and a keyed hash."""

    number: Annotated[str, Field(max_length=CALLER_MAX)] | None = Field(
        description="The calling number as presented; null when withheld or unknown."
    )
    hash: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")] | None = Field(
        description="HMAC-SHA256 of the number in E.164 form with the deployment's key, base64url "
        "without padding: counts repeat callers and finds a person's records without the number."
    )
    withheld: bool


class MenuVisit(Model):
    menu: Text
    at: AwareDatetime
    keys: Annotated[list[DtmfKey], Field(max_length=LIST_MAX)] = Field(
        description="Menu keys pressed, in order (never digits typed at a payment or reference prompt)."
    )


class Announcement(Model):
    prompt: Text
    skipped: bool


class Ivr(Model):
    menus: Annotated[list[MenuVisit], Field(max_length=LIST_MAX)]
    invalid: Count = Field(description="Invalid keys pressed in menus.")
    timeouts: Count = Field(description="Menu prompts that timed out with no key.")
    announcements: Annotated[list[Announcement], Field(max_length=LIST_MAX)]
    abandoned: bool = Field(description="The caller hung up in the IVR, before any queue or hand-off.")
    abandoned_in: Text | None


class CallLanguage(Model):
    """The language the call was in, and how it was set."""

    code: Annotated[str, Field(pattern=LANGUAGE_CODE)] = Field(
        description="The channel's language for the call's prompts (Asterisk's code, e.g. cy, en)."
    )
    how: LanguageHow = Field(
        description="chosen: the caller pressed its key at the language choice; timeout: no key, so "
        "the tenant's default; invalid: only keys not offered, so the default; single: the tenant has "
        "one language (no choice); not_offered: sent on before any prompt (e.g. dialled out), the default; "
        "hop: a partner centre sent the call here with the language settled there (its record, hop_from, "
        "says how), so no choice was offered again."
    )
    key: DtmfKey | None = Field(description="The key that chose it (how = chosen).")


class RoutingDecision(Model):
    at: AwareDatetime
    kind: DecisionKind
    destination: Text
    reasons: Annotated[list[Text], Field(max_length=LIST_MAX)]


class QueueVisit(Model):
    queue: Text = Field(description="The Asterisk queue.")
    joined_at: AwareDatetime
    left_at: AwareDatetime | None
    position: Annotated[int, Field(ge=1)] | None = Field(description="Position on joining.")
    wait_s: Seconds | None = Field(description="Time in the queue, as Asterisk counts it (HoldTime).")
    unanswered_rings: Count = Field(description="Advisers rung who did not answer (AgentRingNoAnswer).")
    outcome: QueueOutcome


class Adviser(Model):
    centre: Text
    id: Text | None = Field(description="The queue member's interface, e.g. PJSIP/agent1.")
    name: Text | None


class Answered(Model):
    at: AwareDatetime
    by: Adviser
    queue: Text | None


class Transfer(Model):
    kind: TransferKind
    at: AwareDatetime
    to: Text = Field(description="The extension the adviser transferred to (a back-office team).")
    context: Text | None
    result: TransferResult


class Hop(Model):
    """The call crossed to a partner centre: it keeps this one record."""

    centre: Text
    at: AwareDatetime
    answered: bool | None = Field(description="Whether the partner centre answered; null if not seen.")


class HopFrom(Model):
    """This centre answered a call another centre sent here (that centre's record is the contact)."""

    centre: Text
    id: Linkedid | None = Field(
        description="The call's Linkedid at the sending centre, when it passed it on."
    )


class HangUp(Model):
    at: AwareDatetime
    by: HungUpBy
    cause: int = Field(description="The Q.850 cause Asterisk gave for the caller's channel.")
    cause_text: Text


class Payment(Model):
    line: Text
    reference_captured: bool = Field(
        description="A payment reference was captured (its digits are not kept)."
    )
    handed_off: bool = Field(description="The caller was handed to the payment provider.")


class Disposition(Model):
    kind: DispositionKind
    team: Text | None = Field(description="The back-office team, for kind back_office.")
    reason: Text | None = Field(
        description="For kind avoidable: a reason from the tenant's list in the plan."
    )
    by: Text | None = Field(description="The adviser who gave it, when known.")
    at: AwareDatetime


CallbackNumberKind = Literal[
    "geographic", "non_geographic", "mobile", "freephone", "premium", "international"
]
CallbackAttemptOutcome = Literal[
    "answered", "short-answer", "no-answer", "busy", "failed", "no-adviser", "interrupted"
]
CallbackOutcome = Literal["answered", "failed", "cancelled", "cancelled_at_closing"]


class CallbackAttempt(Model):
    """One dial of a queued callback: the adviser first, then the caller (``docs/callbacks.md``)."""

    started_at: AwareDatetime
    ended_at: AwareDatetime
    outcome: CallbackAttemptOutcome = Field(
        description="answered; short-answer (answered and gone within 10 s: a voicemail greeting); "
        "no-answer; busy; failed (the line could not be reached); no-adviser (no adviser answered in "
        "time: the caller was not called); interrupted (the dialler stopped and nobody saw the end)."
    )
    adviser: Text | None = Field(description="The adviser who answered, when one did.")


class Callback(Model):
    """The queued callback on this call (issue 11): offered while the caller waited, whether they
    took it, the kind of number they left (never the number), and once the dialler has called,
    each attempt and how it ended."""

    offered: bool | None = Field(None, description="The callback was offered; null: not known here.")
    accepted: bool | None = Field(None, description="The caller took it; null: not known here.")
    number_kind: CallbackNumberKind | None = Field(
        default=None, description="The kind of number to call back, when accepted."
    )
    attempts: Annotated[list[CallbackAttempt], Field(max_length=LIST_MAX)] = []
    outcome: CallbackOutcome | None = Field(None, description="How it ended; null while it is pending.")


class ContactRecord(Model):
    """One call, as the council's CRM receives it."""

    @field_validator("schema_version", mode="before")
    @classmethod
    def _read_older_versions(cls, value: object) -> object:
        """A record made under schema 1 (no ``language``, no ``callback``) has the shape of a
        schema 2 record without them: read (e.g. from the archive) as one of schema 2."""
        return SCHEMA_VERSION if value == 1 else value

    schema_version: Literal[2]
    id: Linkedid = Field(
        description="The call's Linkedid: <seconds>.<sequence>, or <systemname>-<seconds>.<sequence> "
        "from an Asterisk with systemname set in asterisk.conf."
    )
    version: Annotated[int, Field(ge=1)]
    updated_at: AwareDatetime
    complete: bool = Field(
        description="The end of the call was seen; false when the record was closed by the age limit."
    )
    tenant: Text | None = Field(description="The council whose number was dialled.")
    dialled: Text | None
    arrived_at: AwareDatetime
    centre: Text = Field(description="The centre that handled the call (a partner centre after a hop).")
    caller: Caller
    ivr: Ivr
    language: CallLanguage | None = Field(
        default=None,
        description="The call's language; null when no tenant's number was dialled or no route ran "
        "(absent from records made before this field).",
    )
    decisions: Annotated[list[RoutingDecision], Field(max_length=LIST_MAX)]
    queues: Annotated[list[QueueVisit], Field(max_length=LIST_MAX)]
    answered: Answered | None
    talk_s: Seconds | None = Field(
        description="Talk time with the adviser, hold included (Asterisk's TalkTime)."
    )
    hold_s: Seconds = Field(description="Time the adviser had the caller on hold.")
    transfers: Annotated[list[Transfer], Field(max_length=LIST_MAX)]
    hops: Annotated[list[Hop], Field(max_length=LIST_MAX)]
    hop_from: HopFrom | None = Field(
        description="Set when another centre sent this call here: count the contact once, at that centre."
    )
    hangup: HangUp | None
    payment: Payment | None
    survey: SurveyScore | None = Field(description="Post-call survey: +1 good, 0 average, -1 poor.")
    disposition: Disposition | None
    callback: Callback | None = Field(
        default=None, description="The queued callback, when one was offered (absent in older records)."
    )
    problems: Annotated[list[Text], Field(max_length=LIST_MAX)] = Field(
        description="Input the builder could not take as given (e.g. an unlisted avoidable reason)."
    )


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of :class:`ContactRecord` (as records serialise to JSON)."""
    schema = ContactRecord.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def json_schema_text() -> str:
    """The schema as the file ``docs/contact-record.schema.json`` holds it."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m records.model > docs/contact-record.schema.json
    print(json_schema_text(), end="")
