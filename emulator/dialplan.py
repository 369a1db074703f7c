"""A whole call through callrouter's real dialplan (``dialplans/*.conf``), emulated.

:func:`place_call` reads ``dialplans/callrouter.conf`` and ``callrouter-static.conf`` (the
``dialplans/`` folder beside the packages in a source checkout, else where the wheel installed
them: :func:`find_dialplans`) and runs the caller's channel through them with
:class:`~emulator.pbx.Pbx`, from ``callrouter-inbound,<dialled>,1``. Each ``AGI(agi://...)`` is
a real FastAGI session against the controller (:mod:`emulator.agi`); ``CR_AGI`` may be
``hagi://<name>`` (:attr:`Asterisk.agi_url`), looked up in an injected SRV table and connected
as Asterisk does (:mod:`emulator.hagi`: the next controller only when a connect fails); the same
call keeps its channel, uniqueid, variables, the caller's remaining steps and its
:class:`~emulator.line.CallerLine` (one clock, the digits in flight, the absolute timeout) from
one ``AGI()`` to the next, as on a real channel. So the dialplan's ``callrouter-agi`` bounds
each controller ``AGI()`` as on Asterisk: ``TIMEOUT(absolute)=5`` arms the line's timer, the
controller's ``SET AUTOHANGUP`` re-arms it, and when it fires ``AGIEXITONHANGUP=yes`` ends
``AGI()`` and the PBX goes on at ``T``. ``Queue()`` takes its outcome from a
:data:`QueueOutcome` function (e.g. a fake contact centre) or rings the queue's members
(``queue_members``); ``Dial()`` builds the INVITE of each outward leg
(:class:`~emulator.pbx.Invite`, in :attr:`CallRecord.dials`) from the PJSIP endpoints in
:class:`Asterisk`. Where the dialplan hands over to the process-per-call fail-static script
(``callrouter-failstatic``), the call stops, unless ``place_call`` is given the script's command
(``fallback``): then :mod:`emulator.classic` runs it on the same line as
``AGI(${CR_FALLBACK},${EXTEN})`` and the dialplan goes on. That ``AGI()`` is bounded the same
way (``callrouter-failstatic``'s own timer): when it fires the script gets SIGHUP, ``AGI()``
returns at once and ``T`` takes the static route (:attr:`CallRecord.static_at`). A script that
ignored the SIGHUP is killed once the call is over (:attr:`CallRecord.orphans` counts them; a
real Asterisk would leave it running).
"""

from __future__ import annotations

import asyncio
import functools
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

from emulator.agi import CallerScript, EmulatedCall, play_url
from emulator.centre import CallCentre
from emulator.classic import Process, reap, run_classic
from emulator.extensions import Dialplan
from emulator.hagi import Attempt, Resolver, parse_url
from emulator.line import CallClock, CallerLine
from emulator.pbx import (
    Channel,
    DialAttempt,
    FarEnd,
    Pbx,
    Pjsip,
    QueueOutcome,
    always_answered,
    answers,
    ast_false,
    ast_true,
)
from ivr import channel_vars as cv
from ivr.contract import unpack

DIALPLANS = Path(__file__).resolve().parents[1] / "dialplans"  # beside the packages: a source checkout
DIALPLAN_FILES = ("callrouter.conf", "callrouter-static.conf")
# Where a wheel puts them, under the installation's data folder ([tool.setuptools.data-files]).
INSTALLED = Path("share", "callrouter", "dialplans")
FAIL_STATIC = "callrouter-failstatic"  # the classic AGI fallback script decides
STATIC = "callrouter-static"  # the generated route of last resort
FAILSTATIC = "fail-static route"  # how a call record names the fail-static path
# The [globals] of dialplans/README.md (a test keeps them equal); CR_AGI points at the controller.
GLOBALS: Mapping[str, str] = {
    "CR_FALLBACK": "/opt/callrouter/.venv/bin/callrouter-agi-fallback",
    "CR_TRUNK": "pstn",
    "CR_PAYMENT_TRUNK": "payments",
}
# pjsip.conf of the emulated Asterisk: each endpoint's AOR contact.
CONTACTS: Mapping[str, str] = {"pstn": "sip:127.0.0.1:5090", "payments": "sip:127.0.0.1:5091"}

