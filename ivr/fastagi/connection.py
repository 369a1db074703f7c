"""One FastAGI connection as an :class:`asyncio.Protocol` (no StreamReader/StreamWriter).

Bytes go into one ``bytearray``; the environment block is cut at the first ``\\n\\n`` as soon as
it is complete, so the session task starts with its :class:`~ivr.fastagi.protocol.AgiRequest`
already parsed; afterwards :meth:`AgiConnection.read_line` hands out reply lines, waiting on one
Future only when no whole line is buffered. TCP segment boundaries do not matter: a line can be
split over several segments, and one segment can carry several lines (``HANGUP\\n200 result=1\\n``).

The server (:mod:`ivr.fastagi.server`) owns the policy (limits, counters, logs); this class
owns the buffer, flow control and the lifecycle of one socket:

* ``env``: reading the environment block (byte cap; the server's watchdog keeps the deadline);
* ``call``: the handler runs in its own task and reads replies with :meth:`read_line`;
* ``failing``: ``failure`` was written; input is discarded until the peer closes or the grace
  period ends;
* ``closed``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from ivr.fastagi.protocol import FAILURE_LINE

if TYPE_CHECKING:
    from ivr.fastagi.server import FastAgiServer

ENV, CALL, FAILING, CLOSED = "env", "call", "failing", "closed"


class AgiConnection(asyncio.Protocol):
    """The protocol object of one accepted connection (see the module docstring)."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_drain_waiter",
        "_eof",
        "_error",
        "_limit",
        "_loop",
        "_paused_reading",
        "_paused_writing",
        "_scanned",
        "_server",
        "_timer",
        "_waiter",
        "host",
        "state",
        "task",
        "transport",
    )

    def __init__(self, server: FastAgiServer, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._server = server
        self._loop = loop
        self._limit = limit
        self._buffer = bytearray()
        self._scanned = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._paused_writing = False
        self._timer: asyncio.TimerHandle | None = None
        self.state = ENV
        self.host: str | None = None  # the peer's address while the server counts this connection
        self.task: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None

    # -- asyncio.Protocol callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server._accepted(self)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == CALL:
            self._buffer += data
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if len(self._buffer) > 2 * self._limit and not self._paused_reading:
                self._paused_reading = True
                self._pause_reading()
        elif state == ENV:
            self._env_data(data)
        # failing / closed: input is discarded

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        if self.state == ENV:
            self._server._bad_request(self, "eof")
            return False
        if self.state == FAILING:
            self.close()
            return False
        return True  # half-closed: the handler may still write (Asterisk closed first)

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._cancel_timer()
        self._wake()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("connection lost"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self.state == ENV:  # reset before the block was complete
            self._server._bad_request(self, "eof")
        self.state = CLOSED
        self._server._gone(self)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- environment block ---------------------------------------------------------------------

    def _env_data(self, data: bytes) -> None:
        buffer = self._buffer
        end = len(data) - 2
        if not buffer and 0 <= end <= self._limit and data.find(b"\n\n") == end:
            self._server._env_block(self, data)  # the usual case: the whole block in one segment
            return
        buffer += data
        end = buffer.find(b"\n\n", self._scanned)
        if end < 0:
            # A block may end at offset limit + 2 ("\n\n" starting at the limit, as the one-segment
            # test above allows): limit + 1 bytes without it could still become one.
            if len(buffer) > self._limit + 1:
                self._server._bad_request(self, "oversized")
            else:
                self._scanned = max(0, len(buffer) - 1)
            return
        if end > self._limit:
            self._server._bad_request(self, "oversized")
            return
        block = bytes(buffer[: end + 2])
        del buffer[: end + 2]
        self._scanned = 0
        self._server._env_block(self, block)  # sets state to CALL (and starts the task) or fails

    # -- what the channel uses -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def must_drain(self) -> bool:
        return self._paused_writing or self.state == CLOSED

    async def drain(self) -> None:
        """Wait until the transport's buffer is under its high-water mark."""
        if self.state == CLOSED:
            raise ConnectionResetError("connection lost")
        if not self._paused_writing:
            return
        self._drain_waiter = self._loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    async def read_line(self) -> str:
        """The next line without its ``\\n``. Raises what a ``StreamReader.readuntil`` would:
        :class:`asyncio.IncompleteReadError` at EOF, the connection's error after a reset or
        :meth:`fail_read`, :class:`asyncio.LimitOverrunError` for a line over the cap."""
        buffer = self._buffer
        while True:
            if self._error is not None:
                raise self._error
            end = buffer.find(b"\n")
            if end >= 0:
                if end > self._limit:
                    raise asyncio.LimitOverrunError("reply line over the limit", end)
                line = buffer[:end].decode("utf-8", errors="replace")
                del buffer[: end + 1]
                if self._paused_reading and len(buffer) <= self._limit:
                    self._paused_reading = False
                    self._resume_reading()
                return line
            if len(buffer) > self._limit:
                raise asyncio.LimitOverrunError("reply line over the limit", len(buffer))
            if self._eof:
                raise asyncio.IncompleteReadError(bytes(buffer), None)
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def fail_read(self, exc: Exception) -> None:
        """Make the pending and every later :meth:`read_line` raise ``exc`` (reply timeout)."""
        self._error = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -- endings -------------------------------------------------------------------------------

    @property
    def is_closing(self) -> bool:
        return self.state == CLOSED or self.transport is None or self.transport.is_closing()

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def peer_host(self) -> str:
        """The peer's address as the socket reports it (``"unknown"`` if it is not an IP peer
        or already gone: never allowed)."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return peer[0] if isinstance(peer, tuple) else "unknown"

    def refuse(self) -> None:
        """Write ``failure`` and close at once (no grace period): for connections that are not
        a call in progress (a peer not allowed, an evicted or broken pending connection), so
        nothing is held for them."""
        self._cancel_timer()
        self.state = FAILING
        self._buffer.clear()
        if not self.is_closing:
            self.write(FAILURE_LINE)
        self.close()

    def fail(self, grace: float) -> None:
        """Write ``failure`` (AGISTATUS=FAILURE), then close when the peer does or after
        ``grace`` seconds, discarding what it sends meanwhile."""
        if self.is_closing:
            self.close()
            return
        self._cancel_timer()
        self.state = FAILING
        self._buffer.clear()
        assert self.transport is not None
        self.transport.write(FAILURE_LINE)
        if self._eof:
            self.close()
            return
        self._timer = self._loop.call_later(grace, self.close)

    async def fail_and_wait(self, grace: float) -> None:
        """:meth:`fail`, then wait until the connection is closed."""
        self.fail(grace)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        if self.state == CLOSED:
            return
        if self._closed is None:
            self._closed = self._loop.create_future()
        await asyncio.shield(self._closed)

    def abort(self, send_failure: bool) -> None:
        """Best-effort ``failure`` line without waiting, then close (cancellation)."""
        if send_failure and not self.is_closing:
            self.write(FAILURE_LINE)
        self.close()

    def close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- helpers -------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
