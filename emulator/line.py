"""The caller's side of one emulated channel: its clock, the DTMF in flight, its absolute timeout.

One :class:`CallerLine` lives as long as the call, across every ``AGI()`` of the dialplan and the
applications between them, as a real channel does. Faithful to Asterisk 22.10.1
(``agi_getdata_maxdigits_overflow.txt``):

* **Nothing is buffered.** A digit goes to the command (or dialplan application) that is
  listening when it arrives, or is lost: between AGI commands ``run_agi()`` reads and frees
  every frame. After ``AGI()`` ends, digits go to the next dialplan application that listens.
* Digits arrive at the end of their RFC 4733 event; the capture's caller typed one every 0.3 s.
* ``TIMEOUT(absolute)`` and AGI's ``SET AUTOHANGUP`` set the same timer
  (``agi_hung_controller_timeout.txt``): :attr:`CallerLine.hangup_at`.

Time is the emulator's clock (:class:`CallClock`), in seconds since the call started.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

DIGIT_GAP = 0.3  # seconds between the caller's digits (agi_getdata_maxdigits_overflow.txt)


class CallClock:
    """The emulator's clock for one call, in seconds.

    ``time_scale`` 0: modelled durations (prompts, digit timeouts) take no real time and are
    added to the clock; time spent waiting for the server passes at the real rate. ``time_scale``
    > 0: everything runs in real time scaled by it (0.1: ten times faster than a real call), so a
    silent server meets the absolute timeout after ``timeout * time_scale`` real seconds."""

    def __init__(self, time_scale: float = 0.0) -> None:
        self.time_scale = time_scale
        self._started = time.monotonic()
        self._skipped = 0.0

    def now(self) -> float:
        real = time.monotonic() - self._started
        return self._skipped + (real / self.time_scale if self.time_scale > 0 else real)

    def real_seconds(self, seconds: float) -> float:
        """How long ``seconds`` of this clock take in real time while waiting for the server."""
        return max(seconds, 0.0) * (self.time_scale if self.time_scale > 0 else 1.0)

    async def sleep_until(self, when: float) -> None:
        """Let modelled time pass until ``when`` (a prompt playing, a digit timeout)."""
        seconds = when - self.now()
        if seconds <= 0:
            return
        if self.time_scale > 0:
            await asyncio.sleep(seconds * self.time_scale)
        else:
            self._skipped += seconds


@dataclass
class CallerLine:
    """The channel as the caller and the dialplan share it: clock, digits in flight, timer."""

    clock: CallClock = field(default_factory=CallClock)
    typed: list[tuple[float, str]] = field(default_factory=list)  # (arrival, digit), in order
    hangup_at: float | None = None  # TIMEOUT(absolute) / SET AUTOHANGUP, on the clock
    lost: list[str] = field(default_factory=list)  # digits that arrived while nothing listened
    heard: list[str] = field(default_factory=list)  # digits a command or application received

    def type(self, digits: str, first_at: float, gap: float = DIGIT_GAP) -> None:
        """The caller types ``digits``: the first arrives at ``first_at``, then one every ``gap``."""
        self.typed += [(first_at + i * gap, digit) for i, digit in enumerate(digits)]

    @property
    def typing(self) -> bool:
        """True while digits the caller typed have not arrived yet."""
        return bool(self.typed)

    def listen_from(self, when: float) -> None:
        """Something starts listening at ``when``: digits that arrived before are gone."""
        while self.typed and self.typed[0][0] < when:
            self.lost.append(self.typed.pop(0)[1])

    def next_digit(self, until: float | None) -> tuple[float, str] | None:
        """The next digit arriving by ``until`` (None: any time), taken off the line."""
        if not self.typed or (until is not None and self.typed[0][0] > until):
            return None
        arrival, digit = self.typed.pop(0)
        self.heard.append(digit)
        return arrival, digit

    def arm(self, seconds: float) -> None:
        """``TIMEOUT(absolute)=seconds`` / ``SET AUTOHANGUP seconds``; 0 disarms."""
        self.hangup_at = self.clock.now() + seconds if seconds > 0 else None

    def cut_before(self, when: float) -> bool:
        """True if the absolute timeout comes before ``when``."""
        return self.hangup_at is not None and self.hangup_at < when


async def read_app(line: CallerLine, max_digits: int, timeout_s: float) -> tuple[str, str]:
    """Dialplan ``Read(VAR,,max_digits,,,timeout)`` with no prompt: ``(digits, READSTATUS)``.

    Like GET DATA: the first digit and each next one within ``timeout_s``; ``#`` or
    ``max_digits`` end input (``OK``), anything else is ``TIMEOUT``."""
    clock = line.clock
    line.listen_from(clock.now())
    deadline = clock.now() + timeout_s
    digits = ""
    while (item := line.next_digit(deadline)) is not None:
        arrival, digit = item
        await clock.sleep_until(arrival)
        if digit == "#":
            return digits, "OK"
        digits += digit
        if len(digits) >= max_digits:
            return digits, "OK"
        deadline = arrival + timeout_s
    await clock.sleep_until(deadline)
    return digits, "TIMEOUT"  # also with digits: 5406 got LEFTOVER=90987654 READSTATUS=TIMEOUT
