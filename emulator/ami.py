"""A fake Asterisk Manager Interface over real TCP (127.0.0.1, port 0 by default).

It speaks as Asterisk 22.10.1 does in the captures: the banner
``Asterisk Call Manager/11.0.0``, ``\\r\\n`` framing, Login (success with FullyBooted
and SuccessfulAuth events; failure ``Authentication failed`` after a delay, then the
server closes), ``Permission denied`` before login, Ping/Pong with ``Timestamp``,
QueueStatus and QueueSummary lists, QueueWithdrawCaller (applied after a delay, as
Asterisk waits for the current ring attempt), PlayDTMF, Events, CoreSettings (with the
``system_name``), Logoff, and the ``Invalid/unknown command`` error. ``denied_actions`` are
answered ``Permission denied`` (as Asterisk answers a user without the action's write class),
``unanswered_actions`` not at all.

Three ways to drive it:

* the queue model (``caller_joins``, ``answer``, ``complete``, ``abandon``,
  ``time_out``, ``add_member``, ``pause_member``, ``set_member_status``, ``dtmf``,
  ``noise``, ``peak``): the model changes and the matching events go to every
  logged-in session; QueueStatus answers from the same model;
* ``replay(event_blocks(capture_text))``: a capture's events, byte for byte;
* faults: ``drop_connections()`` (abort every TCP connection), ``go_silent()`` (no
  banner, no replies, no events: a hung Asterisk) and ``resume()``, and
  ``send_split()`` (one message in two TCP writes, e.g. inside a UTF-8 character).

Example (a small peak on two queues)::

    async with FakeAmi(username="callrouter", secret="s3cret") as fake:
        fake.add_member("council-revenues", "PJSIP/agent1", "Agent One", membership="static")
        joined = fake.caller_joins("council-revenues", name="Zoë Brontë").channel
        fake.answer(joined.uniqueid, "PJSIP/agent1")
        await fake.peak(["council-revenues", "council-housing"], calls=200, seed=7)
        print(fake.port, fake.model.queues["council-revenues"].waiting)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from emulator.ami_model import NOT_INUSE, Queue, QueueModel
from emulator.ami_originate import REASON_ANSWERED, Originator, read_request
from emulator.ami_permissions import permitted
from emulator.ami_wire import (
    BANNER,
    Channel,
    Message,
    channel_event,
    format_message,
    headers_dict,
    list_complete,
    parse_message,
    with_action_id,
    with_system_name,
)

UNKNOWN_COMMAND = "Invalid/unknown command: {}. Use Action: ListCommands to show available commands."
WITHDRAW_ERROR = "Unable to request withdraw from queue: {}"


@dataclass(frozen=True, slots=True)
class Emission:
    """What one model operation sent (or would send): its bytes, and the caller's
    channel for operations that create one."""

    data: bytes
    channel: Channel | None = None


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    logged_in: bool = False
    events: bool = True
    silent: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    held: list[bytes] | None = None  # events kept back while a synchronous Originate runs
    between: list[bytes] | None = None  # output kept back while a message goes out in two parts

    def send(self, data: bytes) -> None:
        if self.between is not None:
            self.between.append(data)
        elif not self.silent and not self.writer.is_closing():
            self.writer.write(data)

    def send_event(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(data)
        else:
            self.send(data)

    def release(self) -> None:
        held, self.held = self.held or [], None
        self.send(b"".join(held))


Handler = Callable[[_Session, dict[str, str]], Awaitable[None]]


class FakeAmi:
    """The fake server. Use as ``async with FakeAmi(...) as fake`` (binds on enter).
    ``write``: the AMI user's ``write =`` classes (``emulator.ami_permissions``; None: all).
    ``system_name``: asterisk.conf's ``systemname``; every channel the model makes (callers,
    agents, Originate legs without ``ChannelId``) then has ``<system_name>-<seconds>.<seq>`` as
    its Uniqueid and Linkedid ("": unset, ``<seconds>.<seq>``)."""

    def __init__(
        self,
        username: str = "callrouter",
        secret: str = "not-a-real-secret",  # noqa: S107 (a fake server's test credential)
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth_failure_delay_s: float = 1.0,
        withdraw_delay_s: float = 0.2,
        clock: Callable[[], float] = time.time,
        system_name: str = "",
        write: frozenset[str] | None = None,
    ) -> None:
        self.username, self._secret = username, secret
        # the user's ``write =`` classes (None: every action allowed, as before): an action
        # whose class is not granted gets "Permission denied", as Asterisk answers it
        self.write = write
        self.host, self._port = host, port
        self.auth_failure_delay_s = auth_failure_delay_s
        self.withdraw_delay_s = withdraw_delay_s
        self.clock = clock
        self.model = QueueModel(system_name=system_name)  # asterisk.conf systemname (Uniqueids)
        self.connections = 0
        self.logins = 0
        self.actions: list[str] = []
        self.denied_actions: set[str] = set()  # lower-case names: "Permission denied"
        self.unanswered_actions: set[str] = set()  # lower-case names: no reply ever
        self._sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None
        self._silent = False
        self._burst: list[bytes] | None = None
        self._withdrawn: dict[str, str] = {}
        self._handlers: dict[str, Handler] = {
            "login": self._login,
            "ping": self._ping,
            "queuestatus": self._queue_status,
            "queuesummary": self._queue_summary,
            "queuewithdrawcaller": self._withdraw,
            "playdtmf": self._play_dtmf,
            "events": self._events,
            "logoff": self._logoff,
            "userevent": self._user_event,
            "originate": self._originate,
            "coresettings": self._core_settings,
        }
        self.originator = Originator(self.emit, self.model.next_uniqueid)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._serve, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        return self._port

    @property
    def port(self) -> int:
        return self._port

    async def close(self) -> None:
        """Stop listening and close every session."""
        if self._server is not None:
            self._server.close()
        await self.originator.stop()
        self.drop_connections()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeAmi:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def sessions(self) -> int:
        """Connected sessions that have logged in."""
        return sum(1 for s in self._sessions if s.logged_in)

    # --- faults ------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Abort every TCP connection at once (RST), as a crash or a cable pull."""
        dropped = 0
        for session in list(self._sessions):
            for task in session.tasks:
                task.cancel()
            transport = session.writer.transport
            if not transport.is_closing():
                transport.abort()
                dropped += 1
        return dropped

    def go_silent(self) -> None:
        """From now on send nothing at all, on every connection, old or new."""
        self._silent = True
        for session in self._sessions:
            session.silent = True

    def resume(self) -> None:
        """New connections are served normally again (hung ones stay hung)."""
        self._silent = False

    # --- sending -----------------------------------------------------------------------

    def broadcast(self, data: bytes) -> None:
        """Send event bytes to every logged-in session that has events on."""
        if self._burst is not None:
            self._burst.append(data)
            return
        for session in self._sessions:
            if session.logged_in and session.events:
                session.send_event(data)

    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Collect every event emitted inside and send them in one write per session."""
        self._burst = []
        try:
            yield
        finally:
            data, self._burst = b"".join(self._burst), None
            self.broadcast(data)

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[bytes]]:
        """Collect every event emitted inside instead of sending it (to prepare a
        flood before timing it, or to inspect what an operation sends)."""
        saved, self._burst = self._burst, []
        try:
            yield self._burst
        finally:
            self._burst = saved

    async def send_split(self, data: bytes, at: int, pause_s: float = 0.05) -> None:
        """Send ``data`` in two TCP writes split at byte ``at`` with a pause between. Nothing
        else goes out on a session between the two (a reply or event due meanwhile follows the
        second): Asterisk writes each message whole, so another never lands inside one."""
        self.broadcast(data[:at])
        sessions = [s for s in self._sessions if s.between is None]
        for session in sessions:
            session.between = []
        await self._drain()
        await asyncio.sleep(pause_s)
        kept = {}
        for session in sessions:
            kept[session], session.between = session.between or [], None
        self.broadcast(data[at:])
        for session, held in kept.items():
            if held:
                session.send(b"".join(held))
        await self._drain()
        await asyncio.sleep(pause_s)

    async def _drain(self) -> None:
        for session in list(self._sessions):
            with contextlib.suppress(ConnectionError):
                await session.writer.drain()

    def emit(self, messages: Sequence[Message], send: bool = True) -> Emission:
        """Send raw messages as events (exact header order as given; with a system name, its
        ``SystemName`` header added third, as Asterisk does)."""
        if self.model.system_name:
            messages = [with_system_name(m, self.model.system_name) for m in messages]
        data = b"".join(format_message(m) for m in messages)
        if send:
            self.broadcast(data)
        return Emission(data)

    async def replay(self, blocks: Iterable[bytes], pace_s: float = 0.0) -> int:
        """Send captured event blocks verbatim; the model follows queue events."""
        count = 0
        for block in blocks:
            self.model.absorb(headers_dict(parse_message(block)), self.clock())
            self.broadcast(block)
            count += 1
            if pace_s:
                await asyncio.sleep(pace_s)
        return count

    # --- the queue model -----------------------------------------------------------------

    def add_member(
        self,
        queue: str,
        interface: str,
        name: str,
        *,
        membership: str = "dynamic",
        send: bool = True,
    ) -> Emission:
        """A member joins ``queue`` (``membership="static"`` with ``send=False`` to
        describe queues.conf before anyone connects)."""
        return self.emit(self.model.add_member(queue, interface, name, self.clock(), membership), send)

    def remove_member(self, queue: str, interface: str, send: bool = True) -> Emission:
        return self.emit(self.model.remove_member(queue, interface), send)

    def pause_member(
        self, interface: str, paused: bool = True, reason: str = "", send: bool = True
    ) -> Emission:
        return self.emit(self.model.pause_member(interface, paused, reason, self.clock()), send)

    def set_member_status(
        self, interface: str, status: int, in_call: bool | None = None, send: bool = True
    ) -> Emission:
        """Device state ``status`` (AST_DEVICE_*: 1 free, 2 in use, 5 unavailable, 6 ringing)."""
        return self.emit(self.model.set_status(interface, status, in_call), send)

    def caller_joins(
        self,
        queue: str,
        *,
        name: str = "Jane Resident",
        number: str = "01632960123",
        send: bool = True,
    ) -> Emission:
        """A new caller enters Queue(); ``.channel.uniqueid`` identifies it later."""
        ch = self.model.new_channel("PJSIP/sipp", name, number)
        emission = self.emit(self.model.join(queue, ch, self.clock()), send)
        return Emission(emission.data, ch)

    def answer(self, uniqueid: str, interface: str, send: bool = True) -> Emission:
        """The member at ``interface`` answers the waiting caller."""
        agent = self.model.new_channel(interface, "Agent", "2101")
        caller = self.model.find_caller(uniqueid)
        if caller is not None:  # every leg of a call carries the caller's Linkedid
            agent = dataclasses.replace(agent, linkedid=caller.channel.linkedid or caller.channel.uniqueid)
        return self.emit(self.model.answer(uniqueid, interface, agent, self.clock()), send)

    def complete(self, uniqueid: str, send: bool = True) -> Emission:
        """The answered call ends (the caller hangs up)."""
        return self.emit(self.model.complete(uniqueid, self.clock()), send)

    def abandon(self, uniqueid: str, send: bool = True) -> Emission:
        """The waiting caller hangs up."""
        return self.emit(self.model.abandon(uniqueid, self.clock()), send)

    def time_out(self, uniqueid: str, send: bool = True) -> Emission:
        """The caller's Queue() timeout expires (Abandon then Leave)."""
        return self.emit(self.model.time_out(uniqueid, self.clock()), send)

    def dtmf(self, uniqueid: str, digits: str, send: bool = True) -> Emission:
        """The caller presses keys: DTMFBegin and DTMFEnd (280 ms) per digit."""
        caller = self.model.find_caller(uniqueid)
        assert caller is not None, f"unknown caller {uniqueid}"
        return self.emit([m for d in digits for m in _dtmf(caller.channel, d, begin=True)], send)

    def noise(self, uniqueid: str, count: int = 1, send: bool = True) -> Emission:
        """``count`` VarSet events on the caller's channel (the bulk of real AMI traffic)."""
        caller = self.model.find_caller(uniqueid)
        assert caller is not None, f"unknown caller {uniqueid}"
        ch = caller.channel
        msgs = [_var_set(ch, f"NOISE{i}", "x") for i in range(count)]
        return self.emit(msgs, send)

    async def peak(
        self,
        queues: Sequence[str],
        calls: int,
        *,
        seed: int = 0,
        pause_s: float = 0.0,
        keypresses: bool = True,
        noise: int = 2,
    ) -> int:
        """A busy period: ``calls`` callers join the queues; random older callers are
        answered by free members, complete, abandon or time out; members pause and
        resume. Some callers are still waiting at the end. Returns events sent."""
        rng = random.Random(seed)
        step = _PeakStep(self, list(queues), rng, keypresses, noise)
        for _ in range(calls):
            step.run()
            if pause_s:
                await asyncio.sleep(pause_s)
        return step.events

    # --- sessions and actions ------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        session = _Session(writer, silent=self._silent)
        self._sessions.add(session)
        session.send(BANNER)
        try:
            async for action in _actions(reader):
                if not session.silent:
                    await self._dispatch(session, action)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._sessions.discard(session)
            writer.close()

    async def _dispatch(self, session: _Session, action: dict[str, str]) -> None:
        name = action.get("action", "")
        self.actions.append(name)
        if not name:
            session.send(_reply(action, "Error", ("Message", "Missing action in request")))
            return
        if not session.logged_in and name.lower() != "login":
            session.send(_reply(action, "Error", ("Message", "Permission denied")))
            return
        if name.lower() in self.unanswered_actions:
            return
        if name.lower() in self.denied_actions or (
            self.write is not None and not permitted(name, self.write)
        ):
            session.send(_reply(action, "Error", ("Message", "Permission denied")))
            return
        handler = self._handlers.get(name.lower())
        if handler is None:
            session.send(_reply(action, "Error", ("Message", UNKNOWN_COMMAND.format(name))))
            return
        await handler(session, action)

    async def _login(self, session: _Session, action: dict[str, str]) -> None:
        if (action.get("username"), action.get("secret")) != (self.username, self._secret):
            await asyncio.sleep(self.auth_failure_delay_s)
            session.send(_reply(action, "Error", ("Message", "Authentication failed")))
            session.writer.close()
            return
        self.logins += 1
        session.logged_in, session.events = True, action.get("events", "on").lower() != "off"
        session.send(_reply(action, "Success", ("Message", "Authentication accepted")))
        if session.events:
            session.send(format_message(_fully_booted()))

    async def _ping(self, session: _Session, action: dict[str, str]) -> None:
        stamp = f"{self.clock():.6f}"
        session.send(_reply(action, "Success", ("Ping", "Pong"), ("Timestamp", stamp)))

    async def _queue_status(self, session: _Session, action: dict[str, str]) -> None:
        action_id = action.get("actionid")
        items = self.model.queue_status(action_id, self.clock(), action.get("queue"))
        head = _reply(action, "Success", ("EventList", "start"), ("Message", "Queue status will follow"))
        session.send(head + b"".join(format_message(m) for m in items))

    async def _queue_summary(self, session: _Session, action: dict[str, str]) -> None:
        action_id, only = action.get("actionid"), action.get("queue")
        rows = [_summary(q, self.clock()) for q in self.model.queues.values() if only in (None, q.name)]
        items = [with_action_id(r, action_id) for r in rows]
        items.append(list_complete("QueueSummaryComplete", action_id, len(rows)))
        head = _reply(action, "Success", ("EventList", "start"), ("Message", "Queue summary will follow"))
        session.send(head + b"".join(format_message(m) for m in items))

    async def _withdraw(self, session: _Session, action: dict[str, str]) -> None:
        error = self._withdraw_error(action.get("queue", ""), action.get("caller", ""))
        if error:
            session.send(_reply(action, "Error", ("Message", WITHDRAW_ERROR.format(error))))
            return
        caller = self.model.find_by_channel(action["caller"])
        assert caller is not None
        self._withdrawn[caller.channel.uniqueid] = action.get("withdrawinfo", "")
        session.send(_reply(action, "Success", ("Message", "Withdraw requested successfully")))
        loop = asyncio.get_running_loop()
        loop.call_later(self.withdraw_delay_s, self._carry_out_withdraw, caller.channel.uniqueid)

    def _withdraw_error(self, queue: str, channel: str) -> str:
        if queue not in self.model.queues:
            return "No such queue"
        caller = self.model.find_by_channel(channel)
        if caller is None or caller.queue != queue or caller.agent is not None:
            return "No such caller"
        return "Already requested" if caller.channel.uniqueid in self._withdrawn else ""

    def _carry_out_withdraw(self, uniqueid: str) -> None:
        with contextlib.suppress(KeyError):
            self.time_out(uniqueid)

    async def _play_dtmf(self, session: _Session, action: dict[str, str]) -> None:
        caller = self.model.find_by_channel(action.get("channel", ""))
        if caller is None:
            session.send(_reply(action, "Error", ("Message", "Channel not found")))
            return
        session.send(_reply(action, "Success", ("Message", "DTMF successfully queued")))
        begin = action.get("receive", "").lower() not in ("true", "yes", "1")
        self.emit(_dtmf(caller.channel, action.get("digit", ""), begin=begin))

    async def _events(self, session: _Session, action: dict[str, str]) -> None:
        session.events = action.get("eventmask", "on").lower() != "off"
        session.send(_reply(action, "Success", ("Events", "On" if session.events else "Off")))

    async def _user_event(self, session: _Session, action: dict[str, str]) -> None:
        """``UserEvent``: ``Event Sent``, then an event to every listener with no channel fields:
        ``UserEvent`` first, then the action's other headers in order, ActionID included
        (manager.c ``action_userevent``; ``ami_queue_call_disposition.txt``)."""
        if not action.get("userevent"):
            session.send(_reply(action, "Error", ("Message", "Missing UserEvent")))
            return
        session.send(_reply(action, "Success", ("Message", "Event Sent")))
        raw = getattr(action, "raw", list(action.items()))
        body = [(k, v) for k, v in raw if k.lower() not in ("action", "userevent")]
        head = [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", action["userevent"])]
        self.emit([[*head, *body]])

    async def _originate(self, session: _Session, action: dict[str, str]) -> None:
        """``Originate`` (:mod:`emulator.ami_originate`; the far end is
        :attr:`originator`'s script)."""
        request = read_request(getattr(action, "raw", list(action.items())))
        if not request.channel:
            session.send(_reply(action, "Error", ("Message", "Channel not specified")))
            return
        if request.is_async:
            session.send(_reply(action, "Success", ("Message", "Originate successfully queued")))
            # The call goes on if the session drops: OriginateResponse goes to every session.
            self.originator.start(request)
            return
        session.held = []  # a synchronous Originate blocks the session: no event until its reply
        try:
            reason = await self.originator.play(request)
            if reason == REASON_ANSWERED:
                session.send(_reply(action, "Success", ("Message", "Originate successfully queued")))
            else:
                session.send(_reply(action, "Error", ("Message", "Originate failed")))
        finally:
            session.release()

    async def _core_settings(self, session: _Session, action: dict[str, str]) -> None:
        """``CoreSettings``: the fields of manager.c ``action_coresettings`` in its order, the
        values of the capture's Asterisk 22.10.1 (``SystemName`` empty when unset)."""
        session.send(_reply(action, "Success", *_core_settings(self.model.system_name)))

    async def _logoff(self, session: _Session, action: dict[str, str]) -> None:
        session.send(_reply(action, "Goodbye", ("Message", "Thanks for all the fish.")))
        session.writer.close()


class _PeakStep:
    """One random step of :meth:`FakeAmi.peak` (a join plus maybe one other change)."""

    def __init__(self, fake: FakeAmi, queues: list[str], rng: random.Random, keys: bool, noise: int) -> None:
        self.fake, self.queues, self.rng = fake, queues, rng
        self.keys, self.noise_count, self.events = keys, noise, 0
        self.agents = 0

    def run(self) -> None:
        queue = self.rng.choice(self.queues)
        joined = self.fake.caller_joins(queue, name=self.rng.choice(_NAMES))
        assert joined.channel is not None
        self._count(joined)
        if self.keys:
            self._count(self.fake.dtmf(joined.channel.uniqueid, self.rng.choice("0123456789*#")))
        if self.noise_count:
            self._count(self.fake.noise(joined.channel.uniqueid, self.noise_count))
        self._another_change(queue)

    def _count(self, emission: Emission) -> None:
        self.events += emission.data.count(b"\r\n\r\n")

    def _another_change(self, queue: str) -> None:
        q = self.fake.model.queues[queue]
        roll = self.rng.random()
        if roll < 0.1 or not q.members:
            self.agents += 1
            self._count(self.fake.add_member(queue, f"PJSIP/agent{self.agents}", f"Agent {self.agents}"))
        elif roll < 0.2:
            member = self.rng.choice(list(q.members.values()))
            self._count(self.fake.pause_member(member.interface, not member.paused, "break"))
        elif roll < 0.35 and self.fake.model.connected:
            self._count(self.fake.complete(self.rng.choice(list(self.fake.model.connected))))
        elif roll < 0.45 and len(q.waiting) > 1:
            self._count(self.fake.abandon(q.waiting[0].channel.uniqueid))
        elif roll < 0.5 and len(q.waiting) > 1:
            self._count(self.fake.time_out(q.waiting[0].channel.uniqueid))
        else:
            self._answer_if_free(q.name)

    def _answer_if_free(self, queue: str) -> None:
        q = self.fake.model.queues[queue]
        free = [m for m in q.members.values() if m.status == NOT_INUSE and not m.paused]
        if free and q.waiting:
            uid = q.waiting[0].channel.uniqueid
            self._count(self.fake.answer(uid, self.rng.choice(free).interface))


_NAMES = ("Jane Resident", "Zoë Brontë", "Siân Llŷr", "Seán Ó Briain", "Renée Müller")


class _Action(dict[str, str]):
    """An action's headers, names lower-cased (Asterisk matches them case-insensitively);
    ``raw``: as the client sent them, in order (UserEvent echoes them)."""

    raw: Message


async def _actions(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, str]]:
    """Client actions; header names lower-cased (Asterisk matches them case-insensitively)."""
    while True:
        data = await reader.readuntil(b"\r\n\r\n")
        message = parse_message(data)
        action = _Action((k.lower(), v) for k, v in message)
        action.raw = message
        yield action


