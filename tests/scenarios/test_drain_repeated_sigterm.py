"""A burst of SIGTERMs never ends a draining controller before its drain and shutdown are done.

``timeout`` sends SIGTERM to the process and again to its process group, a supervisor and
systemd may each send one: ``serve_until_signal(hold_sigterm=True)`` ignores the repeats. It
used to remove its handler (which restores the default action) and only then ignore the signal:
a repeat in between ended the process in the middle of its drain, silently (seen once in the
rolling-restart test: a controller's log stopped at ``agi.server.signalled``). Here a process runs
``serve_until_signal`` and gets SIGTERM every few microseconds for 0.15 s from the moment it
listens: it must drain, finish the rest of its shutdown and exit 0, every time, on the standard
loop and on uvloop. (Before the fix: 7 of 40 such runs died.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNS = 12  # per loop; a run died about one time in six before the fix
CHILD = """
import asyncio, sys
from ivr.fastagi import FastAgiServer, ServerConfig
from ivr.fastagi.server import serve_until_signal

async def main() -> None:
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0))

    async def announce() -> None:  # its handlers are in place before it starts the server
        while not server.serving:
            await asyncio.sleep(0.01)
        print("LISTENING", flush=True)

    announcing = asyncio.create_task(announce())
    await serve_until_signal(server, drain_timeout=0.2, hold_sigterm=True)
    announcing.cancel()
    await asyncio.sleep(0.3)  # the rest of a shutdown (the records' last flush), signals still coming
    print("shut down", flush=True)

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


def one_run(loop: str) -> tuple[int, str]:
    """Start the process, send SIGTERM every ~20 us for 0.15 s once it listens; (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, loop], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    ) as process:
        assert process.stdout is not None
        lines = []
        while (line := process.stdout.readline()) and line != "LISTENING\n":
            lines.append(line)
        assert line, "the process did not start listening"
        until = time.perf_counter() + 0.15
        while time.perf_counter() < until and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            pause = time.perf_counter() + 0.00002
            while time.perf_counter() < pause:
                pass
        code = process.wait(timeout=10)
        return code, "".join(lines) + process.stdout.read()


@pytest.mark.parametrize("loop", loops())
def test_a_burst_of_sigterms_never_cuts_the_drain_short(loop: str) -> None:
    outcomes = [one_run(loop) for _ in range(RUNS)]
    died = [(code, output[-300:]) for code, output in outcomes if code != 0 or "shut down" not in output]
    assert not died, died
    drained = [output for _, output in outcomes if "agi.server.drained" in output]
    assert len(drained) == RUNS
