"""An IVR menu as a sans-I/O state machine (pure).

The adapter plays the :class:`Play` and :class:`Collect` steps on the channel and
feeds each result back with :meth:`MenuRun.on_input` (the key pressed, or None
when the caller stayed silent) until a :class:`Done` step names the destination.

Semantics: invalid keys and silences share one count of tries per menu; the
repeat key replays the prompt without costing a try; the parent key returns to
the menu that led here (on a top-level menu it is an invalid key). Entering a
menu that is already on the path returns to it rather than nesting again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from routing.core.plan import Destination, HangupDest, Menu, MenuDest, Tenant

MAX_STEPS = 40  # a caller pressing keys or staying silent for this long is let go

MenuEvent = Callable[[str, str, "str | None"], None]
"""``(kind, menu, key)`` as a walk goes: ``entered``, ``key`` (a valid key: an option, the
repeat or the parent key), ``invalid`` (with the key) and ``timeout``. For contact records."""


@dataclass(frozen=True, slots=True)
class Play:
    prompt: str


@dataclass(frozen=True, slots=True)
class Collect:
    """Play ``prompt`` and wait up to ``timeout_s`` for one key (a key interrupts the prompt)."""

    prompt: str
    timeout_s: int
    menu: str


@dataclass(frozen=True, slots=True)
class Done:
    destination: Destination
    reason: str


Step = Play | Collect | Done


@dataclass
class _Frame:
    name: str
    menu: Menu
    tries: int = 0


class MenuRun:
    """One caller's walk through a tenant's menus, starting at ``start_menu``."""

    def __init__(self, tenant: Tenant, start_menu: str, on_event: MenuEvent | None = None) -> None:
        self.tenant = tenant
        self.on_event = on_event
        self.start_menu = start_menu
        self.stack: list[_Frame] = []
        self.steps = 0
        self.trace: list[str] = []

    @property
    def current(self) -> _Frame:
        return self.stack[-1]

    def start(self) -> list[Step]:
        return self._enter(self.start_menu)

    def on_input(self, key: str | None) -> list[Step]:
        """Feed the result of the last :class:`Collect`: a key, or None for a timeout."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            return self._done(HangupDest(type="hangup"), "too many menu steps: caller let go")
        frame = self.current
        if key is None or key == "":
            self._event("timeout", frame.name, None)
            return self._retry(frame, "timeout", frame.menu.timeout_prompt, frame.menu.on_timeout)
        valid = key in frame.menu.options or key == frame.menu.repeat_key
        valid = valid or (key == frame.menu.parent_key and len(self.stack) > 1)
        self._event("key" if valid else "invalid", frame.name, key)
        if key in frame.menu.options:
            return self._go(frame.menu.options[key], f"menu {frame.name}: key {key}")
        if key == frame.menu.repeat_key:
            self.trace.append(f"menu {frame.name}: repeat")
            return [self._collect(frame)]
        if key == frame.menu.parent_key and len(self.stack) > 1:
            self.stack.pop()
            self.trace.append(f"menu {frame.name}: back to {self.current.name}")
            return [self._collect(self.current)]
        return self._retry(frame, f"invalid key {key}", frame.menu.invalid_prompt, frame.menu.on_invalid)

    def _event(self, kind: str, menu: str, key: str | None) -> None:
        if self.on_event is not None:
            self.on_event(kind, menu, key)

    def _enter(self, name: str) -> list[Step]:
        self._event("entered", name, None)
        for depth, frame in enumerate(self.stack):
            if frame.name == name:
                del self.stack[depth + 1 :]
                frame.tries = 0
                return [self._collect(frame)]
        frame = _Frame(name, self.tenant.menus[name])
        self.stack.append(frame)
        greeting = [Play(frame.menu.greeting)] if frame.menu.greeting else []
        return [*greeting, self._collect(frame)]

    def _go(self, destination: Destination, reason: str) -> list[Step]:
        if isinstance(destination, MenuDest):
            self.trace.append(f"{reason} -> menu {destination.menu}")
            return self._enter(destination.menu)
        return self._done(destination, reason)

    def _retry(self, frame: _Frame, what: str, prompt: str | None, last: Destination) -> list[Step]:
        frame.tries += 1
        self.trace.append(f"menu {frame.name}: {what} (try {frame.tries} of {frame.menu.max_tries})")
        if frame.tries >= frame.menu.max_tries:
            return self._go(last, f"menu {frame.name}: {what}, tries used up")
        return [*([Play(prompt)] if prompt else []), self._collect(frame)]

    def _collect(self, frame: _Frame) -> Collect:
        return Collect(frame.menu.prompt, frame.menu.timeout_s, frame.name)

    def _done(self, destination: Destination, reason: str) -> list[Step]:
        self.trace.append(reason)
        return [Done(destination, reason)]