__all__ = [
    "FAILSTATIC",
    "Asterisk",
    "CallRecord",
    "DialplansNotFound",
    "QueueOutcome",
    "always_answered",
    "find_dialplans",
    "place_call",
    "place_calls",
]


class DialplansNotFound(FileNotFoundError):
    """Neither place holds callrouter's dialplans (an installation without its data files)."""


def installed_dialplans() -> Path:
    """Where the installed ``callrouter`` distribution put its dialplans: the files its wheel
    recorded (so a ``--user``/``--prefix`` install is found too), else the data folder of this
    Python's installation scheme."""
    try:
        files = metadata.distribution("callrouter").files or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.parts[-4:] == (*INSTALLED.parts, DIALPLAN_FILES[0]):
            return Path(str(file.locate())).resolve().parent
    return Path(sysconfig.get_path("data")) / INSTALLED


def find_dialplans(places: Sequence[Path] | None = None) -> Path:
    """The first of ``places`` (default: beside the packages, then where the wheel installed
    them) that holds every file of :data:`DIALPLAN_FILES`; :class:`DialplansNotFound`, naming
    each place looked in, when none does."""
    looked = tuple(places) if places is not None else (DIALPLANS, installed_dialplans())
    for place in looked:
        if all((place / name).is_file() for name in DIALPLAN_FILES):
            return place
    wanted = " and ".join(DIALPLAN_FILES)
    where = ", then ".join(str(place) for place in looked)
    raise DialplansNotFound(
        f"callrouter's dialplans ({wanted}) were not found: looked in {where}. Run callrouter"
        " from a source checkout, or install it from its wheel, which carries them."
    )


@functools.cache
def shipped_dialplans() -> tuple[Path, ...]:
    """The dialplan files every emulated call reads, found once per process."""
    place = find_dialplans()
    return tuple(place / name for name in DIALPLAN_FILES)


@dataclass(frozen=True)
class Asterisk:
    """The emulated Asterisk's configuration: dialplan files, ``[globals]`` (``CR_AGI`` is
    added per call), PJSIP endpoints, the far end of outward calls, queue members."""

    dialplans: Sequence[Path] = field(default_factory=shipped_dialplans)
    globals: Mapping[str, str] = field(default_factory=lambda: dict(GLOBALS))
    contacts: Mapping[str, str] = field(default_factory=lambda: dict(CONTACTS))
    far_end: FarEnd = answers
    queue_members: Mapping[str, Sequence[str]] = field(default_factory=dict)
    centre: CallCentre | None = None
    """The contact centre behind Asterisk: reports every channel on the fake AMI and plays each
    Queue() there (who answers, who hangs up, the adviser's disposition)."""
    queue_contexts: Mapping[str, str] = field(default_factory=dict)
    """queues.conf ``context =`` per Asterisk queue: where a digit pressed while waiting goes."""
    agi_url: str | None = None
    """``CR_AGI``: e.g. ``hagi://callrouter.example`` (None: ``agi://host:port`` of
    :func:`place_call`)."""
    resolver: Resolver | None = None
    """The DNS a ``hagi://`` URL is looked up in (:class:`~emulator.hagi.Resolver`: SRV answers
    and host addresses, injected)."""
    connect_timeout: float | None = None
    """Real seconds each connect may take (None: ``MAX_AGI_CONNECT``, 2 s on the call's clock, so
    0.2 s at ``time_scale=0.1``; a test under load can give the real 2 s, which Asterisk waits in
    its own thread, where the emulator's one event loop may lag)."""

    system_name: str = ""
    """asterisk.conf ``systemname``: every channel's Uniqueid, so every call's Linkedid, is then
    ``<system_name>-<seconds>.<sequence>`` ("": unset, ``<seconds>.<sequence>``). The AMI side of
    the same Asterisk (:class:`~emulator.ami.FakeAmi`, e.g. a ``centre``'s) takes it too: give
    both the same name."""

    def dialplan(self) -> Dialplan:
        return _load(tuple(self.dialplans))


