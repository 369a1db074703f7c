"""Asterisk running a classic (process-per-call) AGI script, emulated over the script's pipes.

Asterisk starts the script with the environment block on its stdin (no ``agi_network`` lines,
``agi_request`` is the script's path) and reads commands from its stdout; the replies are the
same as FastAGI's, so :class:`~emulator.agi.AsteriskSession` answers them.

A hangup (the caller's, or the channel's absolute timeout) is where a classic script differs
from a FastAGI server. As ``run_agi()`` in res/res_agi.c (Asterisk 22) does it, read from the
source (no capture of a classic script exists):

* Asterisk never writes ``HANGUP`` into the script's stdin: it sends the process ``SIGHUP``
  (``kill(pid, SIGHUP)``), unless ``AGISIGHUP`` is false (``ast_false``).
* With ``AGIEXITONHANGUP`` true (``ast_true``) it then leaves its loop at once, signals
  ``SIGHUP`` once more, gives the process no time to exit (``waitpid(..., WNOHANG)``) and
  closes its ends of both pipes: ``AGI()`` returns ``AGISTATUS=HANGUP`` whatever the script
  does, and a script that ignores ``SIGHUP`` lives on, orphaned.
* Without it, the session goes dead and Asterisk keeps waiting, with no timeout, for the
  script's next command or for it to close its stdout (then ``waitpid`` without ``WNOHANG``):
  a hung script keeps the caller for ever.
* A script that ends by itself (closes its stdout) is reaped and gets no signal.

The emulator does the same. Processes that ``AGI()`` left running are handed to ``orphans``
(the caller kills them once the call is over) or, without it, killed before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence

from emulator.agi import AsteriskSession, CallerScript, EmulatedCall, encode_env, env_lines
from emulator.line import CallerLine
from routing.core.linkedid import make_uniqueid

Process = asyncio.subprocess.Process


def classic_env(script: CallerScript, path: str, channel: str, uniqueid: str) -> list[tuple[str, str]]:
    pairs = env_lines(script, path, path, channel, uniqueid)
    return [(key, value) for key, value in pairs if key not in ("agi_network", "agi_network_script")]


def _sighup(process: Process) -> None:
    """``kill(pid, SIGHUP)``; a process already gone is no error here (Asterisk logs one)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGHUP)


async def run_classic(
    argv: Sequence[str],
    script: CallerScript,
    args: Sequence[str] = (),
    *,
    deadline: float = 30.0,
    line: CallerLine | None = None,
    orphans: list[Process] | None = None,
) -> tuple[EmulatedCall, int | None]:
    """Run ``argv`` as Asterisk runs an AGI script; return what Asterisk saw and the exit code
    (None when ``AGI()`` returned before the process ended).

    ``line``: the channel's clock, digits in flight and absolute timeout, when the script runs
    later in a call (the fail-static path after a controller ``AGI()``); digits, timers and
    ``SET AUTOHANGUP`` behave as over FastAGI. ``orphans``: where a process still running when
    ``AGI()`` returned (``AGIEXITONHANGUP``) goes; None: it is killed here."""
    started = time.perf_counter()
    line = line or CallerLine()
    begun = line.clock.now()  # AGI() starts before the fork
    process = await asyncio.create_subprocess_exec(
        *argv, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    channel = script.channel or "PJSIP/sipp-00000001"
    session = AsteriskSession(
        script, process.stdout, process.stdin, channel=channel, line=line,
        signal_hangup=lambda: _sighup(process),
    )  # fmt: skip
    session.call.uniqueid = script.uniqueid or make_uniqueid(int(time.time()), 1, script.system_name)
    env = encode_env(classic_env(script, argv[-1], channel, session.call.uniqueid), args)
    code: int | None = None
    try:
        async with asyncio.timeout(deadline):
            await session.serve(env)
            if session.call.outcome != "exit-on-hangup":
                code = await process.wait()  # the script closed its stdout: waitpid(pid, status, 0)
    except TimeoutError:
        process.kill()
        await process.wait()
        session.call.agistatus, session.call.outcome = None, "server-silent"
    except (ConnectionError, BrokenPipeError):
        code = await process.wait()
    session.call.duration = time.perf_counter() - started
    session.call.started_at = begun
    if session.call.outcome == "exit-on-hangup":
        code = process.returncode  # waitpid(pid, status, WNOHANG): usually still running
        if code is None:
            await _leave(process, orphans)
    if code not in (0, None) and session.call.agistatus == "SUCCESS":
        session.call.agistatus = "FAILURE"  # agi_exec_full: a non-zero exit status fails SUCCESS
    return session.call, code


async def _leave(process: Process, orphans: list[Process] | None) -> None:
    if orphans is not None:
        orphans.append(process)
        return
    process.kill()
    await process.wait()


async def reap(orphans: list[Process], grace: float = 2.0) -> int:
    """After the call: give each process ``AGI()`` left behind ``grace`` seconds (real time) to
    exit after its SIGHUP, kill the rest; return how many were still running (a real Asterisk
    would have left those running for ever)."""
    lingering = 0
    for process in orphans:
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            lingering += 1
            process.kill()
            await process.wait()
    orphans.clear()
    return lingering
