"""Asterisk running a classic (process-per-call) AGI script, emulated over the script's pipes.

Asterisk starts the script with the environment block on its stdin (no ``agi_network`` lines,
``agi_request`` is the script's path) and reads commands from its stdout; the replies are the
same as FastAGI's, so :class:`~emulator.agi.AsteriskSession` answers them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from emulator.agi import AsteriskSession, CallerScript, EmulatedCall, encode_env, env_lines
from emulator.line import CallerLine


def classic_env(script: CallerScript, path: str, channel: str, uniqueid: str) -> list[tuple[str, str]]:
    pairs = env_lines(script, path, path, channel, uniqueid)
    return [(key, value) for key, value in pairs if key not in ("agi_network", "agi_network_script")]


async def run_classic(
    argv: Sequence[str],
    script: CallerScript,
    args: Sequence[str] = (),
    *,
    deadline: float = 30.0,
    line: CallerLine | None = None,
) -> tuple[EmulatedCall, int | None]:
    """Run ``argv`` as Asterisk runs an AGI script; return what Asterisk saw and the exit code.

    ``line``: the channel's clock, digits in flight and absolute timeout, when the script runs
    later in a call (the fail-static path after a controller ``AGI()``); digits, timers and
    ``SET AUTOHANGUP`` behave as over FastAGI."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    channel = script.channel or "PJSIP/sipp-00000001"
    session = AsteriskSession(script, process.stdout, process.stdin, channel=channel, line=line)
    session.call.uniqueid = script.uniqueid or f"{int(time.time())}.1"
    env = encode_env(classic_env(script, argv[-1], channel, session.call.uniqueid), args)
    try:
        async with asyncio.timeout(deadline):
            await session.serve(env)
            code = await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        session.call.agistatus, session.call.outcome, code = None, "server-silent", None
    except (ConnectionError, BrokenPipeError):
        code = await process.wait()
    session.call.duration = time.perf_counter() - started
    if code not in (0, None):
        session.call.agistatus = "FAILURE"
    return session.call, code
