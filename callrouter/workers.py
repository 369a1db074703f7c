"""``callrouter serve --workers N``: one supervisor process, N worker processes.

Each worker is today's ``serve`` (started again as ``python -m callrouter.cli`` with the same
command line and ``--worker-index I``) listening on the same FastAGI port with SO_REUSEPORT:
the kernel spreads new connections across the workers. The supervisor itself listens on
nothing and decides nothing about calls. It:

- restarts a worker that dies, after a backoff (:func:`restart_delay`), and gives up (stops
  the others, exits 1, so systemd or the container runtime restarts the whole) when one
  worker has needed more than :attr:`RestartPolicy.max_per_minute` restarts in a minute;
- forwards SIGTERM/SIGINT (every worker drains; the supervisor exits once all have) and
  SIGHUP (each worker reloads the plan).

A worker whose supervisor disappears (SIGKILL) notices within a second and drains itself
(``callrouter.service``). What only one process may do, and how the workers share the rest,
is in ``docs/operations.md`` ("More than one core").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from callrouter import systemd

log = structlog.get_logger("callrouter.workers")

EXIT_GAVE_UP = 1
WORKER_FLAG = "--worker-index"


@dataclass(frozen=True)
class RestartPolicy:
    """How a dead worker is restarted: after ``first_delay_s``, doubling with each restart in
    the last ``window_s`` up to ``max_delay_s``; more than ``max_per_minute`` restarts of one
    worker in ``window_s`` and the supervisor gives up."""

    first_delay_s: float = 0.2
    max_delay_s: float = 10.0
    max_per_minute: int = 5
    window_s: float = 60.0


def recent(restarts: Sequence[float], now: float, window_s: float) -> list[float]:
    """The restart times (monotonic seconds) within the last ``window_s`` before ``now``."""
    return [at for at in restarts if now - at < window_s]


def restart_delay(recent_restarts: int, policy: RestartPolicy) -> float:
    """Seconds to wait before the next restart, given the restarts of the last window."""
    return float(min(policy.max_delay_s, policy.first_delay_s * 2**recent_restarts))


def gives_up(recent_restarts: int, policy: RestartPolicy) -> bool:
    """Whether one more restart would be more than the policy allows in a window."""
    return recent_restarts >= policy.max_per_minute


def worker_command(argv: Sequence[str], index: int) -> list[str]:
    """The command line of worker ``index``: this same ``callrouter`` command line."""
    return [sys.executable, "-m", "callrouter.cli", *argv, WORKER_FLAG, str(index)]


def clean_exit(returncode: int) -> bool:
    """A worker's exit after SIGTERM: drained (0), or stopped by the SIGTERM itself before it
    had set up its handler (it was still starting, so it held no call)."""
    return returncode in (0, -signal.SIGTERM)


@dataclass
class Supervisor:
    """Keeps ``count`` workers running until told to stop (see the module doc)."""

    command: Callable[[int], list[str]]
    count: int
    policy: RestartPolicy = RestartPolicy()
    clock: Callable[[], float] = time.monotonic
    processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    restarts: dict[int, list[float]] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    gave_up: bool = False

    def signal_all(self, sig: signal.Signals) -> None:
        for index, process in list(self.processes.items()):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                log.info("supervisor.forwarded", signal=sig.name, worker=index, pid=process.pid)

    def stop(self) -> None:
        """Drain: every worker gets SIGTERM; none is restarted any more."""
        if not self.stopping.is_set():
            log.info("supervisor.stopping", workers=self.count)
            self.stopping.set()
        self.signal_all(signal.SIGTERM)

    async def run(self) -> int:
        """Start the workers and keep them running; 0 when all drained cleanly after a stop."""
        log.info("supervisor.started", workers=self.count)
        results = await asyncio.gather(*(self._keep(index) for index in range(self.count)))
        code = EXIT_GAVE_UP if self.gave_up or not all(results) else 0
        log.info("supervisor.stopped", exit_code=code, gave_up=self.gave_up)
        return code

    async def _keep(self, index: int) -> bool:
        """Run worker ``index`` until the supervisor stops; whether its last exit was clean."""
        while True:
            process = await asyncio.create_subprocess_exec(*self.command(index), env=worker_environ())
            self.processes[index] = process
            log.info("supervisor.worker_started", worker=index, pid=process.pid)
            if self.stopping.is_set():  # stopped while this one was starting
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            code = await process.wait()
            if self.stopping.is_set():
                log.info("supervisor.worker_exited", worker=index, pid=process.pid, exit_code=code)
                return clean_exit(code)
            now = self.clock()
            earlier = recent(self.restarts.get(index, []), now, self.policy.window_s)
            log.warning(
                "supervisor.worker_died",
                worker=index,
                pid=process.pid,
                exit_code=code,
                restarts_last_minute=len(earlier),
            )
            if gives_up(len(earlier), self.policy):
                log.error(
                    "supervisor.giving_up",
                    worker=index,
                    restarts=len(earlier),
                    window_s=self.policy.window_s,
                )
                self.gave_up = True
                self.stop()
                return False
            delay = restart_delay(len(earlier), self.policy)
            self.restarts[index] = [*earlier, now]
            log.info("supervisor.restarting", worker=index, delay_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return True


def worker_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A worker's environment: the supervisor's, without systemd's notify socket and watchdog,
    which belong to the supervisor alone (a unit's ``NotifyAccess=main`` refuses the others)."""
    env = dict(os.environ if environ is None else environ)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)
    return env


async def supervise(argv: Sequence[str], count: int, policy: RestartPolicy = RestartPolicy()) -> int:
    """Run ``count`` workers of this command line until SIGTERM/SIGINT; the exit code. Under
    systemd the supervisor says READY and STOPPING and pings the watchdog from its own loop."""
    supervisor = Supervisor(lambda index: worker_command(argv, index), count, policy)
    notifier = systemd.Notifier.from_environ()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        notifier.stopping("draining the workers")
        supervisor.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, supervisor.signal_all, signal.SIGHUP)
    notifier.ready(f"{count} workers")
    try:
        return await supervisor.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await notifier.close()
