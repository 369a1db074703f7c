"""The IVR menu as AGI commands, without I/O: one driver for the controller and the fallback.

:func:`menu_script` is a generator. It yields the channel commands to run, one at a time
(:class:`StreamFile`, :class:`WaitForDigit`), receives each one's result (the key pressed, or
None) through ``send()``, and returns a :class:`MenuOutcome` when the menu names a destination.
It holds every rule of how a menu sounds on a channel; an adapter only runs the commands:
:func:`ivr.agi_handler.run_menu` on the FastAGI channel (async) and
:func:`agi_scripts.route_fallback.run_menu` on the classic channel (sync), so both put the same
commands on the wire for the same caller.

How :mod:`routing.core.menu` steps become commands:

- ``Play`` is ``STREAM FILE prompt "0123456789*#"``: a key pressed during a greeting is the
  caller's choice, and the rest of the step list is skipped.
- ``Collect`` is the same ``STREAM FILE`` then, if no key interrupted it, ``WAIT FOR DIGIT
  <timeout>``. Not ``GET DATA``: Asterisk's GET DATA takes ``#`` as the end of input and never
  returns it, so a ``#`` menu key would be lost.
- A prelude announcement is ``STREAM FILE prompt "#"`` when skippable, else with no escape key.

Prompt names are relative to the channel's language, which the ``route`` step set to the
dialled council's.

Each command knows how long it may keep the call waiting for the caller (:attr:`bound_s`), so
an adapter can guard each blocking step on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from routing.core.decide import PreludePrompt
from routing.core.menu import Collect, Done, MenuEvent, MenuRun, Play, Step
from routing.core.plan import Destination, Tenant

ALL_KEYS = "0123456789*#"
SKIP_KEY = "#"


@dataclass(frozen=True, slots=True)
class StreamFile:
    """``STREAM FILE prompt escape_digits``: the escape key pressed, or None."""

    prompt: str
    escape_digits: str = ""

    @property
    def bound_s(self) -> None:
        """As long as the recording, which only Asterisk knows."""
        return None


@dataclass(frozen=True, slots=True)
class WaitForDigit:
    """``WAIT FOR DIGIT <timeout_s * 1000>``: the key pressed, or None after the timeout."""

    timeout_s: int

    @property
    def timeout_ms(self) -> int:
        return self.timeout_s * 1000

    @property
    def bound_s(self) -> int:
        return self.timeout_s


@dataclass(frozen=True, slots=True)
class SetLanguage:
    """``SET VARIABLE CHANNEL(language) <language>``: Asterisk plays every later prompt of the
    call from ``<sounds>/<language>/`` (``pbx_builtin_setvar_helper`` writes a name ending in
    ``)`` through the dialplan function). Answers at once: not a blocking step."""

    language: str

    @property
    def bound_s(self) -> int:
        return 0


Command = StreamFile | WaitForDigit | SetLanguage
Key = str | None  # the result of a command: the key pressed, or None


@dataclass(frozen=True, slots=True)
class MenuOutcome:
    destination: Destination
    trace: list[str]


Script = Generator[Command, Key, tuple[bool, ...]]
MenuScript = Generator[Command, Key, MenuOutcome]


def prelude_script(prelude: tuple[PreludePrompt, ...]) -> Script:
    """Play announcements in order; a skippable one stops when the caller presses ``#``.
    Returns, for each, whether the caller skipped it."""
    skipped: list[bool] = []
    for item in prelude:
        key = yield StreamFile(item.prompt, SKIP_KEY if item.skippable else "")
        skipped.append(item.skippable and key == SKIP_KEY)
    return tuple(skipped)


def menu_script(
    tenant: Tenant,
    menu: str,
    prelude: tuple[PreludePrompt, ...] = (),
    on_event: MenuEvent | None = None,
    on_prelude: Callable[[tuple[bool, ...]], None] | None = None,
) -> MenuScript:
    """Play the prelude, then run ``menu`` until it names a destination. ``on_event`` hears
    each step of the walk (:data:`routing.core.menu.MenuEvent`), ``on_prelude`` which
    announcements were skipped: for contact records."""
    skipped = yield from prelude_script(prelude)
    if on_prelude is not None:
        on_prelude(skipped)
    run = MenuRun(tenant, menu, on_event)
    steps = run.start()
    while True:
        key = yield from _play_steps(steps)
        if isinstance(key, Done):
            return MenuOutcome(key.destination, run.trace)
        steps = run.on_input(key)


def _play_steps(steps: list[Step]) -> Generator[Command, Key, Key | Done]:
    """Run steps until one yields the caller's input (a key, or None for silence) or is Done."""
    for step in steps:
        if isinstance(step, Done):
            return step
        if isinstance(step, Play):
            key = yield StreamFile(step.prompt, ALL_KEYS)
            if key is not None:
                return key
        elif isinstance(step, Collect):
            key = yield StreamFile(step.prompt, ALL_KEYS)
            if key is None:
                key = yield WaitForDigit(step.timeout_s)
            return key
    return None
