"""The last-resort dialplan, generated from the plan (pure).

When both the controller and the classic fallback script fail, Asterisk still routes each
council number: its first queue reachable from the entry menu (joinempty settings decide
whether anyone is there), then its out-of-hours destination. Generate it with
``callrouter plan static-dialplan PLAN > dialplans/callrouter-static.conf`` after every change.
"""

from __future__ import annotations

from collections.abc import Iterator

from ivr import channel_vars as cv
from routing.core import numbers
from routing.core.plan import (
    AnnouncementDest,
    Destination,
    ExternalDest,
    MenuDest,
    Plan,
    QueueDest,
    Tenant,
    VoicemailDest,
)


def first_queue(tenant: Tenant, dest: Destination, seen: frozenset[str] = frozenset()) -> str | None:
    """The plan queue a caller most likely wants: the first one the entry leads to."""
    match dest:
        case QueueDest(queue=name):
            return name
        case AnnouncementDest(then=then):
            return first_queue(tenant, then, seen)
        case MenuDest(menu=name) if name not in seen and name in tenant.menus:
            menu = tenant.menus[name]
            for option in [*(menu.options[k] for k in sorted(menu.options)), menu.on_timeout]:
                found = first_queue(tenant, option, seen | {name})
                if found is not None:
                    return found
    return None


def outward_dial(number: str, tenant: str, centre: str) -> str:
    """Dial ``number`` (E.164) on the trunk, the way ``callrouter.conf`` does: through
    ``callrouter-outbound``, the one place the dial string ``PJSIP/<number>@<endpoint>`` is
    built, with the partner headers (the dialled council, the number the caller dialled, this
    centre's id, the call's language when it was settled earlier in the call)."""
    return (
        f"Gosub(callrouter-outbound,s,1(${{CR_TRUNK}},{number},partner,{tenant},${{EXTEN}},{centre},"
        f"${{{cv.CALL_LANGUAGE}}}))"
    )


def _last_step(plan: Plan, tid: str, dest: Destination | None) -> str:
    match dest:
        case ExternalDest(centre=str(centre)) if plan.centres[centre].number:
            return outward_dial(plan.centres[centre].number or "", tid, plan.centre)
        case ExternalDest(number=str(number)):
            return outward_dial(number, tid, plan.centre)
        case VoicemailDest(mailbox=mailbox):
            return f"VoiceMail({mailbox},u)"
        case AnnouncementDest(prompt=prompt, then=then):
            return f"Playback({prompt})\n same => n,{_last_step(plan, tid, then)}"
    return "Hangup()"


def _language_steps(tenant: Tenant) -> list[str]:
    """The tenant's first language, unless the call's language is already settled.

    No language choice is offered here: the static route plays no prompt of ours before the
    queue (only Asterisk's queue announcements, in the channel's language), and a caller who
    has already waited for the controller and the fail-static script to fail should reach an
    adviser at once. A caller who chose earlier in the call (``CR_LANGUAGE``, set by
    ``callrouter-unpack``) keeps the choice, and so does a caller a partner centre sent here
    with the language settled there (``CR_FROM_LANGUAGE``, taken only when it is one of the
    tenant's languages: compared with each); the others hear the tenant's first language, which
    for a Welsh council is Welsh (the order of ``languages`` is the order of preference)."""
    settled, carried = cv.CALL_LANGUAGE, cv.FROM_LANGUAGE
    default = f'ExecIf($["${{{settled}}}" = ""]?Set(CHANNEL(language)={tenant.languages[0]}))'
    languages = list(dict.fromkeys(tenant.languages))
    if len(languages) < 2:  # one language: nothing to carry, nothing to keep
        return [default]
    return [
        *(
            f'ExecIf($["${{{settled}}}" = "" & "${{{carried}}}" = "{language}"]?Set(__{settled}={language}))'
            for language in languages
        ),
        default,
        f'ExecIf($["${{{settled}}}" != ""]?Set(CHANNEL(language)=${{{settled}}}))',
    ]


def _dialled_forms(e164: str) -> list[str]:
    national = numbers.display(e164).replace(" ", "")
    return sorted({e164, e164[1:], national})


def _tenant_lines(plan: Plan, tid: str, tenant: Tenant) -> Iterator[str]:
    queue = first_queue(tenant, tenant.entry)
    for number in tenant.numbers:
        for form in _dialled_forms(number):
            yield f"exten => {form},1,NoOp(callrouter static route: {tid})"
            for step in _language_steps(tenant):
                yield f" same => n,{step}"
            if queue is not None:
                spec = tenant.queues[queue]
                # callrouter-agent: the adviser's disposition reaches the record here too
                yield f" same => n,Queue({spec.asterisk_queue},,,,{spec.timeout_s},,callrouter-agent)"
            yield f" same => n,{_last_step(plan, tid, tenant.out_of_hours)}"
            yield " same => n,Hangup()"


def render(plan: Plan) -> str:
    lines = [
        "; Generated by `callrouter plan static-dialplan`: do not edit by hand.",
        "; [callrouter-static]: the route of last resort for every council number, used when",
        "; neither the controller nor the fail-static script answered. ${EXTEN}: the dialled number.",
        "[callrouter-static]",
    ]
    for tid, tenant in plan.tenants.items():
        lines += _tenant_lines(plan, tid, tenant)
    lines.append("exten => _[+0-9].,1,NoOp(callrouter static route: unknown number ${EXTEN})")
    lines.append(" same => n,Hangup()")
    return "\n".join(lines) + "\n"
