"""pyst2's classic AGI, wrapped once so that scripts are safe to use.

pyst2 0.5.1 echoes the whole environment block (the caller's number included) and every
command to stderr, which Asterisk writes to its logs, and does not escape quotes in values.
:class:`ClassicChannel` gives pyst2 a silent stderr and quotes every value it sends with the
same codec as the FastAGI server. Its methods mirror :class:`ivr.fastagi.AgiChannel`,
step guard included: before each command that blocks it re-arms the channel's absolute timeout
(``SET AUTOHANGUP``, :mod:`ivr.step_guard`), so that a script that hangs cannot keep the caller.

When Asterisk gives up on the call (the caller hung up, or the absolute timeout fired) it sends
the script ``SIGHUP``. pyst2 only notes it and raises at the next command, so a script stuck in
a read or a deadlock would live on; :func:`exit_on_sighup` makes it end at once instead.
"""

from __future__ import annotations

import io
import signal
import sys
from types import FrameType
from typing import TextIO

from asterisk.agi import AGI, AGIAppError, AGIHangup

from ivr.fastagi.protocol import quote, token
from ivr.step_guard import StepGuard


class ChannelGone(Exception):
    """The caller hung up (SIGHUP, ``result=-1`` or a broken pipe)."""


class _Discard(io.StringIO):
    def write(self, text: str) -> int:
        return len(text)


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_on_sighup() -> None:
    """End the process at the ``SIGHUP`` Asterisk sends when it gives up on the call: the
    script has nothing left to do for a caller who is gone, and it leaves wherever it is
    stuck (``SystemExit``, which no ``except Exception`` swallows)."""
    signal.signal(signal.SIGHUP, _exit)


class ClassicChannel:
    """The channel of a classic AGI script, over pyst2. ``guard``: re-arm the absolute timeout
    before each blocking command (None: never)."""

    def __init__(
        self, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, guard: StepGuard | None = None
    ) -> None:
        self.agi = AGI(stdin=stdin, stdout=stdout, stderr=_Discard())
        self.env: dict[str, str] = dict(self.agi.env)
        self.missing_prompts: list[str] = []
        self.guard = guard

    def _arm(self, bound_s: float) -> None:
        """``SET AUTOHANGUP <bound + margin>`` (``200 result=0``) before a blocking step."""
        if self.guard is not None:
            self._run("SET AUTOHANGUP", self.guard.autohangup(bound_s))

    def _run(self, command: str, *words: str) -> dict[str, tuple[str, str]]:
        try:
            result: dict[str, tuple[str, str]] = self.agi.execute(command, *words)
        except (AGIHangup, BrokenPipeError) as exc:
            raise ChannelGone(str(exc)) from exc
        return result

    def set_variable(self, name: str, value: str) -> None:
        self._run("SET VARIABLE", token(name), quote(value))

    def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE``: ``200 result=1 (cy)`` -> ``"cy"``; ``200 result=0`` (not set) -> None."""
        code, value = self._run("GET VARIABLE", token(name))["result"]
        return value if code == "1" else None

    def stream_file(self, prompt: str, escape_digits: str = "") -> str | None:
        """Play ``prompt``; the escape digit pressed or None. A missing prompt is noted."""
        if self.guard is not None:
            self._arm(self.guard.stream_file())
        try:
            result = self._run("STREAM FILE", token(prompt), quote(escape_digits))
        except AGIAppError:
            self.missing_prompts.append(prompt)
            return None
        code = int(result["result"][0] or 0)
        return chr(code) if code > 0 else None

    def wait_for_digit(self, timeout_ms: int) -> str | None:
        """``WAIT FOR DIGIT``: the key pressed within ``timeout_ms``, or None."""
        if self.guard is not None:
            self._arm(self.guard.wait_for_digit(timeout_ms))
        try:
            result = self._run("WAIT FOR DIGIT", str(timeout_ms))
        except AGIAppError as exc:
            raise ChannelGone(str(exc)) from exc
        code = int(result["result"][0] or 0)
        return chr(code) if code > 0 else None

    def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        if self.guard is not None:
            self._arm(self.guard.get_data(timeout_ms, max_digits))
        try:
            result = self._run("GET DATA", token(prompt), str(timeout_ms), str(max_digits))
        except AGIAppError:
            self.missing_prompts.append(prompt)
            return "", True
        value, data = result["result"]
        return value, data == "timeout"