_cache: dict[tuple[Path, ...], tuple[tuple[float, ...], Dialplan]] = {}


def _load(paths: tuple[Path, ...]) -> Dialplan:
    """The parsed dialplan, re-read when a file changes (many calls share one parse)."""
    stamps = tuple(path.stat().st_mtime for path in paths)
    cached = _cache.get(paths)
    if cached is None or cached[0] != stamps:
        cached = (stamps, Dialplan.parse(*(path.read_text() for path in paths)))
        _cache[paths] = cached
    return cached[1]


@dataclass
class CallRecord:
    """Where one call went, step by step, as the dialplan saw it."""

    dialled: str
    steps: list[str] = field(default_factory=list)
    ended: str = ""  # e.g. "dial +441632960999", "queue hdc-revenues answered", "caller hung up"
    variables: dict[str, str] = field(default_factory=dict)
    sessions: list[EmulatedCall] = field(default_factory=list)
    dials: list[DialAttempt] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    duration: float = 0.0
    line: CallerLine = field(default_factory=CallerLine)  # the caller's channel: clock, digits, timer
    fallback_at: float | None = None  # the line's clock when the call took the fail-static/static path
    static_at: float | None = None  # the line's clock when the call reached callrouter-static
    orphans: int = 0  # fail-static processes AGI() left running that ignored SIGHUP (killed after)
    language: str = ""  # the caller's channel's language (CHANNEL(language)) as the call ended
    connects: list[list[Attempt]] = field(default_factory=list)  # per FastAGI AGI(): each connect made

    @property
    def tenant(self) -> str:
        return self.variables.get(cv.TENANT, "")

    def summary(self) -> str:
        return " -> ".join([*self.steps, self.ended])


