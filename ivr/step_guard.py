"""How long each blocking step may keep the caller, for Asterisk's absolute timeout (pure).

Used by both AGI adapters: the FastAGI channel (:class:`ivr.fastagi.AgiChannel`, the
controller) and the classic fail-static script (:mod:`agi_scripts._agi`). Neither process can
bound itself when it is the one that hangs, so the bound is kept by Asterisk.

Asterisk never times out a FastAGI server that stops talking: ``run_agi()`` waits for the next
command with no timeout (``agi_server_silent.txt``), and it waits for a classic script's next
command the same way. A controller or fallback script that is frozen, stopped or deadlocked
would keep the caller in ``AGI()`` for ever. The dialplan therefore arms the channel's absolute
timeout before ``AGI()`` (``Set(TIMEOUT(absolute)=...)``: :data:`FIRST_COMMAND_S` for the
controller, :data:`FALLBACK_START_S` for the fallback script), with ``AGIEXITONHANGUP=yes`` and
a ``T`` extension that takes the next fail-static step (``agi_hung_controller_timeout.txt``).

A healthy process keeps that timer just ahead of itself: before each command that blocks
(a prompt, a digit wait, digit collection) it sends ``SET AUTOHANGUP <s>``, which sets the same
timer, with ``s`` = the step's own bound + :attr:`StepGuard.margin_s`. So:

* hung before its first command: the dialplan's bound;
* hung during or after a step: at most that step's bound + margin after the step started;
* never cut off while healthy: each step is re-armed with its full bound before it starts, and
  the work between steps (deciding, setting variables) takes milliseconds, well within the margin.

Non-blocking commands (``SET VARIABLE``, ``GET VARIABLE``, ``VERBOSE``, ``ANSWER`` on an
answered channel) are not guarded: they answer in about a millisecond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FIRST_COMMAND_S = 5  # callrouter-agi's Set(TIMEOUT(absolute)=5) before the controller's AGI()
# callrouter-failstatic's Set(TIMEOUT(absolute)=4) before the fallback script's AGI(), until
# its first command: a process per call, which starts (0.6 s median, 0.9 s p90 on a busy 2-core
# machine, benchmarks/fallback_bench.py) and loads the whole plan file (about 25 ms per tenant
# there: 1.0 s for 42 tenants). 4 s is twice a 40-tenant plan on that machine (docs/performance.md).
FALLBACK_START_S = 4
GET_DATA_DEFAULTS_S = (6.0, 2.0)  # GET DATA with timeout 0: first digit, next digits (app.c)


@dataclass(frozen=True, slots=True)
class StepGuard:
    """``margin_s``: added to every step's bound. ``prompt_s``: the longest prompt or
    announcement (the controller cannot know a prompt's length): by default the server's own
    ``reply_timeout`` (60 s), after which the controller gives up on a prompt anyway, so no
    prompt it would wait for is ever cut."""

    margin_s: float = 5.0
    prompt_s: float = 60.0

    def autohangup(self, bound_s: float) -> str:
        """The ``SET AUTOHANGUP`` argument for a step of ``bound_s`` seconds (whole seconds,
        rounded up; ``0`` disarms when the step has no bound)."""
        if math.isinf(bound_s):
            return "0"
        return str(math.ceil(bound_s + self.margin_s))

    def stream_file(self) -> float:
        return self.prompt_s

    def wait_for_digit(self, timeout_ms: int) -> float:
        """Waiting ``timeout_ms`` (negative: for ever)."""
        return math.inf if timeout_ms < 0 else timeout_ms / 1000

    def get_data(self, timeout_ms: int, max_digits: int) -> float:
        """The prompt, then up to ``max_digits`` digits, each within the timeout (the slowest
        caller types every digit just before it runs out)."""
        if timeout_ms < 0:
            return math.inf
        first, following = (timeout_ms / 1000,) * 2 if timeout_ms else GET_DATA_DEFAULTS_S
        return self.prompt_s + first + following * max(max_digits - 1, 0)
