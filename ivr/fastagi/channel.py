"""A typed async API over one FastAGI connection.

Hangup handling follows what Asterisk 22 does (captures ``agi_caller_hangup_*.txt``):

* A caller hangup during GET DATA / STREAM FILE / WAIT FOR DIGIT is answered
  ``200 result=-1``; about 40 ms later Asterisk writes the unsolicited ``HANGUP`` line (never
  with ``AGISIGHUP=no``; twice, then closes the socket, with ``AGIEXITONHANGUP=yes``). Asterisk
  switches the connection to "dead" mode *before* it reads the next command, so a ``HANGUP``
  line always comes before the next reply, never inside one.
* In dead mode ``NOOP``, ``GET/SET VARIABLE``, ``GET FULL VARIABLE``, ``VERBOSE``,
  ``DATABASE`` and ``EXEC`` still work; ``ANSWER``, ``STREAM FILE``, ``GET DATA``,
  ``WAIT FOR DIGIT``, ``CHANNEL STATUS``, ``HANGUP``... get
  ``511 Command Not Permitted on a dead channel or intercept routine``.
* ``200 result=-1`` is ambiguous: STREAM FILE of a missing prompt answers
  ``200 result=-1 endpos=0`` and GET DATA of a missing prompt ``200 result=-1`` on a live
  channel. The channel asks ``CHANNEL STATUS`` to tell the two apart: a live channel answers
  ``200 result=6``, a dead one ``511`` (or the socket closes).

The channel raises :class:`AgiHangup` the first time it learns the call is gone (inline
``HANGUP``, ``511``, ``result=-1`` confirmed by the probe, EOF or reset). After that, commands
Asterisk still serves on a dead channel (``set_variable``, ``get_variable``, ``verbose``,
``exec``) work normally, so clean-up code can still record an outcome; media commands raise
:class:`AgiHangup` at once without a round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import structlog

from ivr.fastagi.protocol import (
    AgiProtocolError,
    AgiReply,
    AgiRequest,
    encode_command,
    is_hangup_line,
    parse_reply,
    quote,
    reply_complete,
    sanitize_text,
    token,
)
from ivr.step_guard import StepGuard

log = structlog.get_logger("ivr.fastagi")

DEFAULT_REPLY_TIMEOUT = 60.0
SESSION_END_EVENT = "agi.session.end"
SESSION_FIELDS = frozenset({"outcome", "duration_ms", "commands", "missing_prompts"})
"""What the server adds to every session's one event (:meth:`AgiChannel.summarize`)."""
_RESERVED_FIELDS = SESSION_FIELDS | {"event"}  # "event": the event's name in the JSON line
_DTMF = frozenset("0123456789*#ABCD")


class AgiError(Exception):
    """Base class of everything the channel raises."""


