"""The language of a call: the choice offered at its start, and the language in force (pure).

A tenant with one language offers no choice: every call is in that language. A tenant with
more (e.g. ``languages: [cy, en]``) offers a choice first, as its :class:`LanguageChoice`
says, with defaults so that ``languages`` alone is enough: the languages in the order listed
(the order spoken: Welsh first for a Welsh council, per the Welsh Language Standards), key
"1" for the first, "2" for the second..., the prompt ``<prompts>/language-choice`` in each
language, and the first language when the caller presses nothing or only keys not offered.

The choice sets the channel's language (``CHANNEL(language)``): Asterisk then plays every
later prompt of the call from ``<sounds>/<language>/``, and the next routes of the call read it
back from the AGI environment (``agi_language``) with :func:`call_language`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from routing.core.plan import Destination, ExternalDest, Tenant

ChoiceHow = Literal["chosen", "timeout", "invalid", "single", "not_offered", "hop"]
"""How a call's language was set, for the contact record: ``chosen`` (a key), ``timeout`` (no key
in any try: the default), ``invalid`` (only keys not offered: the default), ``single`` (the
tenant has one language), ``not_offered`` (the call was sent on before any prompt of ours, e.g.
dialled straight to an out-of-hours service: the default), ``hop`` (a partner centre sent the
call here with the language settled there: no choice is offered again)."""

DEFAULT_PROMPT = "language-choice"  # in the tenant's prompt set: <prompts>/language-choice


@dataclass(frozen=True, slots=True)
class ChoiceSpec:
    """A tenant's language choice with every default filled in."""

    languages: tuple[str, ...]  # in the order spoken
    keys: tuple[tuple[str, str], ...]  # (key, language), in the order of ``languages``
    prompt: str
    timeout_s: int
    tries: int
    default: str

    def language_for(self, key: str | None) -> str | None:
        """The language a key chooses, or None (a silence, or a key not offered)."""
        return dict(self.keys).get(key or "")


@dataclass(frozen=True, slots=True)
class LanguageOutcome:
    """The call's language and how it was set; ``key``: the key that chose it."""

    language: str
    how: ChoiceHow
    key: str | None = None


def choice_spec(tenant: Tenant) -> ChoiceSpec | None:
    """The tenant's language choice, or None when it has a single language (no choice)."""
    languages = tuple(dict.fromkeys(tenant.languages))
    if len(languages) < 2:
        return None
    given = tenant.language_choice
    if given is not None and given.keys:  # a key naming another language is a plan error
        keys = tuple((k, lang) for lang in languages for k in sorted(given.keys) if given.keys[k] == lang)
    else:
        keys = tuple((str(number), lang) for number, lang in enumerate(languages, start=1) if number < 10)
    return ChoiceSpec(
        languages=languages,
        keys=keys,
        prompt=(given.prompt if given and given.prompt else f"{tenant.prompts}/{DEFAULT_PROMPT}"),
        timeout_s=given.timeout_s if given else 5,
        tries=given.tries if given else 2,
        default=(given.on_timeout if given and given.on_timeout else languages[0]),
    )


def offered(spec: ChoiceSpec | None, destination: Destination, prelude: bool) -> ChoiceSpec | None:
    """The choice to offer a new call routed to ``destination`` (``prelude``: announcements are
    played first), or None: a single-language tenant (``spec`` None), or a call dialled straight
    out with no prompt of ours (the far end, e.g. a partner centre, offers its own)."""
    if isinstance(destination, ExternalDest) and not prelude:
        return None
    return spec


def choice_for(tenant: Tenant, destination: Destination, prelude: bool) -> ChoiceSpec | None:
    """:func:`offered` for ``tenant``'s choice (the controller keeps each tenant's spec in its
    compiled plan instead: :attr:`routing.core.decide.CompiledPlan.choices`)."""
    return offered(choice_spec(tenant), destination, prelude)


def unchosen(tenant: Tenant, spec: ChoiceSpec | None) -> LanguageOutcome:
    """The language of a call on which no choice is made: the tenant's only language, or the
    default of its choice (``spec``) when the choice was not offered."""
    if spec is None:
        return LanguageOutcome(tenant.languages[0], "single")
    return LanguageOutcome(spec.default, "not_offered")


def settled(outcome: LanguageOutcome) -> bool:
    """Whether the call's language is settled, so that it goes with the call to a partner
    centre: every outcome but ``not_offered`` (the caller was sent on before the choice, which
    the partner centre then offers)."""
    return outcome.how != "not_offered"


def single(tenant: Tenant) -> LanguageOutcome:
    """:func:`unchosen` for ``tenant``."""
    return unchosen(tenant, choice_spec(tenant))


def call_language(tenant: Tenant, reported: str) -> str:
    """The language in force on a call of ``tenant``, from what the channel reports
    (``agi_language``): that language if it is one of the tenant's, else the tenant's default."""
    if reported in tenant.languages:
        return reported
    spec = choice_spec(tenant)
    return spec.default if spec is not None else tenant.languages[0]
