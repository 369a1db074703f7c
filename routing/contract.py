"""The dialplan contract: a decision turned into channel-variable assignments (pure)."""

from __future__ import annotations

from routing import channel_vars as cv
from routing.core.decide import CompiledPlan, Decision, PreludePrompt
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

Assignment = tuple[str, str]


def encode_prelude(prelude: tuple[PreludePrompt, ...]) -> str:
    """``(welcome, skippable bins)`` -> ``"welcome:,bins:skip"`` (prompt names hold no ``:`` or ``,``)."""
    return ",".join(f"{p.prompt}:{'skip' if p.skippable else ''}" for p in prelude)


def decode_prelude(text: str) -> tuple[PreludePrompt, ...]:
    items = (item.partition(":") for item in text.split(",") if item)
    return tuple(PreludePrompt(prompt, flag == "skip") for prompt, _, flag in items if prompt)


def _destination(plan: CompiledPlan, tenant: str | None, dest: Destination) -> list[Assignment]:
    match dest:
        case QueueDest(queue=name) if tenant is not None:
            queue = plan.plan.tenants[tenant].queues[name]
            timeout = str(queue.timeout_s)
            return [
                (cv.ACTION, "queue"),
                (cv.TARGET, queue.asterisk_queue),
                (cv.ARGUMENT, timeout),
                (cv.QUEUE, name),
            ]
        case MenuDest(menu=name):
            return [(cv.ACTION, "menu"), (cv.TARGET, name)]
        case PaymentDest(line=line):
            return [(cv.ACTION, "payment"), (cv.TARGET, line)]
        case ExternalDest(centre=str(centre)):
            number = plan.plan.centres[centre].number or ""
            return [
                (cv.ACTION, "dial"),
                (cv.TARGET, number),
                (cv.ARGUMENT, dest.label or ""),
                (cv.CENTRE, centre),
            ]
        case ExternalDest(number=str(number)):
            return [(cv.ACTION, "dial"), (cv.TARGET, number), (cv.ARGUMENT, dest.label or "")]
        case VoicemailDest(mailbox=mailbox):
            return [(cv.ACTION, "voicemail"), (cv.TARGET, mailbox)]
        case HangupDest(prompt=prompt):
            return [(cv.ACTION, "hangup"), (cv.TARGET, prompt or "")]
        case AnnouncementDest():
            raise ValueError("an announcement is played before the destination, never set as one")
    return [(cv.ACTION, "hangup"), (cv.TARGET, "")]


def assignments(plan: CompiledPlan, decision: Decision, reason: str | None = None) -> list[Assignment]:
    """What the controller sets for ``decision``, in order; :data:`channel_vars.STATUS` comes last."""
    result: list[Assignment] = []
    if decision.tenant is not None:
        tenant = plan.plan.tenants[decision.tenant]
        result += [
            (cv.TENANT, decision.tenant),
            (cv.PROMPTS, tenant.prompts),
            (cv.LANGUAGE, decision.language),
        ]
        if tenant.survey is not None and isinstance(decision.destination, QueueDest):
            result.append((cv.SURVEY, "1"))
    result += _destination(plan, decision.tenant, decision.destination)
    if isinstance(decision.destination, MenuDest) and decision.prelude:
        result.append((cv.PRELUDE, encode_prelude(decision.prelude)))
    result += [(cv.REASON, reason or decision.state), (cv.STATUS, "ok")]
    return result