@dataclass
class _Call:
    """One caller's channel: its FastAGI sessions and what the record says about it."""

    script: CallerScript
    record: CallRecord
    caller: str
    deadline: float
    fallback: Sequence[str] | None = None
    resolver: Resolver | None = None
    connect_timeout: float | None = None
    system_name: str = ""  # the Asterisk's (asterisk.conf systemname)
    processes: list[Process] = field(default_factory=list)  # left running by AGI()

    def _script(self, channel: Channel) -> CallerScript:
        """The caller's script as the channel stands now (the timer is on the line, already
        armed by the dialplan's ``Set(TIMEOUT(absolute)=...)``)."""
        return replace(
            self.script,
            variables=channel.plain(),
            answered=channel.state == "Up",
            channel=channel.name,
            uniqueid=channel.uniqueid,
            linkedid=channel.call_id,
            system_name=self.system_name,
            context=channel.context,
            priority=channel.priority,
            language=channel.language,
            agisighup=not ast_false(channel.get("AGISIGHUP")),  # run_agi: !ast_false
            agiexitonhangup=ast_true(channel.get("AGIEXITONHANGUP")),  # run_agi: ast_true
            absolute_timeout=None,
        )

    async def agi(self, pbx: Pbx, channel: Channel, url: str, args: list[str]) -> None:
        """``AGI(url,args)``: a FastAGI session for ``agi://`` URLs; the classic fail-static
        script for ``${CR_FALLBACK}`` when its command was given."""
        parts = parse_url(url)
        if parts is None:
            if self.fallback is not None and url == pbx.globals.get("CR_FALLBACK"):
                await self._classic(channel, args)
            else:
                channel.set("AGISTATUS", "NOTFOUND")  # a classic script: not run here
            return
        name = parts.script.partition("?")[0]
        if name == "menu" and len(args) > 1:
            self.record.steps.append(f"menu {args[1]}")
        script = self._script(channel)
        attempts: list[Attempt] = []
        session = await play_url(
            url,
            script,
            args=args,
            resolver=self.resolver,
            deadline=self.deadline,
            line=channel.line,
            attempts=attempts,
            connect_timeout=self.connect_timeout,
        )
        self.record.connects.append(attempts)
        if session is None:  # every target refused, unreachable or past the 2 s connect timeout
            channel.set("AGISTATUS", "FAILURE")
            return
        self.script = replace(self.script, steps=session.remaining_steps)
        self._returned(channel, script.variables, session.call)
        if session.call.agistatus is None:
            self.record.ended = "controller silent (Asterisk would wait for it)"
            channel.hung_up = True
            return
        self._after_agi(name, channel, session.call)

    async def _classic(self, channel: Channel, args: list[str]) -> None:
        """``AGI(${CR_FALLBACK},${EXTEN})``: the fail-static script as a process, on the line."""
        assert self.fallback is not None
        script = self._script(channel)
        call, _code = await run_classic(
            self.fallback, script, args, deadline=self.deadline, line=channel.line, orphans=self.processes
        )
        self._returned(channel, script.variables, call)
        route = channel.get(cv.ROUTE) or ""
        reason = "timed out" if call.goes_to_t else unpack(route)[cv.REASON] if route else "failed"
        self.record.steps.append(f"{FAILSTATIC} ({reason})")

    def _returned(self, channel: Channel, sent: Mapping[str, str], call: EmulatedCall) -> None:
        """What ``AGI()`` leaves on the channel: the variables the script set, AGISTATUS and,
        when the absolute timeout ended it, the timeout soft hangup (the PBX goes to ``T``)."""
        self.record.sessions.append(call)
        for key, value in call.variables.items():
            if sent.get(key) != value:
                channel.set(key, value)  # SET VARIABLE: pbx_builtin_setvar_helper, like Set()
        channel.language = call.language  # SET VARIABLE CHANNEL(language): the function, as Set()
        if call.agistatus is not None:
            channel.set("AGISTATUS", call.agistatus)
        channel.timed_out = call.goes_to_t

    def _after_agi(self, name: str, channel: Channel, call: EmulatedCall) -> None:
        if call.goes_to_t:
            return  # T: the caller's next step finds CR_ROUTE empty
        if call.agistatus == "HANGUP":
            self.record.ended = "caller hung up"
        elif name == "route" and channel.get(cv.ROUTE):
            self.record.steps.append(f"route ({unpack(channel.get(cv.ROUTE) or '')[cv.REASON]})")
        elif name == "survey":
            score = channel.get(cv.SURVEY_SCORE) or ""
            self.record.ended = f"answered, survey {score or 'not answered'}"

    def observe(self, pbx: Pbx, channel: Channel, app: str, data: str) -> None:
        """What the caller's channel just did, in the record's words."""
        if channel.name != self.caller:
            return
        if channel.context in (FAIL_STATIC, STATIC) and self.record.fallback_at is None:
            self.record.fallback_at = channel.line.clock.now()
        if channel.context == STATIC and self.record.static_at is None:
            self.record.static_at = channel.line.clock.now()
            self.record.steps.append("static route")
        app = app.lower()
        if app == "queue":
            queue = data.split(",", maxsplit=1)[0]
            self.record.steps.append(f"queue {queue} ({pbx.queue_status.lower()})")
            if pbx.queue_status == "CONTINUE":
                self.record.ended = "answered"
        elif app == "dial" and pbx.dials:
            attempt = pbx.dials[-1]
            dest = attempt.data.partition("/")[2]
            endpoint = dest.partition("@")[2]
            kind = "payment line" if endpoint == pbx.globals.get("CR_PAYMENT_TRUNK") else "dial"
            outcome = "" if attempt.status == "ANSWER" else f" ({attempt.status.lower()})"
            self.record.ended = f"{kind} {attempt.invite.user if attempt.invite else dest}{outcome}"
        elif app == "voicemail":
            self.record.ended = f"voicemail {data.split(',', maxsplit=1)[0]}"
        elif app == "hangup" and (channel.context, channel.exten) == ("callrouter-dispatch", "hangup"):
            self.record.ended = f"hang up {channel.get(cv.TARGET) or ''}".rstrip()


