"""Every prompt a plan names, and which of them lack a recording in a tenant's languages (pure).

Asterisk looks a prompt up as ``<sounds>/<channel language>/<prompt>.<format>``. A prompt with
no recording in the caller's language is not an error to Asterisk: it falls back to the same
name without a language, then to ``en`` (``main/file.c``), or plays nothing. So a Welsh caller
would hear an English prompt or silence. :func:`missing_prompts` finds these before a caller
does (``callrouter plan check --prompts DIR``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from routing.core.language import choice_spec
from routing.core.plan import AnnouncementDest, HangupDest, Plan, Tenant
from routing.core.problems import PathPart, Problem
from routing.core.validate import all_destinations

Path = tuple[PathPart, ...]

CALLBACK_PROMPTS = (
    "callback-offer",
    "callback-number-is",
    "callback-confirm",
    "callback-enter-number",
    "callback-number-refused",
    "callback-goodbye",
    "callback-unavailable",
)
"""The callback's recordings in a tenant's prompt set (``<prompts>/callback-offer``...): the IVR
plays them (``ivr/wait_loop.py``); a plan's ``callback.prompt`` replaces the offer alone."""

WAIT_SOUNDS = ("queue-youarenext", "queue-thereare", "queue-callswaiting", "queue-holdtime", "vm-morethan",
               "queue-minutes")  # fmt: skip
"""Asterisk's own sounds the wait announcements play (figures are said with SAY NUMBER, whose
digit files Asterisk also needs per language: ``agi_language_say.txt`` shows Welsh falling back
to the English ones)."""
SAY_DIGITS_SOUNDS = tuple(f"digits/{n}" for n in range(10))
"""Asterisk's files for SAY DIGITS (the callback's number read back), one per digit."""
SAY_NUMBER_SOUNDS = (
    *(f"digits/{n}" for n in range(20)),
    *(f"digits/{n}" for n in range(20, 100, 10)),
    "digits/hundred",
)
"""Asterisk's files for SAY NUMBER by English rules (positions and minutes: 21 is ``digits/20``
then ``digits/1``), which Asterisk 22 also uses for a Welsh channel, looking each file up in the
channel's language first (``agi_language_say.txt``): without ``cy/digits/*`` a Welsh caller hears
the figures in English."""
Exists = Callable[[str, str], bool]
"""``exists(language, prompt)``: whether a recording of ``prompt`` in ``language`` is there."""


def tenant_prompts(tenant: Tenant) -> list[tuple[Path, str]]:
    """Every prompt ``tenant``'s callers can hear, with its path in the tenant."""
    return [(path, prompt) for path, prompt in _named(tenant) if prompt is not None]


def _named(tenant: Tenant) -> Iterator[tuple[Path, str | None]]:
    spec = choice_spec(tenant)
    if spec is not None:
        given = tenant.language_choice is not None and tenant.language_choice.prompt is not None
        yield (("language_choice", "prompt") if given else ("languages",)), spec.prompt
    for path, dest in all_destinations(tenant):
        if isinstance(dest, AnnouncementDest | HangupDest):
            yield (*path, "prompt"), dest.prompt
    for name, menu in tenant.menus.items():
        for field in ("greeting", "prompt", "invalid_prompt", "timeout_prompt"):
            yield ("menus", name, field), getattr(menu, field)
    for i, item in enumerate(tenant.announcements):
        yield ("announcements", i, "prompt"), item.prompt
    for name, line in tenant.payment_lines.items():
        if line.reference is not None:
            yield ("payment_lines", name, "reference", "prompt"), line.reference.prompt
            yield ("payment_lines", name, "reference", "invalid_prompt"), line.reference.invalid_prompt
    yield from _waiting(tenant)
    if tenant.survey is not None:
        yield ("survey", "prompt"), tenant.survey.prompt
        yield ("survey", "thanks_prompt"), tenant.survey.thanks_prompt


def _waiting(tenant: Tenant) -> Iterator[tuple[Path, str | None]]:
    """What a waiting caller can hear: the callback's recordings, the announcements' sounds."""
    for name, queue in tenant.queues.items():
        if queue.callback is not None:
            for prompt in CALLBACK_PROMPTS:
                if prompt == "callback-offer" and queue.callback.prompt is not None:
                    yield ("queues", name, "callback", "prompt"), queue.callback.prompt
                else:
                    yield ("queues", name, "callback"), f"{tenant.prompts}/{prompt}"
            for sound in SAY_DIGITS_SOUNDS:
                yield ("queues", name, "callback"), sound
        if queue.announce_wait is not None:
            for sound in (*WAIT_SOUNDS, *SAY_NUMBER_SOUNDS):
                yield ("queues", name, "announce_wait"), sound


def missing_prompts(plan: Plan, exists: Exists) -> list[Problem]:
    """One problem per prompt and language of its tenant with no recording, at the prompt's
    path in the plan (a prompt named twice is reported at each place)."""
    problems: list[Problem] = []
    for tid, tenant in plan.tenants.items():
        languages = list(dict.fromkeys(tenant.languages))
        for path, prompt in tenant_prompts(tenant):
            absent = [language for language in languages if not exists(language, prompt)]
            if absent:
                problems.append(
                    Problem.at(
                        ("tenants", tid, *path),
                        f"prompt '{prompt}' has no recording in {', '.join(absent)} "
                        f"(looked for {', '.join(f'{lang}/{prompt}.*' for lang in absent)})",
                    )
                )
    return problems
