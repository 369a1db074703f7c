"""The IVR menu over a FastAGI channel: plays the steps of :class:`routing.core.menu.MenuRun`.

``Play`` becomes ``STREAM FILE`` (a key pressed during a greeting counts as the caller's
choice). ``Collect`` becomes ``STREAM FILE prompt "0123456789*#"`` then, if no key
interrupted it, ``WAIT FOR DIGIT <timeout>``: not ``GET DATA``, because Asterisk's GET DATA
takes ``#`` as the end of input and never returns it, so a ``#`` menu key would be lost.
Prompt names are relative to the channel's language, which the ``route`` step set to the
dialled council's.
"""

from __future__ import annotations

from ivr.fastagi import AgiChannel
from routing.core.decide import PreludePrompt
from routing.core.menu import Collect, Done, MenuRun, Play, Step
from routing.core.plan import Destination, Tenant

ALL_KEYS = "0123456789*#"
SKIP_KEY = "#"


async def play_prelude(channel: AgiChannel, prelude: tuple[PreludePrompt, ...]) -> None:
    """Play announcements in order; a skippable one stops when the caller presses ``#``."""
    for item in prelude:
        await channel.stream_file(item.prompt, SKIP_KEY if item.skippable else "")


async def _perform(channel: AgiChannel, steps: list[Step]) -> str | Done | None:
    """Run steps until one yields the caller's input (a key, or None for silence) or is Done."""
    for step in steps:
        if isinstance(step, Done):
            return step
        if isinstance(step, Play):
            key = await channel.stream_file(step.prompt, ALL_KEYS)
            if key is not None:
                return key
        elif isinstance(step, Collect):
            key = await channel.stream_file(step.prompt, ALL_KEYS)
            return key if key is not None else await channel.wait_for_digit(step.timeout_s * 1000)
    return None


async def run_menu(
    channel: AgiChannel, tenant: Tenant, menu: str, prelude: tuple[PreludePrompt, ...] = ()
) -> tuple[Destination, list[str]]:
    """Play the prelude, then run ``menu`` until it names a destination; return it and the trace."""
    await play_prelude(channel, prelude)
    run = MenuRun(tenant, menu)
    outcome = await _perform(channel, run.start())
    while not isinstance(outcome, Done):
        outcome = await _perform(channel, run.on_input(outcome))
    return outcome.destination, run.trace
