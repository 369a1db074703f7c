"""The fake AMI server's ``Originate``, as Asterisk 22.10.1 answers it (``ami_originate.txt``,
README 2.5).

* No ``Channel``: ``Response: Error`` / ``Message: Channel not specified``.
* Synchronous (no ``Async``): the response waits for the outcome: ``Success`` /
  ``Originate successfully queued`` once the channel answered, ``Error`` / ``Originate failed``
  when it did not (after ``Timeout``, default 30 s, for a channel that rings; at once for a bad
  extension). The session gets no event until that response (its events are held, then sent).
* ``Async: true``: ``Success`` / ``Originate successfully queued`` at once, then one
  ``OriginateResponse`` event carrying the ActionID: ``Response: Success``, ``Reason: 4``, the
  real channel name (``Local/3002@probe-00000004;1``), ``Context``/``Exten`` (or
  ``Application``/``Data``), the ``;1`` leg's Uniqueid and the CallerID given; or
  ``Response: Failure`` with the dial string as given in ``Channel``, ``Uniqueid`` the
  ``ChannelId`` asked for (``<unknown>`` without one: ``callback_originate.txt``,
  ``ami_originate.txt``) and ``Reason`` 3 (rang, no answer within Timeout), 5 (busy:
  ``AST_CONTROL_BUSY``), 0 (bad extension, unknown technology such as ``Bogus/123``: no
  channel at all for the latter).
* ``ChannelId`` / ``OtherChannelId`` are the Uniqueids of the ``;1`` / ``;2`` Local legs;
  both legs carry the ``;1`` leg's as Linkedid. Without them Asterisk numbers the legs. One that
  a live channel has already: no channel, ``Failure``, ``Reason: 0``, ``Uniqueid`` that id and
  ``ERROR ... Channel Unique ID '<id>' already in use`` (``callback_originate.txt``).

What the far end does is the test's (or emulated centre's) script: :attr:`Originator.far_end`
says, for each request, whether and when it answers; :attr:`Originator.answered` runs once it
has (e.g. the ``;1`` leg's dialplan at the request's Context/Exten). Not modelled: the
``Newexten``/``VarSet``/``NewCallerid``/``LocalBridge``/``DialBegin`` noise between
``Newchannel`` and the outcome, and device states.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from emulator.ami_wire import Channel, Message, channel_event

DEFAULT_TIMEOUT_MS = 30_000  # manager.c action_originate: "Timeout" absent
REASON_FAILED, REASON_NO_ANSWER, REASON_ANSWERED, REASON_BUSY = 0, 3, 4, 5  # AST_CONTROL_* (frame.h)
UNKNOWN = "<unknown>"
_legs = itertools.count(1)


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    """An ``Originate`` action as the fake read it (header names are case-insensitive)."""

    channel: str
    action_id: str | None = None
    context: str = ""
    exten: str = ""
    priority: str = ""
    application: str = ""
    data: str = ""
    caller_id: str = ""
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    is_async: bool = False
    channel_id: str = ""
    other_channel_id: str = ""
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def caller_id_num(self) -> str:
        _, _, rest = self.caller_id.partition("<")
        return rest.rstrip(">").strip() if rest else self.caller_id.strip()

    @property
    def caller_id_name(self) -> str:
        name, bracket, _ = self.caller_id.partition("<")
        return name.strip().strip('"') if bracket else ""

    @property
    def local(self) -> tuple[str, str] | None:
        """``(exten, context)`` of a ``Local/exten@context`` channel, else ``None``."""
        tech, _, rest = self.channel.partition("/")
        if tech.lower() != "local":
            return None
        exten, _, context = rest.split("/", 1)[0].partition("@")
        return exten, context or "default"


def read_request(action: list[tuple[str, str]]) -> OriginateRequest:
    """The request in an action's headers (``Variable`` may repeat; ``a=1,b=2`` also works)."""
    one = {k.lower(): v for k, v in action}
    variables: dict[str, str] = {}
    for key, value in action:
        if key.lower() == "variable":
            for item in value.split(","):
                name, _, val = item.partition("=")
                variables[name.strip()] = val
    timeout = one.get("timeout", "")
    return OriginateRequest(
        channel=one.get("channel", ""),
        action_id=one.get("actionid"),
        context=one.get("context", ""),
        exten=one.get("exten", ""),
        priority=one.get("priority", ""),
        application=one.get("application", ""),
        data=one.get("data", ""),
        caller_id=one.get("callerid", ""),
        timeout_ms=int(timeout) if timeout.isdigit() else DEFAULT_TIMEOUT_MS,
        is_async=one.get("async", "").lower() in ("true", "yes", "1", "on"),
        channel_id=one.get("channelid", ""),
        other_channel_id=one.get("otherchannelid", ""),
        variables=variables,
    )


