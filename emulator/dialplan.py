"""A whole call through callrouter's dialplan (``dialplans/callrouter.conf``), emulated.

Each ``AGI()`` of the dialplan is a real FastAGI session against the controller, played by
:class:`~emulator.agi.AsteriskSession`; between them this module does what the
dialplan does: check ``CR_ROUTE`` and unpack it, dispatch on ``CR_ACTION``, run ``Queue()`` (its outcome
comes from a :data:`QueueOutcome` function, e.g. a fake contact centre), continue to the
survey or the overflow route. The same call keeps its channel, uniqueid, variables, the
caller's remaining steps and its :class:`~emulator.line.CallerLine` (clock, digits in flight,
absolute timeout) from one ``AGI()`` to the next, as on a real channel.

Every controller ``AGI()`` goes through ``callrouter-agi`` as the dialplan does: ``CR_ROUTE``
cleared, ``AGIEXITONHANGUP=yes``, ``TIMEOUT(absolute)=5``, ``AGI()``, timer cleared; when the
timer ends ``AGI()`` the ``T`` extension clears it and returns, and the caller's next step
checks ``CR_ROUTE`` like after any other failure: the fail-static path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from emulator.agi import CallerScript, EmulatedCall, play_session
from emulator.classic import run_classic
from emulator.line import CallClock, CallerLine
from ivr import channel_vars as cv
from ivr.contract import unpack

QueueOutcome = Callable[[str, dict[str, str]], str]  # (asterisk queue, channel vars) -> QUEUESTATUS
MAX_HOPS = 12
AGI_TIMEOUT_S = 5  # callrouter-agi: Set(TIMEOUT(absolute)=5) before every AGI() of the controller
FAILSTATIC = "fail-static route"  # callrouter-failstatic: the classic fallback script
STATIC = "static route"  # callrouter-static: the generated route of last resort


def always_answered(queue: str, variables: dict[str, str]) -> str:
    """Every queue answers (``QUEUESTATUS=CONTINUE`` after the adviser hangs up, option c)."""
    return "CONTINUE"


@dataclass
class CallRecord:
    """Where one call went, step by step, as the dialplan saw it."""

    dialled: str
    steps: list[str] = field(default_factory=list)
    ended: str = ""  # e.g. "dial +441632960999", "queue hdc-revenues answered", "caller hung up"
    variables: dict[str, str] = field(default_factory=dict)
    sessions: list[EmulatedCall] = field(default_factory=list)
    duration: float = 0.0
    line: CallerLine = field(default_factory=CallerLine)
    fallback_at: float | None = None  # the call's clock when it took the fail-static/static path

    @property
    def tenant(self) -> str:
        return self.variables.get(cv.TENANT, "")

    def summary(self) -> str:
        return " -> ".join([*self.steps, self.ended])


@dataclass
class _Call:
    host: str
    port: int
    script: CallerScript
    channel: str
    uniqueid: str
    record: CallRecord
    deadline: float
    time_scale: float
    fallback: Sequence[str] | None = None

    async def agi(self, route: str, *args: str) -> EmulatedCall:
        """``Gosub(callrouter-agi,s,1(route,args))``: one bounded ``AGI(agi://host/route,args)``
        with the call's current variables, steps and line."""
        line = self.record.line
        self.record.variables.pop(cv.ROUTE, None)  # Set(CR_ROUTE=) before every AGI()
        line.arm(AGI_TIMEOUT_S)  # Set(TIMEOUT(absolute)=5)
        script = replace(
            self.script,
            variables=dict(self.record.variables),
            answered=True,
            channel=self.channel,
            uniqueid=self.uniqueid,
            agiexitonhangup=True,
            absolute_timeout=None,
        )
        try:
            session = await play_session(
                self.host, self.port, script, route, args=args, deadline=self.deadline, line=line
            )
        finally:
            line.hangup_at = None  # Set(TIMEOUT(absolute)=0) after AGI(), or in T
        if session is None:
            raise ConnectionRefusedError(f"nothing answers on {self.host}:{self.port}")
        self.script = replace(self.script, steps=session.remaining_steps)
        self.record.variables.update(session.call.variables)
        if self.record.variables.get(cv.ROUTE):  # Gosub(callrouter-unpack,s,1)
            self.record.variables.update(unpack(self.record.variables[cv.ROUTE]))
        self.record.sessions.append(session.call)
        return session.call

    def finished(self, call: EmulatedCall) -> bool:
        """The dialplan goes on (next priority, or ``T`` then Return) and CR_ROUTE is set."""
        goes_on = call.agistatus in ("SUCCESS", "FAILURE") or call.goes_to_t
        return goes_on and bool(self.record.variables.get(cv.ROUTE))

    def fall_back(self, call: EmulatedCall, path: str) -> None:
        """``CR_ROUTE`` is empty after AGI(): the caller hung up, or the call takes ``path``."""
        if call.agistatus == "HANGUP" and not call.goes_to_t:
            self.record.ended = "caller hung up"
            return
        self.record.ended = path
        self.record.fallback_at = self.record.line.clock.now()

    async def run_fallback(self) -> None:
        """``callrouter-failstatic``: ``AGI(${CR_FALLBACK},${EXTEN})`` when a command is given;
        records where the classic script sends the call (``fail-static route: queue hdc-revenues``)."""
        if self.fallback is None or self.record.ended != FAILSTATIC:
            return
        self.record.variables.pop(cv.ROUTE, None)
        script = replace(self.script, variables=dict(self.record.variables), answered=True,
                         channel=self.channel, uniqueid=self.uniqueid)  # fmt: skip
        session, _code = await run_classic(
            self.fallback, script, [self.record.dialled], deadline=self.deadline, line=self.record.line
        )
        self.record.sessions.append(session)
        route = session.variables.get(cv.ROUTE, "")
        if route:
            fields = unpack(route)
            self.record.variables.update(fields)
            self.record.ended = f"{FAILSTATIC}: {fields[cv.ACTION]} {fields[cv.TARGET]}".rstrip()
        else:
            self.record.ended = STATIC


async def _dispatch(call: _Call, outcome: QueueOutcome) -> None:
    record, variables = call.record, call.record.variables
    for _ in range(MAX_HOPS):
        action, target = variables.get(cv.ACTION, ""), variables.get(cv.TARGET, "")
        if action == "queue":
            status = outcome(target, variables)
            record.steps.append(f"queue {target} ({status.lower()})")
            if status == "CONTINUE":
                await _after_answer(call)
                return
            session = await call.agi("overflow", variables[cv.TENANT], variables.get(cv.QUEUE, ""), status)
            fallback = STATIC
        elif action == "menu":
            record.steps.append(f"menu {target}")
            session = await call.agi("menu", variables[cv.TENANT], target, variables.get(cv.PRELUDE, ""))
            fallback = FAILSTATIC
        elif action == "payment":
            session = await call.agi("payment", variables[cv.TENANT], target)
            fallback = STATIC
            if call.finished(session) and variables.get(cv.ACTION) == "payment":
                record.ended = f"payment line {variables[cv.TARGET]}"
                return
        else:
            record.ended = {"dial": "dial", "voicemail": "voicemail", "hangup": "hang up"}.get(action, action)
            record.ended += f" {target}".rstrip() if target else ""
            return
        if not call.finished(session):
            call.fall_back(session, fallback)
            return
    record.ended = f"stopped after {MAX_HOPS} hops"


async def _after_answer(call: _Call) -> None:
    variables = call.record.variables
    if variables.get(cv.SURVEY) != "1":
        call.record.ended = "answered"
        return
    await call.agi("survey", variables[cv.TENANT], variables.get(cv.QUEUE, ""))
    score = variables.get(cv.SURVEY_SCORE, "")
    call.record.ended = f"answered, survey {score or 'not answered'}"


async def place_call(
    host: str,
    port: int,
    script: CallerScript,
    *,
    outcome: QueueOutcome = always_answered,
    deadline: float = 30.0,
    time_scale: float = 0.0,
    number: int = 1,
    fallback: Sequence[str] | None = None,
) -> CallRecord:
    """Play one whole call: ``callrouter-inbound`` for ``script.dial``, then every step after.

    ``fallback``: the command of the classic fail-static script (``CR_FALLBACK``); when given,
    a call that takes ``callrouter-failstatic`` runs it on the same line."""
    started = time.perf_counter()
    record = CallRecord(dialled=script.dial, line=CallerLine(CallClock(time_scale)))
    channel = script.channel or f"PJSIP/sipp-{number:08x}"
    uniqueid = script.uniqueid or f"{int(time.time())}.{number}"
    call = _Call(host, port, script, channel, uniqueid, record, deadline, time_scale, fallback)
    try:
        session = await call.agi("route", script.dial)
        if call.finished(session):
            record.steps.append(f"route ({record.variables.get(cv.REASON, '')})")
            await _dispatch(call, outcome)
        else:
            call.fall_back(session, FAILSTATIC)
    except OSError as exc:
        record.steps.append(f"controller unreachable ({type(exc).__name__})")
        record.ended = FAILSTATIC
        record.fallback_at = record.line.clock.now()
    await call.run_fallback()
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
) -> list[CallRecord]:
    """Place many calls, ``concurrency`` at a time; results in the order of ``scripts``."""
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int, script: CallerScript) -> CallRecord:
        async with limit:
            return await place_call(host, port, script, outcome=outcome, deadline=deadline, number=index + 1)

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(scripts))))
