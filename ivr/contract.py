"""The dialplan contract: a decision turned into the packed ``CR_ROUTE`` value (pure).

``CR_ROUTE`` is the fields of :data:`ivr.channel_vars.ROUTE_FIELDS` joined by ``|``; the
dialplan's ``callrouter-unpack`` subroutine (and :func:`unpack`) split it back into variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ivr import channel_vars as cv
from routing.core import numbers
from routing.core.decide import CompiledPlan, Decision, PreludePrompt
from routing.core.language import ChoiceSpec
from routing.core.linkedid import LINKEDID, LINKEDID_MAX
from routing.core.plan import (
    AnnouncementDest,
    Destination,
    ExternalDest,
    HangupDest,
    MenuDest,
    PaymentDest,
    QueueDest,
    VoicemailDest,
)

Fields = dict[str, str]
_UNSAFE = re.compile(r"[|\x00-\x1f\x7f]")
HOP_VALUE_MAX = 64  # a header value longer than this is refused unread
HOP_LANGUAGE_MAX = 16  # X-Callrouter-Language: a language code (cy, en_GB) is far shorter
_CENTRE = re.compile(r"[a-z0-9][a-z0-9_-]*")  # a plan Name


def encode_prelude(prelude: tuple[PreludePrompt, ...]) -> str:
    """``(storm, skippable bins)`` -> ``"storm:+bins:skip"``.

    The value goes to the ``menu`` route as one ``AGI()`` argument, through ``Gosub()``: Asterisk
    splits application data on commas after substitution, so the items are joined by
    :data:`~ivr.channel_vars.PRELUDE_SEPARATOR`, never a comma (prompt names hold none of
    ``+ : , | ( ) [ ] "``; the plan's prompt pattern allows letters, digits and ``_ . / -``)."""
    return cv.PRELUDE_SEPARATOR.join(f"{p.prompt}:{'skip' if p.skippable else ''}" for p in prelude)


def decode_prelude(text: str) -> tuple[PreludePrompt, ...]:
    items = (item.partition(":") for item in text.split(cv.PRELUDE_SEPARATOR) if item)
    return tuple(PreludePrompt(prompt, flag == "skip") for prompt, _, flag in items if prompt)


def destination_fields(plan: CompiledPlan, tenant: str | None, dest: Destination) -> Fields:
    """``CR_ACTION`` and its arguments for one destination."""
    match dest:
        case QueueDest(queue=name) if tenant is not None:
            queue = plan.plan.tenants[tenant].queues[name]
            # a queue with a callback or wait announcements: the wait loop (callrouter-wait)
            action = "wait" if queue.callback is not None or queue.announce_wait is not None else "queue"
            return {cv.ACTION: action, cv.TARGET: queue.asterisk_queue, cv.ARGUMENT: str(queue.timeout_s),
                    cv.QUEUE: name}  # fmt: skip
        case MenuDest(menu=name):
            return {cv.ACTION: "menu", cv.TARGET: name}
        case PaymentDest(line=line):
            return {cv.ACTION: "payment", cv.TARGET: line}
        case ExternalDest(centre=str(centre)):
            number = plan.plan.centres[centre].number or ""
            return {cv.ACTION: "dial", cv.TARGET: number, cv.ARGUMENT: dest.label or "", cv.CENTRE: centre}
        case ExternalDest(number=str(number)):
            return {cv.ACTION: "dial", cv.TARGET: number, cv.ARGUMENT: dest.label or ""}
        case VoicemailDest(mailbox=mailbox):
            return {cv.ACTION: "voicemail", cv.TARGET: mailbox}
        case HangupDest(prompt=prompt):
            return {cv.ACTION: "hangup", cv.TARGET: prompt or ""}
        case AnnouncementDest():
            raise ValueError("an announcement is played before the destination, never set as one")
    return {cv.ACTION: "hangup", cv.TARGET: ""}


def route_fields(plan: CompiledPlan, decision: Decision, reason: str | None = None) -> Fields:
    """Every field of ``CR_ROUTE`` for ``decision``."""
    fields = destination_fields(plan, decision.tenant, decision.destination)
    fields[cv.REASON] = reason or decision.state
    fields[cv.HOME] = plan.plan.centre
    if decision.tenant is not None:
        tenant = plan.plan.tenants[decision.tenant]
        fields.update(
            {cv.TENANT: decision.tenant, cv.PROMPTS: tenant.prompts, cv.LANGUAGE: decision.language}
        )
        if tenant.survey is not None and isinstance(decision.destination, QueueDest):
            fields[cv.SURVEY] = "1"
    if isinstance(decision.destination, MenuDest) and decision.prelude:
        fields[cv.PRELUDE] = encode_prelude(decision.prelude)
    return fields


def pack(fields: Fields) -> str:
    """The ``CR_ROUTE`` value: every field in :data:`~ivr.channel_vars.ROUTE_FIELDS` order."""
    return cv.ROUTE_SEPARATOR.join(_UNSAFE.sub(" ", fields.get(name, "")) for name in cv.ROUTE_FIELDS)


def unpack(route: str) -> Fields:
    """What ``callrouter-unpack`` does in the dialplan: ``CR_ROUTE`` back into variables."""
    values = route.split(cv.ROUTE_SEPARATOR)
    return {name: values[i] if i < len(values) else "" for i, name in enumerate(cv.ROUTE_FIELDS)}


@dataclass(frozen=True, slots=True)
class HopIn:
    """What the inbound call's partner headers say, checked: ``centre`` (a partner centre of the
    plan) when another centre sent the call here, with ``call`` (its Linkedid there) when that
    was well formed; ``refused``: ``(header, reason)`` for each value not taken."""

    centre: str | None = None
    call: str | None = None
    refused: tuple[tuple[str, str], ...] = ()
    dialled: str | None = None  # the council number the caller dialled there, one of this plan's


def _refusal(value: str, pattern: re.Pattern[str], longest: int = HOP_VALUE_MAX) -> str | None:
    if len(value) > longest:
        return "too_long"
    return None if pattern.fullmatch(value) else "malformed"


def read_hop(plan: CompiledPlan, centre: str, call: str, dialled: str = "") -> HopIn:
    """The ``route`` arguments from ``X-Callrouter-Centre`` / ``X-Callrouter-Linkedid`` /
    ``X-Callrouter-Dialled`` (as the dialplan passes them: URI-encoded, empty when absent),
    never trusted.

    A hop needs a known partner centre (not this one); its Linkedid is kept only when it has
    Asterisk's shape (:mod:`routing.core.linkedid`: ``[<systemname>-]<seconds>.<sequence>``, at
    most ``LINKEDID_MAX`` characters); the dialled number only when it is a number of one of this
    plan's councils, so the call is answered in that council's name. Anything else is refused
    with a reason and the call is routed as any other (by the number it arrived on)."""
    refused: list[tuple[str, str]] = []
    from_centre: str | None = None
    if centre:
        reason = _refusal(centre, _CENTRE)
        if reason is None and (centre == plan.plan.centre or centre not in plan.plan.centres):
            reason = "own_centre" if centre == plan.plan.centre else "unknown_centre"
        if reason is None:
            from_centre = centre
        else:
            refused.append((cv.HEADER_CENTRE, reason))
    elif call:
        refused.append((cv.HEADER_CENTRE, "missing"))
    from_call: str | None = None
    if call:
        reason = _refusal(call, LINKEDID, LINKEDID_MAX)
        if reason is None:
            from_call = call
        else:
            refused.append((cv.HEADER_LINKEDID, reason))
    if from_centre is None:
        if dialled:
            refused.append((cv.HEADER_DIALLED, "no_centre"))
        return HopIn(refused=tuple(refused))
    council_number = _council_number(plan, dialled, refused) if dialled else None
    return HopIn(from_centre, from_call, tuple(refused), council_number)


def _council_number(plan: CompiledPlan, value: str, refused: list[tuple[str, str]]) -> str | None:
    """The dialled number a partner sent (URI-encoded by the dialplan: ``+`` arrives as ``%2B``)
    when it is one of this plan's council numbers; otherwise refused with a reason."""
    if len(value) > HOP_VALUE_MAX:
        refused.append((cv.HEADER_DIALLED, "too_long"))
        return None
    number = numbers.try_normalise(unquote(value))
    if number is None:
        refused.append((cv.HEADER_DIALLED, "malformed"))
        return None
    if plan.tenant_for(number) is None:
        refused.append((cv.HEADER_DIALLED, "unknown_number"))
        return None
    return number


def read_hop_language(spec: ChoiceSpec | None, value: str) -> tuple[str | None, str | None]:
    """The language a partner centre sent with the call (``X-Callrouter-Language``, URI-encoded
    by the dialplan, empty when absent), for a call whose partner centre :func:`read_hop` took,
    checked against the answering tenant's language choice ``spec``: ``(language, None)`` when
    it is one of that tenant's languages, else ``(None, reason)`` (``too_long``, or
    ``not_listed``: anything else, however formed), and ``(None, None)`` when there is nothing
    to take (no value, or a tenant with one language, which offers no choice anyway). A refused
    value is never an error to the caller: the tenant's choice is offered as for any call."""
    if not value or spec is None:
        return None, None
    if len(value) > HOP_LANGUAGE_MAX:
        return None, "too_long"
    language = unquote(value)
    return (language, None) if language in spec.languages else (None, "not_listed")