@dataclass(frozen=True, slots=True)
class OriginatePlay:
    """What the far end of an originated channel does: ``answer`` after ``after_s`` (past the
    request's Timeout it is a no answer), ring until Timeout (``noanswer``), ``busy`` after
    ``after_s``, or ``invalid`` (no such extension: the legs are made and hung up at once)."""

    outcome: Literal["answer", "noanswer", "busy", "invalid"] = "answer"
    after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Legs:
    """The two legs of an originated Local channel (AMI channel blocks)."""

    one: Channel
    two: Channel


FarEnd = Callable[[OriginateRequest, Legs], Awaitable[OriginatePlay]]
Answered = Callable[[OriginateRequest, Legs], Awaitable[None]]


async def answers_at_once(_request: OriginateRequest, _legs: Legs) -> OriginatePlay:
    return OriginatePlay("answer")


async def nothing_more(_request: OriginateRequest, _legs: Legs) -> None:
    return None


def make_legs(request: OriginateRequest, uniqueid: Callable[[], str]) -> Legs:
    exten, context = request.local or ("s", "default")
    name = f"{request.channel.split('/', 1)[0]}/{exten}@{context}-{next(_legs):08x}"
    one_id = request.channel_id or uniqueid()
    # ChannelId without OtherChannelId: the ;2 leg is "<ChannelId>;2", never prefixed with the
    # system name (agi_ami_systemname.txt, originates 3b and 3d, with and without systemname)
    two_id = request.other_channel_id or (f"{request.channel_id};2" if request.channel_id else uniqueid())
    common = {"caller_id_num": UNKNOWN, "caller_id_name": UNKNOWN, "context": context, "exten": exten}
    one = Channel(f"{name};1", one_id, priority="1", state="0", state_desc="Down", linkedid=one_id, **common)
    two = Channel(f"{name};2", two_id, priority="1", state="4", state_desc="Ring", linkedid=one_id, **common)
    return Legs(one, two)


def newchannels(legs: Legs) -> list[Message]:
    return [
        channel_event("Newchannel", "call,all", legs.one),
        channel_event("Newchannel", "call,all", legs.two),
    ]


def hangups(legs: Legs, cause: str, text: str) -> list[Message]:
    extra = (("Cause", cause), ("Cause-txt", text))
    return [
        channel_event("Hangup", "call,all", legs.one, *extra),
        channel_event("Hangup", "call,all", legs.two, *extra),
    ]


def one_hung_up(legs: Legs, cause: int) -> list[Message]:
    """The ``;1`` leg's dialplan ended: chan_local passes its hangup to ``;2``
    (``HangupRequest`` of ``;2`` with ``;1``'s cause: 16, 17 after a busy Dial), then ``;1``'s
    ``Hangup`` (callback_originate.txt); ``;2`` ends with whatever it is in (its queue call)."""
    text = {16: "Normal Clearing", 17: "User busy"}.get(cause, "Unknown")
    return [
        channel_event("HangupRequest", "call,all", legs.two, ("Cause", str(cause))),
        channel_event("Hangup", "call,all", legs.one, ("Cause", str(cause)), ("Cause-txt", text)),
    ]


def _target(request: OriginateRequest) -> Message:
    if request.application:
        return [("Application", request.application), ("Data", request.data)]
    return [("Context", request.context), ("Exten", request.exten)]


def response_event(request: OriginateRequest, reason: int, legs: Legs | None) -> Message:
    """``OriginateResponse`` (README 2.4: Privilege, ActionID, Response, Channel, Context/Exten
    or Application/Data, Reason, Uniqueid, CallerIDNum, CallerIDName)."""
    answered = reason == REASON_ANSWERED and legs is not None
    head: Message = [("Event", "OriginateResponse"), ("Privilege", "call,all")]
    if request.action_id is not None:
        head.append(("ActionID", request.action_id))
    return [
        *head,
        ("Response", "Success" if answered else "Failure"),
        ("Channel", legs.one.name if answered and legs is not None else request.channel),
        *_target(request),
        ("Reason", str(reason)),
        # manager.c fast_originate: the channel's Uniqueid, else the ChannelId asked for, else
        # <unknown> (callback_originate.txt: Failure, Reason 3, Uniqueid = the ChannelId)
        ("Uniqueid", legs.one.uniqueid if answered and legs is not None else request.channel_id or UNKNOWN),
        ("CallerIDNum", request.caller_id_num or UNKNOWN),
        ("CallerIDName", request.caller_id_name or UNKNOWN),
    ]


