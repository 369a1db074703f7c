"""The IVR menu over a FastAGI channel: runs the commands of :mod:`ivr.menu_driver` (async).

The classic fallback runs the same driver synchronously (:mod:`agi_scripts.route_fallback`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

from ivr import channel_vars as cv
from ivr.fastagi import AgiChannel
from ivr.language_driver import language_script
from ivr.menu_driver import Command, Key, SetLanguage, StreamFile, menu_script, prelude_script
from routing.core.decide import PreludePrompt
from routing.core.language import ChoiceSpec, LanguageOutcome
from routing.core.menu import MenuEvent
from routing.core.plan import Destination, Tenant

T = TypeVar("T")


async def perform(channel: AgiChannel, command: Command) -> Key:
    """Run one command of the driver on the channel; the key pressed, or None."""
    if isinstance(command, StreamFile):
        return await channel.stream_file(command.prompt, command.escape_digits)
    if isinstance(command, SetLanguage):
        await channel.set_variable(cv.LANGUAGE, command.language)
        return None
    return await channel.wait_for_digit(command.timeout_ms)


async def drive(channel: AgiChannel, script: Generator[Command, Key, T]) -> T:
    """Run ``script`` on the channel, feeding it each command's result, until it returns."""
    result: Key = None
    while True:
        try:
            command = script.send(result)
        except StopIteration as end:
            value: T = end.value
            return value
        result = await perform(channel, command)


async def play_prelude(channel: AgiChannel, prelude: tuple[PreludePrompt, ...]) -> tuple[bool, ...]:
    """Play announcements in order; a skippable one stops when the caller presses ``#``.
    Returns, for each, whether the caller skipped it."""
    return await drive(channel, prelude_script(prelude))


async def choose_language(channel: AgiChannel, spec: ChoiceSpec) -> LanguageOutcome:
    """Offer the tenant's language choice; the channel is left in the language taken."""
    return await drive(channel, language_script(spec))


async def run_menu(
    channel: AgiChannel,
    tenant: Tenant,
    menu: str,
    prelude: tuple[PreludePrompt, ...] = (),
    *,
    on_event: MenuEvent | None = None,
    on_prelude: Callable[[tuple[bool, ...]], None] | None = None,
) -> tuple[Destination, list[str]]:
    """Play the prelude, then run ``menu`` until it names a destination; return it and the trace.
    ``on_event`` and ``on_prelude``: see :func:`ivr.menu_driver.menu_script`."""
    outcome = await drive(channel, menu_script(tenant, menu, prelude, on_event, on_prelude))
    return outcome.destination, outcome.trace