class AgiHangup(AgiError):
    """The call is gone: inline ``HANGUP``, ``511``, ``result=-1`` on a dead channel, EOF or
    connection reset. ``reply`` is the reply read with it, if any (a command that Asterisk
    completed just before reporting the hangup)."""

    def __init__(self, reason: str, reply: AgiReply | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


class AgiCommandError(AgiError):
    """Asterisk refused the command: ``510 Invalid or unknown command`` or a ``520`` usage
    block, or reported a failure (``result=-1``) on a channel that is still up."""

    def __init__(self, command: str, reply: AgiReply) -> None:
        super().__init__(f"{command!r} -> {reply.raw.splitlines()[0]!r}")
        self.command = command
        self.reply = reply


class AgiTimeout(AgiError):
    """No reply within the per-command timeout. The connection is unusable afterwards (a
    late reply would be taken for the next command's), so every later command raises this."""


class LineTransport(Protocol):
    """What a channel needs from its connection: write bytes, read ``\n``-terminated lines.

    ``read_line`` returns a line without its ``\n`` and raises like
    ``StreamReader.readuntil``: :class:`asyncio.IncompleteReadError` at EOF,
    :class:`ConnectionError` after a reset, :class:`asyncio.LimitOverrunError` for a line over
    the size cap, or the exception given to ``fail_read`` (reply timeout)."""

    def write(self, data: bytes) -> None: ...

    def must_drain(self) -> bool: ...

    async def drain(self) -> None: ...

    async def read_line(self) -> str: ...

    def fail_read(self, exc: Exception) -> None: ...


class _StreamLines:
    """:class:`LineTransport` over a StreamReader/StreamWriter pair (a standalone channel)."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def must_drain(self) -> bool:
        return bool(self.writer.transport.get_write_buffer_size())

    async def drain(self) -> None:
        await self.writer.drain()

    async def read_line(self) -> str:
        raw = await self.reader.readuntil(b"\n")
        return raw[:-1].decode("utf-8", errors="replace")

    def fail_read(self, exc: Exception) -> None:
        self.reader.set_exception(exc)


class ReplyWatchdog:
    """Enforces reply timeouts of many channels (and per-call deadlines) with one periodic task.

    A timer per command (``asyncio.timeout``) costs a heap push and cancel on every round trip;
    the watchdog only stores a deadline and checks all pending replies every ``interval``
    seconds, so a timeout fires up to ``interval`` late. Call deadlines work the same way: a
    task overdue in :attr:`calls` is cancelled and remembered in :attr:`expired`."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.channels: set[AgiChannel] = set()
        self.calls: dict[asyncio.Task[None], float] = {}
        self.expired: set[asyncio.Task[None]] = set()
        self.checks: list[Callable[[float], None]] = []  # more deadlines, given the time
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    async def run(self) -> None:
        """Check every channel each interval, forever (cancel the task to stop)."""
        while True:
            await asyncio.sleep(self.interval)
            now = self.now()
            for channel in tuple(self.channels):
                channel.expire_if_overdue(now)
            if self.calls:
                self.expire_calls(now)
            for check in self.checks:
                check(now)

    def expire_calls(self, now: float) -> None:
        overdue = [task for task, deadline in self.calls.items() if now >= deadline]
        for task in overdue:
            del self.calls[task]
            self.expired.add(task)
            task.cancel()


class AgiChannel:
    """Typed commands over one FastAGI connection (one call).

    ``reply_timeout`` bounds every command round trip in seconds; commands that wait by design
    (GET DATA, WAIT FOR DIGIT) get their own timeout added to it. Prompts block for their whole
    length, so the default is generous.

    ``guard``: before each blocking command (STREAM FILE, GET DATA, WAIT FOR DIGIT, EXEC) the
    channel re-arms Asterisk's absolute timeout with ``SET AUTOHANGUP <step bound + margin>``, so
    that a controller that hangs cannot keep the caller (see :mod:`ivr.step_guard`)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: AgiRequest | None = None,
        *,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
        watchdog: ReplyWatchdog | None = None,
        guard: StepGuard | None = None,
    ) -> None:
        self._setup(_StreamLines(reader, writer), request, reply_timeout, watchdog, guard)

    @classmethod
    def over(
        cls,
        lines: LineTransport,
        request: AgiRequest | None = None,
        *,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
        watchdog: ReplyWatchdog | None = None,
        guard: StepGuard | None = None,
    ) -> AgiChannel:
        """A channel over any :class:`LineTransport` (the server's protocol-based connection)."""
        channel = cls.__new__(cls)
        channel._setup(lines, request, reply_timeout, watchdog, guard)
        return channel

    def _setup(
        self,
        lines: LineTransport,
        request: AgiRequest | None,
        reply_timeout: float,
        watchdog: ReplyWatchdog | None,
        guard: StepGuard | None = None,
    ) -> None:
        self.request = request
        self.guard = guard
        self.reply_timeout = reply_timeout
        self.hung_up = False
        self.missing_prompts: list[str] = []
        self.status_failure = False
        self.commands_sent = 0
        self.summary_event = SESSION_END_EVENT
        self.summary: dict[str, object] = {}
        self._io = lines
        self._lost = False
        self._broken = False
        self._deadline: float | None = None
        self._watchdog = watchdog

    def summarize(self, event: str, /, **fields: object) -> None:
        """Name the session's one log event and add ``fields`` to it. The server logs it once,
        when the session ends, with the session's own fields (``outcome``, ``duration_ms``,
        ``commands``, ``missing_prompts``): one event per call rather than one per step (each
        JSON event cost ~20-30 us of a ~200 us route session, ``docs/performance.md``). Without
        a call it is ``agi.session.end``. A field named like the session's own raises ValueError
        here, in the handler, rather than losing the event when the session ends."""
        if not _RESERVED_FIELDS.isdisjoint(fields):
            taken = sorted(_RESERVED_FIELDS.intersection(fields))
            raise ValueError(f"session fields are the server's: {taken}")
        self.summary_event = event
        self.summary.update(fields)

    @property
    def connected(self) -> bool:
        """False once the socket is closed, reset, or out of step after a reply timeout."""
        return not (self._lost or self._broken)

    # -- raw command ---------------------------------------------------------------------------

    async def send_command(self, *words: str, extra_timeout: float | None = 0.0) -> AgiReply:
        """Send one command (words already quoted) and return its reply.

        Raises :class:`AgiHangup` (511, EOF, reset, or a first inline ``HANGUP`` line, after
        reading the command's own reply so later replies stay in step),
        :class:`AgiCommandError` for 510/520 and :class:`AgiTimeout`. ``extra_timeout=None``
        waits without limit."""
        if self._broken:
            raise AgiTimeout("connection out of step after an earlier reply timeout")
        if self._lost:
            raise AgiHangup("connection closed")
        line = encode_command(*words)
        timeout = None if extra_timeout is None else self.reply_timeout + extra_timeout
        reply, saw_hangup = await self._exchange(line, timeout)
        return self._check(words, reply, saw_hangup)

    async def _exchange(self, line: bytes, limit: float | None) -> tuple[AgiReply, bool]:
        self.commands_sent += 1
        try:
            if self._watchdog is None:
                async with asyncio.timeout(limit):
                    return await self._write_and_read(line)
            self._deadline = None if limit is None else self._watchdog.now() + limit
            try:
                return await self._write_and_read(line)
            finally:
                self._deadline = None
        except TimeoutError:
            self._broken = True
            raise AgiTimeout(f"no reply to {line[:40]!r} within {limit} s") from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self._lost = True
            raise AgiHangup(f"connection lost: {type(exc).__name__}") from None

    async def _write_and_read(self, line: bytes) -> tuple[AgiReply, bool]:
        io = self._io
        io.write(line)
        if io.must_drain():
            await io.drain()
        return await self._read_reply()

    def expire_if_overdue(self, now: float) -> None:
        """Called by :class:`ReplyWatchdog`: fail the pending read if its reply is late."""
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._io.fail_read(TimeoutError("reply timeout"))

    async def _read_reply(self) -> tuple[AgiReply, bool]:
        lines: list[str] = []
        saw_hangup = False
        while not reply_complete(lines):
            line = await self._read_line()
            if not lines and is_hangup_line(line):
                saw_hangup = True
                continue
            lines.append(line)
        return parse_reply(lines), saw_hangup

    async def _read_line(self) -> str:
        try:
            return await self._io.read_line()
        except asyncio.LimitOverrunError as exc:
            self._broken = True
            raise AgiProtocolError("reply line over the size limit") from exc

    def _check(self, words: tuple[str, ...], reply: AgiReply, saw_hangup: bool) -> AgiReply:
        if reply.code == 511:
            self.hung_up = True
            raise AgiHangup("511 dead channel", reply)
        if saw_hangup and not self.hung_up:
            self.hung_up = True
            raise AgiHangup("HANGUP", reply)
        if reply.code in (510, 520):
            raise AgiCommandError(" ".join(words), reply)
        if reply.code != 200:
            raise AgiProtocolError(f"unexpected reply code {reply.code}")
        return reply

    # -- hangup disambiguation -----------------------------------------------------------------

    def _require_live(self) -> None:
        if self.hung_up:
            raise AgiHangup("channel already hung up")

    async def _confirm_alive(self) -> None:
        """After ``result=-1``: raise AgiHangup if the channel is dead, return if it is up."""
        await self.channel_status()

    def _note_missing(self, prompt: str, command: str) -> None:
        self.missing_prompts.append(prompt)
        if command == "STREAM FILE":
            self.status_failure = True
        log.warning("agi.prompt.missing", prompt=prompt, command=command)

    async def _arm(self, bound_s: float) -> None:
        """``SET AUTOHANGUP <bound + margin>`` (``200 result=0``) before a blocking step."""
        if self.guard is not None:
            await self.send_command("SET AUTOHANGUP", self.guard.autohangup(bound_s))

    # -- typed commands ------------------------------------------------------------------------

    async def channel_status(self) -> int:
        """``CHANNEL STATUS``: 4 ringing, 6 up (``200 result=6``); 511 on a dead channel."""
        reply = await self.send_command("CHANNEL STATUS")
        return reply.result_int or 0

    async def answer(self) -> None:
        """``ANSWER``: ``200 result=0`` (takes ~0.5 s on a ringing channel)."""
        self._require_live()
        reply = await self.send_command("ANSWER")
        if reply.result == "-1":
            await self._confirm_alive()
            raise AgiCommandError("ANSWER", reply)

    async def stream_file(self, prompt: str, escape_digits: str = "") -> str | None:
        """Play ``prompt``; return the escape digit pressed, or None.

        ``200 result=49 endpos=17280`` means ``1`` was pressed; ``200 result=0 endpos=11360`` no
        digit. A missing prompt (``200 result=-1 endpos=0``) returns None, is recorded in
        :attr:`missing_prompts` and makes Asterisk end the AGI with ``AGISTATUS=FAILURE``."""
        self._require_live()
        _check_digits(escape_digits)
        words = ("STREAM FILE", token(prompt), quote(escape_digits))
        if self.guard is not None:
            await self._arm(self.guard.stream_file())
        reply = await self.send_command(*words)
        code = reply.result_int
        if code is not None and code < 0:
            await self._confirm_alive()
            self._note_missing(prompt, "STREAM FILE")
            return None
        return _digit(code, reply)

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``prompt`` and collect up to ``max_digits``; return ``(digits, timed_out)``.

        ``200 result=234`` -> ``("234", False)``; ``200 result=5 (timeout)`` -> ``("5", True)``;
        ``200 result= (timeout)`` -> ``("", True)``. ``#`` ends input and is not returned. A
        missing prompt (``200 result=-1`` on a live channel) returns ``("", True)``."""
        self._require_live()
        wait = timeout_ms * (max_digits + 1) / 1000
        words = ("GET DATA", token(prompt), str(int(timeout_ms)), str(int(max_digits)))
        if self.guard is not None:
            await self._arm(self.guard.get_data(int(timeout_ms), int(max_digits)))
        reply = await self.send_command(*words, extra_timeout=wait)
        if reply.result == "-1":
            await self._confirm_alive()
            self._note_missing(prompt, "GET DATA")
            return "", True
        return reply.result or "", reply.timed_out

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """``WAIT FOR DIGIT``: ``200 result=48`` -> ``"0"``; ``200 result=0`` -> None.

        A negative timeout waits forever (and so does this call)."""
        self._require_live()
        extra = None if timeout_ms < 0 else timeout_ms / 1000
        if self.guard is not None:
            await self._arm(self.guard.wait_for_digit(int(timeout_ms)))
        reply = await self.send_command("WAIT FOR DIGIT", str(int(timeout_ms)), extra_timeout=extra)
        code = reply.result_int or 0
        if code < 0:
            await self._confirm_alive()
            raise AgiCommandError("WAIT FOR DIGIT", reply)
        return _digit(code, reply)

    async def say_number(self, number: int) -> None:
        """``SAY NUMBER 42 ""`` -> ``200 result=0``, blocking while it speaks (1.7 s for 42,
        ``agi_suite_pjsip.txt``), in the channel's language."""
        await self._say("SAY NUMBER", str(int(number)))

    async def say_digits(self, digits: str) -> None:
        """``SAY DIGITS 1234 ""`` -> ``200 result=0``: one digit after another (3.3 s for four)."""
        if not digits.isdigit():
            raise ValueError("SAY DIGITS takes digits only")
        await self._say("SAY DIGITS", digits)

    async def _say(self, command: str, value: str) -> None:
        self._require_live()
        if self.guard is not None:
            await self._arm(self.guard.stream_file())
        reply = await self.send_command(command, value, quote(""))
        if (reply.result_int or 0) < 0:
            await self._confirm_alive()

    async def set_variable(self, name: str, value: str) -> None:
        """``SET VARIABLE name "value"`` -> ``200 result=1``. Works on a dead channel."""
        await self.send_command("SET VARIABLE", token(name), quote(value))

    async def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE``: ``200 result=1 (revenues)`` -> ``"revenues"``; ``200 result=0``
        (not set) -> None. Dialplan functions such as ``CALLERID(num)`` work too."""
        reply = await self.send_command("GET VARIABLE", token(name))
        if reply.result != "1":
            return None
        return reply.value or ""

    async def exec(self, app: str, *args: str, bound_s: float | None = None) -> int:
        """``EXEC app "arg1,arg2"``: return the application's result.

        Asterisk passes one argument string to the application, so ``args`` are joined with
        commas. ``-2`` means the application does not exist (AGISTATUS is unaffected).
        ``bound_s``: how long the application may run (default: the guard's longest prompt);
        on a hung-up channel nothing is armed (Asterisk runs EXEC at once there)."""
        words = ["EXEC", token(app)]
        if args:
            words.append(quote(",".join(args)))
        if self.guard is not None and not self.hung_up:
            await self._arm(self.guard.prompt_s if bound_s is None else bound_s)
        reply = await self.send_command(*words, extra_timeout=None)
        code = reply.result_int or 0
        if code == -1 and not self.hung_up:
            await self._confirm_alive()
        return code

    async def verbose(self, message: str, level: int = 1) -> None:
        """``VERBOSE "message" 1`` -> ``200 result=1``; control characters become spaces."""
        await self.send_command("VERBOSE", quote(sanitize_text(message)), str(int(level)))

    async def hangup(self) -> None:
        """``HANGUP`` -> ``200 result=1``; Asterisk then ends the AGI with AGISTATUS=HANGUP.

        Does nothing if the channel is already hung up (Asterisk would answer 511)."""
        if self.hung_up:
            return
        await self.send_command("HANGUP")
        self.hung_up = True


def _digit(code: int | None, reply: AgiReply) -> str | None:
    """The key a ``result`` reports by its character code (``49`` -> ``"1"``); None for 0.

    Asterisk only reports DTMF keys; any other code (``result=99999999999`` made ``chr()``
    raise OverflowError) is not FastAGI as Asterisk speaks it."""
    if not code:
        return None
    key = chr(code) if 0 < code < 0x110000 else ""
    if key not in _DTMF:
        raise AgiProtocolError(f"not the code of a DTMF key: {reply.raw[:60]!r}")
    return key


def _check_digits(digits: str) -> None:
    if not set(digits) <= _DTMF:
        raise ValueError(f"not DTMF digits: {digits!r}")
