"""The caller's side of the wait: announcements, the callback offer and the number (over AGI).

``callrouter-wait`` (dialplans/callrouter.conf) keeps the caller in ``Queue()`` in slices; between
two slices, and when the caller presses a key while waiting, it runs the controller's ``wait``
route, which uses the pieces here. What to do is decided by :func:`routing.core.wait.wait_step`;
this module only talks to the caller.

Prompts: Asterisk's own sounds for the figures (``queue-thereare``, ``queue-callswaiting``,
``queue-youarenext``, ``queue-holdtime``, ``queue-minutes``, ``vm-morethan``: in every language
pack), the council's prompt set for the callback (``<prompts>/callback-*``, see
docs/callbacks.md). Numbers are never logged: only their kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ivr.fastagi import AgiChannel
from routing.core.numbers import Classified, NumberKind, callback_number, classify
from routing.core.wait import WaitClock, WaitWords

OFFER_TIMEOUT_MS = 5000  # the caller's time to press the offer key after the offer
CONFIRM_TIMEOUT_MS = 5000
NUMBER_TIMEOUT_MS = 6000  # per digit while keying a number (GET DATA's timeout)
NUMBER_MAX_DIGITS = 17  # 00 and the 15 digits E.164 allows; a UK number is 10 or 11
NUMBER_TRIES = 3
CONFIRM_KEY, OTHER_KEY = "1", "2"

Event = Literal["entry", "slice", "key"]


# --- the wait's state on the channel (CR_WAIT) and the route's argument ------------------------


def clock_text(clock: WaitClock) -> str:
    """``CR_WAIT``: ``joined/deadline/announced/offered`` (whole epoch seconds)."""
    return f"{clock.joined}/{clock.deadline}/{clock.announced}/{clock.offered}"


def parse_clock(text: str) -> WaitClock | None:
    """Inverse of :func:`clock_text`; None for anything else (the first step has none)."""
    parts = text.split("/")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 12 for p in parts):
        return None
    joined, deadline, announced, offered = (int(p) for p in parts)
    return WaitClock(joined, deadline, announced, offered)


@dataclass(frozen=True, slots=True)
class WaitArg:
    """The ``wait`` route's 3rd argument, ``<event>/<QUEUEPOSITION>/<CR_WAIT>``: ``entry``,
    ``slice`` or ``key<digit>``; the caller's position when Queue() let them go (empty at entry)."""

    event: Event
    key: str
    position: int | None
    clock: WaitClock | None


def parse_wait_arg(text: str) -> WaitArg:
    """Read the route's argument; anything unrecognised counts as the entry step (the safe
    reading: the caller is (re)queued and nothing is assumed about their place)."""
    event_text, _, rest = text.partition("/")
    position_text, _, clock = rest.partition("/")
    position = int(position_text) if position_text.isdigit() and len(position_text) <= 6 else None
    parsed = parse_clock(clock)
    if event_text == "slice" and parsed is not None:
        return WaitArg("slice", "", position, parsed)
    if event_text.startswith("key") and len(event_text) == 4 and event_text[3] in "0123456789*#":
        return WaitArg("key", event_text[3], position, parsed)
    return WaitArg("entry", "", None, None)


# --- announcements ----------------------------------------------------------------------------


async def announce(channel: AgiChannel, position: int | None, words: WaitWords) -> None:
    """Position (when known) then the expected wait, as ``words`` allows."""
    if position is not None and position >= 1:
        if position == 1:
            await channel.stream_file("queue-youarenext")
        else:
            await channel.stream_file("queue-thereare")
            await channel.say_number(position - 1)
            await channel.stream_file("queue-callswaiting")
    if words.said == "nothing":
        return
    await channel.stream_file("queue-holdtime")
    if words.said == "more_than":
        await channel.stream_file("vm-morethan")
    await channel.say_number(words.minutes)
    await channel.stream_file("queue-minutes")


# --- the offer and the number -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferAnswer:
    """``accepted`` with the number to call (E.164) and its kind; else ``kind`` may still tell
    what was refused (``premium``), and ``tries`` how many numbers were keyed."""

    accepted: bool
    number: str | None = None
    kind: NumberKind | None = None
    tries: int = 0


DECLINED = OfferAnswer(False)


def prompt_name(prompts: str, name: str) -> str:
    return f"{prompts}/{name}" if prompts else name


async def ask_offer(channel: AgiChannel, prompt: str, key: str) -> bool:
    """Play the offer; True when the caller presses ``key`` (during it or just after)."""
    digits, _timed_out = await channel.get_data(prompt, OFFER_TIMEOUT_MS, 1)
    return digits == key


async def _confirm(channel: AgiChannel, prompts: str, digits: str) -> str:
    """Read ``digits`` back and ask: ``1`` right, ``2`` another number; returns the key."""
    await channel.stream_file(prompt_name(prompts, "callback-number-is"))
    await channel.say_digits(digits)
    answer, _ = await channel.get_data(prompt_name(prompts, "callback-confirm"), CONFIRM_TIMEOUT_MS, 1)
    return answer


def national_digits(e164: str) -> str:
    """How the number is read back: UK numbers in national form, others as keyed (00...)."""
    return "0" + e164[3:] if e164.startswith("+44") else "00" + e164[1:]


async def capture_number(
    channel: AgiChannel, prompts: str, caller_id: str | None, allowed: tuple[str, ...]
) -> OfferAnswer:
    """The number to call back: the calling number, confirmed (``1``), when it is one the plan
    allows; else (withheld, refused, or ``2``) one the caller keys, read back and confirmed. At
    most :data:`NUMBER_TRIES` numbers are keyed; then the caller keeps waiting."""
    presented: Classified | None = classify(caller_id) if caller_id else None
    if presented is not None and presented.e164 is not None and presented.kind in allowed:
        answer = await _confirm(channel, prompts, national_digits(presented.e164))
        if answer == CONFIRM_KEY:
            return OfferAnswer(True, presented.e164, presented.kind)
    refused: NumberKind | None = None
    for attempt in range(1, NUMBER_TRIES + 1):
        keyed, _ = await channel.get_data(
            prompt_name(prompts, "callback-enter-number"), NUMBER_TIMEOUT_MS, NUMBER_MAX_DIGITS
        )
        found = callback_number(keyed, allowed) if keyed else Classified(None, None, "nothing keyed")
        if found.e164 is None:
            refused = found.kind or refused
            await channel.stream_file(prompt_name(prompts, "callback-number-refused"))
            continue
        if await _confirm(channel, prompts, keyed) == CONFIRM_KEY:
            return OfferAnswer(True, found.e164, found.kind, attempt)
    return OfferAnswer(False, None, refused, NUMBER_TRIES)
