"""A thin typed adapter over panoramisk 1.4's AMI ``Manager``, with its defects fixed.

What we change in panoramisk 1.4 (the last release) and why:

* **UTF-8 split across TCP reads.** ``AMIProtocol.data_received`` decodes each chunk
  with ``errors='ignore'``, so a multi-byte character cut by a read boundary vanishes
  (``Zoë`` arrives as ``Zo``). :class:`Utf8AmiProtocol` decodes with an incremental
  UTF-8 decoder that carries the partial character into the next read.
* **Reconnects.** panoramisk retries every ``reconnect_timeout`` seconds for ever; we
  switch that off (:class:`_Manager` reports the loss instead) and the consumer
  reconnects with capped exponential back-off.
* **Keepalive.** panoramisk's pinger sends ``Ping`` and never looks at the reply; we
  switch it off and the consumer waits for the ``Pong`` with a deadline.
* **Reply heuristics.** panoramisk guesses whether a reply is a list from its text:
  a ``Message`` ending in ``successfully queued`` (PlayDTMF, synchronous Originate)
  reads ``action['async']`` and raises ``KeyError('async')`` inside the protocol (the
  future never resolves); ``Added interface to queue`` (QueueAdd) waits for a second
  message that never comes; an async Originate resolves to a list (Response plus
  ``OriginateResponse``). :meth:`AmiClient.send` always passes ``as_list`` explicitly,
  which bypasses the guess: single replies resolve on the Response, lists on
  ``...Complete``; a late ``OriginateResponse`` then arrives as an ordinary event.
* **Lost actions.** panoramisk re-sends unanswered actions after a reconnect; a
  QueueWithdrawCaller re-sent minutes later would be wrong, so every action we send is
  "forgettable" and a caller gets ConnectionError/TimeoutError instead.
* **Coroutine callbacks** are scheduled with ``ensure_future`` and their exceptions
  lost: register plain functions only (see ``routing.ami.consumer``).
* **The secret** is sent in the Login action; panoramisk may log actions, so its
  logger gets a filter that masks the secret.

Build :class:`AmiClient` inside a running event loop: panoramisk's Futures fall back
to ``asyncio.get_event_loop()`` otherwise (deprecated on 3.11).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import Callable, Mapping
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from routing.ami.settings import AmiSettings

EVENT_SEPARATOR = "\r\n\r\n"
BANNER_PREFIX = "Asterisk Call Manager/"
RECONCILE_ACTION_PREFIX = "callrouter-queuestatus-"
"""ActionIDs of our QueueStatus requests: their list items are also routed into the
event stream so the reconcile picture keeps its place among live events."""

# Not sent again after a reconnect: an Originate sent twice would call someone twice.
FORGETTABLE = (
    "ping", "login", "logoff", "queuestatus", "queuewithdrawcaller", "playdtmf", "originate", "coresettings",
)  # fmt: skip

EventCallback = Callable[[Any, Any], None]
"""``callback(manager, message)`` as panoramisk calls it (message: a Mapping)."""


class AmiLoginFailed(ConnectionError):
    """Asterisk refused the Login (``Message: Authentication failed``)."""


def plain_headers(message: Mapping[str, str]) -> dict[str, str]:
    """A panoramisk Message as a plain dict in wire order (header case kept).

    A repeated header (panoramisk keeps a list) gives its first value, the one Asterisk
    itself reads (``astman_get_header``): the values are text, as the type says. A ``UserEvent`` raised on a
    channel repeats ``Linkedid`` (``ami_queue_call_disposition.txt``)."""
    plain = getattr(message, "plain", None)  # set by parse_event; Message.__getattr__ gives ""
    if isinstance(plain, dict):
        return plain
    store = getattr(message, "_store", None)
    if store is not None:  # CaseInsensitiveDict: {lower: (Original, value)}
        return {k: _first(v) for k, v in store.values() if k != "content"}
    return {k: _first(v) for k, v in message.items()}


def _first(value: str | list[str]) -> str:
    return value[0] if isinstance(value, list) else value


_READ_BY_PANORAMISK = ("event", "response", "actionid", "commandid", "message", "subevent", "eventlist")
"""Headers panoramisk calls string methods on or uses as dict keys while it routes a message."""


def _single_valued(message: Message | None) -> Message | None:
    """Keep only the first value of a repeated header that panoramisk reads (a list there
    raised AttributeError or TypeError inside ``data_received``, and asyncio dropped the
    connection with the rest of the segment). Other repeated headers stay lists."""
    if message is not None:
        for key in _READ_BY_PANORAMISK:
            entry = message._store.get(key)
            if entry is not None and isinstance(entry[1], list):
                message._store[key] = (entry[0], entry[1][0])
    return message


def parse_event(raw: str) -> Message | None:
    """One message's text as a panoramisk Message, the plain headers attached.

    Events (the bulk of the stream) are parsed here directly, three times faster than
    ``Message.from_line``; anything panoramisk treats specially (responses with a
    body, repeated headers, AGI ``Result`` values) goes through ``from_line``."""
    if not raw.startswith("Event: "):
        return _single_valued(Message.from_line(raw))
    headers: dict[str, str] = {}
    for line in raw.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            if key in headers or key.lower() == "result":
                return _single_valued(Message.from_line(raw))
            headers[key] = value
    message = Message.__new__(Message)
    message._store = {k.lower(): (k, v) for k, v in headers.items()}
    message._store["content"] = ("content", "")  # as Message.__init__ stores it
    message.manager = None
    message.plain = headers
    return message


class SecretFilter(logging.Filter):
    """Masks the AMI secret in any record of the logger it is attached to."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret and self._secret in record.getMessage():
            record.msg, record.args = record.getMessage().replace(self._secret, "***"), None
        return True


