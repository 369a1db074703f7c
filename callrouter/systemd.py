"""Telling systemd how a process is doing (``sd_notify``), without libsystemd.

A unit with ``Type=notify`` (``deploy/systemd/``) hands the process ``$NOTIFY_SOCKET``, an
``AF_UNIX`` datagram socket (a path, or ``@name`` in the abstract namespace). The process sends
``READY=1`` once it takes work, ``STOPPING=1`` when its drain begins, and, when the unit sets
``WatchdogSec=``, ``WATCHDOG=1`` at least once every ``$WATCHDOG_USEC`` microseconds.

The watchdog pings come from a task on the process's own event loop, every half interval: a loop
that freezes (a blocking call, a livelock) stops pinging, and systemd kills the process and starts
it again (``Restart=``). Calls arriving meanwhile take the dialplan's fail-static path.

Outside systemd (no ``$NOTIFY_SOCKET``) every method does nothing. A send that fails is logged
once and never raised: telling systemd must not stop a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("callrouter.systemd")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address ``$NOTIFY_SOCKET`` names: a path, or ``@name`` as an abstract address
    (a leading NUL byte); None when unset or of a kind not handled (``vsock:``)."""
    value = environ.get(NOTIFY_SOCKET, "")
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings: half of ``$WATCHDOG_USEC`` (as ``sd_watchdog_enabled``
    advises), or None when there is no watchdog for this process (unset, not a positive
    number, or ``$WATCHDOG_PID`` naming another process)."""
    owner = environ.get(WATCHDOG_PID)
    if owner is not None and owner.strip() != str(pid):
        return None
    try:
        usec = int(environ.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 1_000_000 / 2


class Notifier:
    """The link to systemd of one process; inert when ``address`` is None."""

    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s if address is not None else None
        self._socket: socket.socket | None = None
        self._failed = False
        self._pinger: asyncio.Task[None] | None = None
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(notify_address(env), watchdog_interval(env, os.getpid() if pid is None else pid))

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *assignments: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; whether it went."""
        if self._socket is None or self.address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            try:
                self._socket.sendto(message, self.address)
            except BlockingIOError:
                if assignments == ("WATCHDOG=1",):
                    raise  # the next ping comes soon enough
                # READY and STOPPING must not be lost to a queue full of pings (10 datagrams by
                # default): wait for room, briefly; only a reader that is stuck costs this.
                self._socket.settimeout(0.25)
                try:
                    self._socket.sendto(message, self.address)
                finally:
                    self._socket.setblocking(False)
        except OSError as exc:
            if not self._failed:  # once: a gone socket would otherwise log every ping
                log.warning("systemd.notify_failed", error=str(exc), state=assignments[0])
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> None:
        """``READY=1``, and the watchdog pings from now on (needs a running event loop)."""
        self.send("READY=1", *([f"STATUS={status}"] if status else []))
        if self.watchdog_s is not None and self._pinger is None:
            self._pinger = asyncio.get_running_loop().create_task(self._ping(self.watchdog_s))

    def stopping(self, status: str | None = None) -> None:
        """``STOPPING=1``: the drain has begun. The pings go on while the loop turns, so a long
        drain is not mistaken for a freeze."""
        self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    async def _ping(self, every_s: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(every_s)

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
            self._pinger = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