def _reply(action: dict[str, str], response: str, *extra: tuple[str, str]) -> bytes:
    """A response: ``Response``, ``ActionID`` if the action had one, then ``extra``."""
    head = [("Response", response)]
    if "actionid" in action:
        head.append(("ActionID", action["actionid"]))
    return format_message([*head, *extra])


def _fully_booted() -> Message:
    return [
        ("Event", "FullyBooted"),
        ("Privilege", "system,all"),
        ("Uptime", "498"),
        ("LastReload", "498"),
        ("Status", "Fully Booted"),
    ]


AMI_VERSION = "11.0.0"
ASTERISK_VERSION = "22.10.1"


def _core_settings(system_name: str) -> Message:
    return [
        ("AMIversion", AMI_VERSION),
        ("AsteriskVersion", ASTERISK_VERSION),
        ("SystemName", system_name),
        ("CoreMaxCalls", "0"),
        ("CoreMaxLoadAvg", "0.000000"),
        ("CoreRunUser", ""),
        ("CoreRunGroup", ""),
        ("CoreMaxFilehandles", "0"),
        ("CoreRealTimeEnabled", "No"),
        ("CoreCDRenabled", "Yes"),
        ("CoreHTTPenabled", "No"),
        ("SoundsSearchCustomDir", "No"),
    ]


def _var_set(ch: Channel, variable: str, value: str) -> Message:
    return channel_event("VarSet", "dialplan,all", ch, ("Variable", variable), ("Value", value))


def _dtmf(ch: Channel, digit: str, *, begin: bool) -> list[Message]:
    out = []
    if begin:
        out.append(channel_event("DTMFBegin", "dtmf,all", ch, ("Digit", digit), ("Direction", "Received")))
    end = [("Digit", digit), ("DurationMs", "280"), ("Direction", "Received")]
    out.append(channel_event("DTMFEnd", "dtmf,all", ch, *end))
    return out


def _summary(q: Queue, now: float) -> Message:
    logged = [m for m in q.members.values() if m.status not in (4, 5)]
    free = [m for m in logged if m.status in (0, 1) and not m.paused]
    longest = max((int(now - c.joined_at) for c in q.waiting), default=0)
    return [
        ("Event", "QueueSummary"),
        ("Queue", q.name),
        ("LoggedIn", str(len(logged))),
        ("Available", str(len(free))),
        ("Callers", str(len(q.waiting))),
        ("HoldTime", "0"),
        ("TalkTime", "0"),
        ("LongestHoldTime", str(longest)),
    ]