class Utf8AmiProtocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with incremental UTF-8 decoding, reconcile routing and a cap on
    the size of one message.

    A message longer than :attr:`max_message_chars` (or a banner line that long) closes the
    connection with an error in the log, instead of the text held for it growing without
    end: the consumer reconnects, and every connect reconciles, so nothing is lost. Nothing
    is read after the connection closes (an oversized message, a ``Shutdown`` event)."""

    max_message_chars = 1 << 20
    """Asterisk's messages are a few hundred characters; a megabyte is far beyond any."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # the unfinished message (or banner line), in pieces
        self._pending_chars = 0
        self._tail = ""  # its last three characters: the start of a separator, maybe

    def data_received(self, data: bytes) -> None:
        new = self._decoder.decode(data)
        end = EVENT_SEPARATOR if self.version is not None else "\r\n"
        # Only the new text (with the three characters held before it) can end a message:
        # held text is not scanned or copied again, so a message trickling in through many
        # small reads costs linear time (re-splitting it all on each read was quadratic).
        if end not in self._tail + new:
            self._hold(new)
            return
        text = "".join(self._pending) + new
        self._pending, self._pending_chars, self._tail = [], 0, ""
        if self.version is None:
            text = self._read_banner(text)
        *messages, pending = text.split(EVENT_SEPARATOR)
        for raw in messages:
            if len(raw) > self.max_message_chars:
                self._oversized(len(raw))
                return
            message = parse_event(raw.strip())
            if message is not None:
                self.handle_message(message)
            if self.closed:
                return
        self._hold(pending)

    def _hold(self, text: str) -> None:
        """Keep ``text`` as part of the next message; up to three characters of it may be the
        start of its separator (``\\r\\n\\r``), so only more than cap + 3 is over the cap."""
        self._pending_chars += len(text)
        if self._pending_chars > self.max_message_chars + len(EVENT_SEPARATOR) - 1:
            self._oversized(self._pending_chars)
        elif text:
            self._pending.append(text)
            self._tail = (self._tail + text)[-(len(EVENT_SEPARATOR) - 1) :]

    def _oversized(self, size: int) -> None:
        self.log.error(
            "ami.message_oversized chars=%d limit=%d: closing the connection (reconnect reconciles)",
            size,
            self.max_message_chars,
        )
        self._pending, self._pending_chars, self._tail = [], 0, ""
        self.connection_lost(None)

    def _read_banner(self, text: str) -> str:
        if not text.startswith(BANNER_PREFIX):
            self.version = ""
            return text
        line, _, rest = text.partition("\r\n")
        self.version = line.partition("/")[2].strip()
        return rest

    def handle_message(self, message: Message) -> None:
        super().handle_message(message)
        action_id = message.get("ActionID") or ""
        if "Event" in message and action_id.startswith(RECONCILE_ACTION_PREFIX):
            self.factory.dispatch(message)


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk Manager without its own reconnect loop and pinger."""

    def __init__(self, on_lost: Callable[[], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def ping(self) -> None:
        """Disabled: the consumer's keepalive waits for each Pong."""

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # AmiClient.connect() reports the failure
        super().connection_made(f)

    def connection_lost(self, exc: object) -> None:
        self._connected = False
        if self.pinger is not None:
            self.pinger.cancel()
        self._on_lost()