async def place_call(
    host: str,
    port: int,
    script: CallerScript,
    *,
    outcome: QueueOutcome = always_answered,
    deadline: float = 30.0,
    time_scale: float = 0.0,
    number: int = 1,
    asterisk: Asterisk | None = None,
    fallback: Sequence[str] | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> CallRecord:
    """Play one whole call: ``callrouter-inbound`` for ``script.dial``, then every step after,
    with the controller at ``host:port`` as ``CR_AGI`` (or :attr:`Asterisk.agi_url`).

    ``headers``: those of the INVITE that brought the call in (what ``PJSIP_HEADER(read,...)``
    finds on the caller's PJSIP channel), e.g. the partner headers of a call another centre's
    dialplan sent here (:attr:`~emulator.pbx.Invite.headers` of its dial).

    ``time_scale``: the call's clock (:class:`~emulator.line.CallClock`): 0 lets modelled time
    (prompts, digit timeouts) pass at once, > 0 runs everything in real time scaled by it.
    ``fallback``: the command of the classic fail-static script (what ``CR_FALLBACK`` names);
    when given, a call that reaches ``callrouter-failstatic`` runs it on the same line."""
    started = time.perf_counter()
    asterisk = asterisk or Asterisk()
    record = CallRecord(dialled=script.dial, line=CallerLine(CallClock(time_scale)))
    name = script.channel or f"PJSIP/sipp-{number:08x}"
    call = _Call(
        script,
        record,
        name,
        deadline,
        fallback,
        asterisk.resolver,
        asterisk.connect_timeout,
        asterisk.system_name,
    )
    pbx = Pbx(
        asterisk.dialplan(),
        {**asterisk.globals, "CR_AGI": asterisk.agi_url or f"agi://{host}:{port}"},
        pjsip=Pjsip(asterisk.contacts),
        far_end=asterisk.far_end,
        queue_outcome=outcome,
        queue_members=asterisk.queue_members,
        agi=call.agi,
        stop_contexts=() if fallback is not None else (FAIL_STATIC,),
        observer=call.observe,
        events=asterisk.centre,
        queue_call=asterisk.centre.queue if asterisk.centre is not None else None,
        queue_contexts=asterisk.queue_contexts,
        system_name=asterisk.system_name,
    )
    channel = pbx.new_channel(
        name,
        caller_num=script.caller or "",
        caller_name=script.caller_name or "",
        context="callrouter-inbound",
        exten=script.dial,
        uniqueid=script.uniqueid or "",
    )
    channel.line = record.line
    channel.language = script.language
    channel.received = list(headers)
    for key, value in script.variables.items():
        channel.set(key, value)
    try:
        await pbx.run(channel, "callrouter-inbound", script.dial)
    finally:
        record.orphans = await reap(call.processes)
    if asterisk.centre is not None:
        asterisk.centre.caller_gone(channel, by_caller=record.ended == "caller hung up")
    if pbx.stopped_in == FAIL_STATIC:
        record.ended = FAILSTATIC
    record.variables = channel.plain()
    record.language = channel.language
    record.dials = pbx.dials
    record.log = pbx.log
    record.ended = record.ended or "hung up"
    record.duration = time.perf_counter() - started
    return record


async def place_calls(
    host: str,
    port: int,
    scripts: Sequence[CallerScript],
    *,
    outcome: QueueOutcome = always_answered,
    concurrency: int = 10,
    deadline: float = 30.0,
    asterisk: Asterisk | None = None,
) -> list[CallRecord]:
    """Place many calls, ``concurrency`` at a time; results in the order of ``scripts``."""
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int, script: CallerScript) -> CallRecord:
        async with limit:
            return await place_call(
                host, port, script, outcome=outcome, deadline=deadline, number=index + 1, asterisk=asterisk
            )

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(scripts))))
