"""An asyncio FastAGI server: route registry, limits, graceful drain.

What Asterisk 22 reports to the dialplan for each way a session can end (``AGISTATUS``):

* the server closes the socket, whatever it did before (even right after the environment block,
  ``agi_server_close_immediately.txt``): ``SUCCESS``, unless a STREAM FILE hit a missing
  prompt (``FAILURE``) or the channel hung up (``HANGUP``). A plain close therefore looks like
  a success to the dialplan.
* the server writes the line ``failure``: ``FAILURE`` at once (Asterisk answers ``HANGUP`` and
  closes, ``agi_server_failure_line.txt``). This server sends it whenever it could not route a
  call: peer not allowed, too many sessions (or from that peer), evicted while pending, draining,
  unknown route, bad environment block, handler exception, per-call deadline, cancelled at the
  end of a drain. The dialplan then falls back with
  ``GotoIf($["${AGISTATUS}" != "SUCCESS"]?fallback)``.
* nothing listens (server stopped or drained): connection refused, ``FAILURE`` in 1 ms
  (``agi_connect_failures.txt``).
* the server never answers: Asterisk waits forever (``agi_server_silent.txt``), hence the
  per-command and per-call timeouts here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import resource
import signal
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from structlog.contextvars import bind_contextvars

from ivr.fastagi.admission import PeerFilter, RefusalLog, Repeats, fd_budget, parse_peers, turn_away
from ivr.fastagi.channel import AgiChannel, AgiHangup, ReplyWatchdog
from ivr.fastagi.connection import CALL, ENV, FAILING, AgiConnection
from ivr.fastagi.protocol import AgiProtocolError, AgiRequest, parse_request
from ivr.step_guard import StepGuard
from routing.masking import mask_number

log = structlog.get_logger("ivr.fastagi")
DEFAULT_GUARD = StepGuard()

Handler = Callable[[AgiChannel, AgiRequest], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Limits and timeouts (seconds, bytes). The defaults suit a council contact centre.

    ``allowed_peers``: addresses or CIDR networks Asterisk connects from (others are closed
    at once); ``max_sessions``: concurrent calls; ``max_sessions_per_peer``: concurrent calls
    from one address; ``max_pending``: connections still sending their environment block
    (they never use the session budget; when full, the oldest is closed);
    ``step_guard``: re-arm Asterisk's absolute timeout before every blocking command (None: off;
    the dialplan must then not arm ``TIMEOUT(absolute)`` before ``AGI()``). Invalid values raise
    :class:`ValueError` here."""

    host: str = "127.0.0.1"
    port: int = 4573
    backlog: int = 1024
    reuse_port: bool = False  # SO_REUSEPORT: several worker processes share the port (serve --workers)
    allowed_peers: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    max_sessions: int = 1000
    max_sessions_per_peer: int = 1000
    max_pending: int = 128
    env_max_bytes: int = 16 * 1024
    env_timeout: float = 5.0
    reply_timeout: float = 60.0
    call_timeout: float = 300.0
    failure_grace: float = 1.0
    refusal_log_interval: float = 60.0
    step_guard: StepGuard | None = DEFAULT_GUARD

    def __post_init__(self) -> None:
        parse_peers(self.allowed_peers)
        object.__setattr__(self, "allowed_peers", tuple(self.allowed_peers))  # a list is accepted
        for name in ("max_sessions", "max_sessions_per_peer", "max_pending"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
        if not self.refusal_log_interval > 0:
            raise ValueError(f"refusal_log_interval must be positive, not {self.refusal_log_interval!r}")


@dataclass(slots=True)
class SessionCounters:
    """Counts since start. ``refused``: the peer is not in ``allowed_peers``; ``rejected``:
    over the session cap or a peer's cap, or draining; ``evicted``: pending connections closed
    to make room for a new one; ``bad_requests``: EOF, garbage, oversized or slow environment
    block; ``failed``: handler exception or per-call deadline; ``hung_up``: the handler ended
    on :class:`AgiHangup`; ``timed_out``: of ``failed``, those cut at the per-call
    deadline. ``active``: connections held now (pending, calls, ending);
    ``pending``: those still sending their environment block."""

    connections: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    hung_up: int = 0
    cancelled: int = 0
    refused: int = 0
    rejected: int = 0
    evicted: int = 0
    bad_requests: int = 0
    unknown_routes: int = 0
    timed_out: int = 0
    active: int = 0
    pending: int = 0


class FastAgiServer:
    """FastAGI server. Register handlers, ``await start()``, ``await drain(timeout)``.

    >>> server = FastAgiServer(ServerConfig(port=0))
    >>> @server.route("route")
    ... async def route(channel: AgiChannel, request: AgiRequest) -> None:
    ...     await channel.set_variable("ROUTE", "revenues")

    Routing uses the path of ``agi_network_script`` (``route?tenant=harborough`` -> ``route``);
    the query string is in ``request.query``.

    Each connection is an :class:`~ivr.fastagi.connection.AgiConnection` (an
    ``asyncio.Protocol``); its handler runs in a task started once the environment block is
    complete. Connections that are turned away (peer not allowed, caps, draining, bad block,
    unknown route) never get a task.

    Admission (``connection_made``, O(1) per connection, see :mod:`ivr.fastagi.admission`): a
    peer outside ``allowed_peers`` gets ``failure`` and is closed at once; then the session
    cap and the peer's cap (both count calls only); then the connection waits for its
    environment block in the pending budget (``max_pending``, deadline ``env_timeout``). When
    that budget is full the *oldest* pending connection is closed to make room: Asterisk
    writes its block as soon as it connects, so a real call is pending for one loop
    iteration, while an idle socket stays until evicted or overdue. Refusals are logged once
    per peer and reason per ``refusal_log_interval``, with a count of the rest."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self._routes: dict[str, Handler] = {}
        self._counters = SessionCounters()
        self._connections: set[AgiConnection] = set()  # counted: pending, calls, calls ending
        self._pending: OrderedDict[AgiConnection, float] = OrderedDict()  # -> block deadline
        self._sessions: set[AgiConnection] = set()  # environment block received: calls
        self._peer_sessions: dict[str, int] = {}  # calls per peer address
        self._peers = PeerFilter(parse_peers(self.config.allowed_peers))
        self._refusals = RefusalLog(self.config.refusal_log_interval)
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._quiet: asyncio.Future[None] | None = None
        shortest = min(self.config.reply_timeout, self.config.call_timeout, self.config.env_timeout)
        interval = min(1.0, max(0.01, shortest / 10))
        self._watchdog = ReplyWatchdog(interval)
        self._watchdog.checks.append(self._expire_blocks)
        self._watchdog.checks.append(self._flush_refusals)
        self._watchdog_task: asyncio.Task[None] | None = None

    # -- registry ------------------------------------------------------------------------------

    def register(self, name: str, handler: Handler) -> None:
        """Register ``handler`` for route ``name``; a name can be registered once."""
        key = name.strip("/")
        if key in self._routes:
            raise ValueError(f"FastAGI route {key!r} is already registered")
        if not _is_async_callable(handler):
            raise TypeError(f"FastAGI handler for {key!r} must be an async function")
        self._routes[key] = handler

    def route(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def decorate(handler: Handler) -> Handler:
            self.register(name, handler)
            return handler

        return decorate

    @property
    def routes(self) -> tuple[str, ...]:
        return tuple(self._routes)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``config.host:config.port`` (port 0 picks a free port)."""
        loop = self._loop = asyncio.get_running_loop()
        limit = self.config.env_max_bytes
        _ensure_fd_limit(fd_budget(self.config.max_sessions, self.config.max_pending))
        self._server = await loop.create_server(
            lambda: AgiConnection(self, loop, limit),
            self.config.host,
            self.config.port,
            backlog=self.config.backlog,
            reuse_address=True,
            reuse_port=self.config.reuse_port or None,
        )
        self._watchdog_task = asyncio.create_task(self._watchdog.run())
        log.info("agi.server.listening", host=self.config.host, port=self.port)

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def serving(self) -> bool:
        """True between :meth:`start` and :meth:`drain`."""
        return self._server is not None and self._server.is_serving()

    @property
    def counters(self) -> SessionCounters:
        """A snapshot of the session counters."""
        return dataclasses.replace(self._counters, active=len(self._connections), pending=len(self._pending))

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 (a grace period, not a cancel)
        """Stop accepting (new connections are refused), let calls in progress run for up to
        ``timeout`` seconds, then cancel the rest (each gets a ``failure`` line so its dialplan
        falls back) and wait for them to close."""
        queued = self._take_queued()
        if self._server is not None:
            self._server.close()
        if queued and self._loop is not None:  # admitted as calls: the listener is closed already
            loop, limit = self._loop, self.config.env_max_bytes
            for sock in queued:
                await loop.connect_accepted_socket(lambda: AgiConnection(self, loop, limit), sock)
        # uvloop accepts in its I/O phase and calls connection_made a step later: a connection it
        # accepted before the close is admitted too (nothing newer can come, the listener is shut)
        await asyncio.sleep(0)
        self._draining = True
        log.info("agi.server.draining", active=len(self._connections), timeout=timeout, queued=len(queued))
        if self._connections:
            self._quiet = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._quiet}, timeout=timeout)
        cut = list(self._connections)
        tasks = {conn.task for conn in cut if conn.task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for conn in cut:  # still reading its block, or its task was cancelled before it started
            conn.abort(send_failure=conn.state in (ENV, CALL))
        if self._server is not None:
            await self._server.wait_closed()
        await self._stop_watchdog()
        self._log_repeats(self._refusals.flush_all())
        log.info("agi.server.drained", cut_short=len(cut))

    def _take_queued(self) -> list[socket.socket]:
        """Accept the connections the kernel has completed but the loop has not accepted yet,
        right before the listener closes. Closing an asyncio listener resets those (uvloop had
        often accepted them already, and the drain then answered ``failure``), while Asterisk
        counts them connected: ``hagi://`` moves to the next controller only on a failed
        connect, so such a call would take the fail-static path. Taken here, they are served like
        any call; what the kernel completes between this and the close (microseconds) is lost."""
        taken: list[socket.socket] = []
        for listening in self._server.sockets if self._server is not None else ():
            with socket.socket(fileno=os.dup(listening.fileno())) as sock:  # the listener itself stays
                sock.setblocking(False)
                while True:
                    try:
                        conn, _address = sock.accept()
                    except OSError:  # BlockingIOError: nothing more queued
                        break
                    taken.append(conn)
        return taken

    async def _stop_watchdog(self) -> None:
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog_task
            self._watchdog_task = None

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.drain(0)

    # -- connection (callbacks of AgiConnection) -----------------------------------------------

    def _accepted(self, conn: AgiConnection) -> None:
        """``connection_made``: turn the connection away, or count it as pending."""
        self._counters.connections += 1
        config = self.config
        host = conn.peer_host()
        reason = turn_away(
            allowed=self._peers.allows(host),
            draining=self._draining,
            sessions=len(self._sessions),
            max_sessions=config.max_sessions,
            peer_sessions=self._peer_sessions.get(host, 0),
            max_per_peer=config.max_sessions_per_peer,
        )
        if reason is not None:
            self._turn_away(conn, host, reason)
            return
        pending = self._pending
        if len(pending) >= config.max_pending:
            self._evict(next(iter(pending)))
        conn.host = host
        self._connections.add(conn)
        pending[conn] = self._watchdog.now() + config.env_timeout

    def _turn_away(self, conn: AgiConnection, host: str, reason: str) -> None:
        if reason == "peer-not-allowed":
            self._counters.refused += 1
            conn.refuse()  # not our Asterisk: nothing is held for it
        else:
            self._counters.rejected += 1
            conn.fail(self.config.failure_grace)  # a real call: let Asterisk read the line
        self._note("agi.connection.rejected", reason, host, sessions=len(self._sessions))

    def _evict(self, conn: AgiConnection) -> None:
        """The pending budget is full: close its oldest connection (``failure`` first)."""
        self._counters.evicted += 1
        host = conn.host or "unknown"
        self._note("agi.connection.evicted", "pending-full", host, pending=len(self._pending))
        self._release(conn)
        conn.refuse()

    def _note(self, event: str, reason: str, host: str, **fields: object) -> None:
        """Log a refusal unless one like it (event, reason, peer) was logged this interval."""
        peer = self._refusals.note(event, reason, host, self._watchdog.now())
        if peer is not None:
            log.warning(event, reason=reason, peer=peer, **fields)

    def _flush_refusals(self, now: float) -> None:
        """Watchdog check: at the end of each interval, how many refusals were not logged."""
        self._log_repeats(self._refusals.flush(now))

    def _log_repeats(self, repeats: Iterable[Repeats]) -> None:
        for item in repeats:
            log.warning(
                item.event,
                reason=item.reason,
                peer=item.peer,
                repeats=item.count,
                interval_s=self.config.refusal_log_interval,
            )

    def _expire_blocks(self, now: float) -> None:
        """Watchdog check: a peer too slow to send its block gets ``failure`` (no timer each).
        Deadlines grow in insertion order, so only the overdue head of the queue is visited."""
        overdue: list[AgiConnection] = []
        for conn, deadline in self._pending.items():
            if now < deadline:
                break
            overdue.append(conn)
        for conn in overdue:
            self._bad_request(conn, "slow")

    def _release(self, conn: AgiConnection) -> None:
        """Stop counting ``conn`` (closed, or turned away after it was admitted). Idempotent."""
        host = conn.host
        if host is None:
            return
        conn.host = None
        self._pending.pop(conn, None)
        sessions = self._sessions
        if conn in sessions:
            sessions.remove(conn)
            per_peer = self._peer_sessions
            left = per_peer[host] - 1
            if left:
                per_peer[host] = left
            else:
                del per_peer[host]
        connections = self._connections
        connections.discard(conn)
        if not connections and self._quiet is not None and not self._quiet.done():
            self._quiet.set_result(None)

    def _gone(self, conn: AgiConnection) -> None:
        self._release(conn)

    def _bad_request(self, conn: AgiConnection, reason: str) -> None:
        """EOF, garbage, oversized or slow environment block: never a real call (Asterisk
        writes a whole block at once), so it is closed at once and stops counting."""
        if conn.state != ENV or conn.host is None:
            return
        self._counters.bad_requests += 1
        self._note("agi.request.bad", reason, conn.host)
        self._release(conn)
        if reason == "eof":
            conn.state = FAILING
            conn.close()
        else:
            conn.refuse()

    def _env_block(self, conn: AgiConnection, block: bytes) -> None:
        """The environment block is complete: route the call and start its task."""
        self._pending.pop(conn, None)
        try:
            request = parse_request(block)
        except AgiProtocolError:
            self._bad_request(conn, "garbage")
            return
        host = conn.host
        if host is None:  # turned away meanwhile (cannot happen: its input is discarded)
            return
        handler = self._routes.get(request.script)
        if handler is None:
            self._counters.unknown_routes += 1
            route = request.script[:100]
            self._note("agi.route.unknown", "unknown-route", host, route=route, uniqueid=request.uniqueid)
            conn.fail(self.config.failure_grace)
            return
        # The caps again: calls that were pending together may complete together.
        config, sessions, per_peer = self.config, self._sessions, self._peer_sessions
        peer_sessions = per_peer.get(host, 0)
        if len(sessions) >= config.max_sessions or peer_sessions >= config.max_sessions_per_peer:
            reason = "session-cap" if len(sessions) >= config.max_sessions else "peer-cap"
            self._counters.rejected += 1
            self._note("agi.connection.rejected", reason, host, sessions=len(sessions))
            conn.fail(config.failure_grace)
            return
        sessions.add(conn)
        per_peer[host] = peer_sessions + 1
        assert self._loop is not None
        conn.state = CALL
        conn.task = self._loop.create_task(self._session(handler, request, conn))

    # -- handler -------------------------------------------------------------------------------

    async def _session(self, handler: Handler, request: AgiRequest, conn: AgiConnection) -> None:
        task = conn.task  # this task (asyncio.current_task() costs a getpid() syscall in 3.11)
        assert task is not None
        # The task runs in its own copy of the context: bound once, never reset.
        bind_contextvars(
            uniqueid=request.uniqueid,
            channel=request.channel,
            route=request.script,
            caller=mask_number(request.callerid),
        )
        channel = AgiChannel.over(
            conn,
            request,
            reply_timeout=self.config.reply_timeout,
            watchdog=self._watchdog,
            guard=self.config.step_guard,
        )
        self._watchdog.channels.add(channel)
        self._counters.started += 1
        started = time.perf_counter()
        session_log = log.bind()  # one logger for the session's own events, not one per event
        session_log.debug("agi.session.start")
        outcome = "cancelled"
        try:
            outcome = await self._call(handler, channel, request, task)
            if outcome in ("failed", "deadline") and channel.connected and not channel.hung_up:
                await conn.fail_and_wait(self.config.failure_grace)
        except asyncio.CancelledError:
            conn.abort(send_failure=channel.connected and not channel.hung_up)
            raise
        finally:
            conn.close()
            self._watchdog.channels.discard(channel)
            self._count(outcome)
            # The session's one event (agi.session.end, or what the handler named it, e.g.
            # call.routed, with the handler's fields: AgiChannel.summarize). With the JSON logs
            # of callrouter.logs it is rendered without structlog's processor chain (the same
            # line, 5-8 us less a session: docs/performance.md, "The call's line rendered directly").
            session_log.info(
                channel.summary_event,
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                commands=channel.commands_sent,
                missing_prompts=len(channel.missing_prompts),
                **channel.summary,
            )

    async def _call(
        self, handler: Handler, channel: AgiChannel, request: AgiRequest, task: asyncio.Task[None]
    ) -> str:
        # The per-call deadline is kept by the watchdog (no timer per call): an overdue task
        # is cancelled and marked expired; a cancellation from elsewhere (drain) propagates.
        watchdog = self._watchdog
        cancelling = task.cancelling()
        watchdog.calls[task] = watchdog.now() + self.config.call_timeout
        try:
            await handler(channel, request)
        except AgiHangup as exc:
            log.info("agi.session.hangup", reason=exc.reason)
            return "hangup"
        except asyncio.CancelledError:
            if task not in watchdog.expired or task.uncancel() > cancelling:
                raise
            log.error("agi.session.deadline", call_timeout=self.config.call_timeout)
            return "deadline"
        except Exception:
            log.exception("agi.handler.error")
            return "failed"
        finally:
            watchdog.calls.pop(task, None)
            watchdog.expired.discard(task)
        return "completed"

    def _count(self, outcome: str) -> None:
        counters = self._counters
        if outcome == "completed":
            counters.completed += 1
        elif outcome == "hangup":
            counters.hung_up += 1
        elif outcome == "cancelled":
            counters.cancelled += 1
        else:
            counters.failed += 1
            if outcome == "deadline":
                counters.timed_out += 1


def _ensure_fd_limit(needed: int) -> None:
    """Raise the soft open-files limit to ``needed`` if it is lower (never above the hard
    limit, never down): without enough descriptors, accept() fails and calls wait."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning("agi.server.fd_limit_low", open_files=target, needed=needed)


def _is_async_callable(handler: object) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _ignore_repeat() -> None:
    """A signal repeated after the first started the drain: nothing to do."""


async def serve_until_signal(
    server: FastAgiServer,
    *,
    drain_timeout: float = 30.0,
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    on_signal: Callable[[], None] | None = None,
    ignore_repeats: bool = False,
    hold_sigterm: bool = False,
) -> None:
    """Start ``server`` (if needed), run until SIGTERM or SIGINT, then drain it; ``on_signal``
    runs first (``serve`` marks itself not ready there, before the drain begins).

    ``hold_sigterm`` (``serve``, which ends the process after): once signalled, a repeated SIGTERM
    is ignored while the event loop runs (the drain, then the contact records' last flush)
    rather than ending it half-way: ``timeout``, a supervisor and systemd may each send one, and
    the drain is bounded anyway (systemd's ``TimeoutStopSec`` then sends SIGKILL). A second
    SIGINT (Ctrl-C) still ends it at once.
    ``ignore_repeats``: ignore every repeated signal, SIGINT too (a worker of ``serve
    --workers`` gets them from its supervisor and, often, from the terminal too)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    wanted = tuple(signals)
    for sig in wanted:
        loop.add_signal_handler(sig, stop.set)
    try:
        if not server.serving:
            await server.start()
        await stop.wait()
        log.info("agi.server.signalled")
        if on_signal is not None:
            on_signal()
    finally:
        for sig in wanted:
            if stop.is_set() and (ignore_repeats or (hold_sigterm and sig == signal.SIGTERM)):
                # swapped for a no-op, not removed: remove_signal_handler() restores SIG_DFL, and a
                # repeat arriving before SIG_IGN could be set ended the process mid-drain (``timeout``
                # sends SIGTERM to the process and again to its group: seen in a rolling restart)
                loop.add_signal_handler(sig, _ignore_repeat)
            else:
                loop.remove_signal_handler(sig)
    await server.drain(drain_timeout)