class AmiClient:
    """One AMI connection at a time, with login, typed actions and a "lost" signal."""

    def __init__(self, settings: AmiSettings, log: logging.Logger | None = None) -> None:
        self.settings = settings
        self.log = log or logging.getLogger("routing.ami")
        self.log.addFilter(SecretFilter(settings.secret))
        loop = asyncio.get_running_loop()
        self._lost: asyncio.Future[None] = loop.create_future()
        self._manager = _Manager(
            self._mark_lost,
            host=settings.host,
            port=settings.port,
            username=settings.username,
            secret=settings.secret,
            loop=loop,
            log=self.log,
            protocol_factory=Utf8AmiProtocol,
            forgetable_actions=FORGETTABLE,
            ping_delay=3600,
        )

    def on_event(self, callback: EventCallback) -> None:
        """Register ``callback(manager, message)`` for every event (``'*'``)."""
        self._manager.register_event("*", callback)

    @property
    def connected(self) -> bool:
        return bool(self._manager.authenticated) and not self._lost.done()

    @property
    def lost(self) -> asyncio.Future[None]:
        """Resolves when the current connection is lost."""
        return self._lost

    def _mark_lost(self) -> None:
        if not self._lost.done():
            self._lost.set_result(None)

    async def connect(self) -> None:
        """Open TCP and log in; raises OSError, TimeoutError or AmiLoginFailed."""
        self._lost = asyncio.get_running_loop().create_future()
        self._manager.authenticated = False
        task = self._manager.connect()
        async with asyncio.timeout(self.settings.connect_timeout_s):
            await task
        reply = await self._await(self._manager.authenticated_future, self.settings.login_timeout_s)
        if reply.get("Response") != "Success":
            self.close()
            raise AmiLoginFailed(reply.get("Message", "login refused"))

    async def send(
        self, action: Mapping[str, str], *, deadline_s: float, as_list: bool = False
    ) -> list[dict[str, str]]:
        """Send an action; its reply as a list of messages (one unless ``as_list``).

        Raises TimeoutError after ``deadline_s`` and ConnectionError if the connection
        is or gets lost first."""
        if self._lost.done() or self._manager.protocol is None:
            raise ConnectionError("AMI not connected")
        future = self._manager.send_action(dict(action), as_list=as_list)
        reply = await self._await(future, deadline_s)
        return reply if isinstance(reply, list) else [reply]

    async def _await(self, future: asyncio.Future[Any], deadline_s: float) -> Any:
        waiting = {future, self._lost}
        done, _ = await asyncio.wait(waiting, timeout=deadline_s, return_when="FIRST_COMPLETED")
        if future in done:
            result = future.result()
            if isinstance(result, list):
                return [plain_headers(m) for m in result]
            return plain_headers(result)
        if self._lost in done:
            raise ConnectionError("AMI connection lost")
        raise TimeoutError(f"no AMI reply within {deadline_s} s")

    def pause_reading(self, paused: bool) -> None:
        """Stop (or restart) reading from the socket: TCP flow control for bursts."""
        transport = getattr(self._manager.protocol, "transport", None)
        if transport is not None and not transport.is_closing():
            (transport.pause_reading if paused else transport.resume_reading)()

    def close(self) -> None:
        """Close the connection (no reconnect)."""
        self._manager.close()
        self._mark_lost()