class Originator:
    """Plays one ``Originate`` after another for the fake AMI server: ``emit`` sends events to
    every listener; ``far_end`` and ``answered`` are the script."""

    def __init__(self, emit: Callable[[list[Message]], object], uniqueid: Callable[[], str]) -> None:
        self.emit = emit
        self.uniqueid = uniqueid
        self.far_end: FarEnd = answers_at_once
        self.answered: Answered = nothing_more
        self.requests: list[OriginateRequest] = []
        self.live: set[str] = set()  # Uniqueids of the legs not hung up yet
        self._answering: set[str] = set()  # ;1 legs whose answered script runs
        self.log: list[str] = []  # Asterisk's ERROR lines
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, request: OriginateRequest) -> None:
        """Play an asynchronous request in the background."""
        self._keep(asyncio.create_task(self._play_quietly(request)))

    async def _play_quietly(self, request: OriginateRequest) -> None:
        await self.play(request)

    def _keep(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        """Cancel every call still being played (the fake server is closing)."""
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def play(self, request: OriginateRequest) -> int:
        """Make the channel and wait for its outcome; returns the Reason, after sending every
        event (``OriginateResponse`` included when ``request.is_async``)."""
        self.requests.append(request)
        if request.local is None and request.channel.split("/", 1)[0].upper() != "PJSIP":
            return self._end(request, REASON_FAILED, None)  # unknown technology: no channel
        taken = [i for i in (request.channel_id, request.other_channel_id) if i in self.live]
        if taken:
            # a ChannelId a live channel has: no channel, Failure, Reason 0 (callback_originate.txt)
            self.log.append(f"ERROR channel.c: Channel Unique ID '{taken[0]}' already in use")
            return self._end(request, REASON_FAILED, None)
        legs = make_legs(request, self.uniqueid)
        ids = {legs.one.uniqueid, legs.two.uniqueid}
        self.live |= ids
        try:
            return await self._play_legs(request, legs)
        finally:
            if not self.answered_running(legs):
                self.live -= ids

    def answered_running(self, legs: Legs) -> bool:
        return legs.one.uniqueid in self._answering

    async def _play_legs(self, request: OriginateRequest, legs: Legs) -> int:
        self.emit(newchannels(legs))
        loop = asyncio.get_running_loop()
        started = loop.time()
        play = await self.far_end(request, legs)
        timeout_s = request.timeout_ms / 1000
        if play.outcome == "invalid":
            self.emit(hangups(legs, "0", "Unknown"))
            return self._end(request, REASON_FAILED, None)
        spent = loop.time() - started  # the far end's script may take time itself
        if play.outcome == "noanswer" or (play.outcome == "answer" and spent + play.after_s >= timeout_s):
            await asyncio.sleep(max(0.0, timeout_s - spent))
            # callback_originate.txt: ;1 goes, then OriginateResponse, then ;2 (both cause 19)
            one, two = hangups(legs, "19", "User alerting, no answer")
            self.emit([one])
            reason = self._end(request, REASON_NO_ANSWER, None)
            self.emit([two])
            return reason
        await asyncio.sleep(play.after_s)
        if play.outcome == "busy":
            self.emit(hangups(legs, "17", "User busy"))
            return self._end(request, REASON_BUSY, None)
        # Answered: the ;1 leg starts its dialplan while the response is on its way (in the
        # capture, the leg's first UserEvent came before OriginateResponse).
        self._answering.add(legs.one.uniqueid)
        self._keep(asyncio.create_task(self._run_answered(request, legs)))
        await asyncio.sleep(0)
        return self._end(request, REASON_ANSWERED, legs)

    async def _run_answered(self, request: OriginateRequest, legs: Legs) -> None:
        try:
            await self.answered(request, legs)
        finally:  # the legs are gone once the script of the answered call has ended
            self._answering.discard(legs.one.uniqueid)
            self.live -= {legs.one.uniqueid, legs.two.uniqueid}

    def _end(self, request: OriginateRequest, reason: int, legs: Legs | None) -> int:
        if request.is_async:
            self.emit([response_event(request, reason, legs)])
        return reason
