"""The queued-callback dialler: calls the adviser, then the caller, when a callback's turn comes.

Who dials. Only the controller instance holding the AMI writer lease (``routing/live/lease.py``)
dials: each sweep it asks the pure decision (:func:`routing.core.callback_order.decide_callbacks`)
which callbacks to dial, and claims each with a script that checks the lease in the same step
(``routing.callbacks.claim``), so two controllers never dial one callback, also across a Redis
fail-over (the lease key moves with the data). Every instance with an AMI connection *records*
what Asterisk reports about a dial (Asterisk sends ``OriginateResponse`` and user events to every
AMI session): each report is applied only while the callback is still in that dial, so a report
seen by two instances changes it once.

How a callback is dialled (``dialplans/callrouter.conf``). One AMI ``Originate``, ``Async``:

* ``Channel: Local/s@callrouter-callback-adviser``: its ``;2`` leg joins the callback's Asterisk
  queue at the callback's place (``Queue()``'s 9th argument, position: ahead of every live
  caller, behind callbacks already there that joined earlier; the dialler originates only when
  no live caller who joined earlier is waiting) and waits there like a caller. app_queue picks and rings the
  adviser by its own rules (strategy, penalties, ``ringinuse=no``, wrap-up, autofill turns), so
  an adviser is never rung for a live caller and a callback at the same moment. ``Timeout`` (the
  ``;1`` leg's answer time; the queue's ``timeout_s``) bounds that wait: no adviser within it is
  ``OriginateResponse`` Failure, Reason 3, and the callback is due again at once, in its place.
* When an adviser answers, the ``;1`` leg is answered (``OriginateResponse`` Success) and runs
  ``callrouter-callback-caller``: ``Dial(PJSIP/<number>@${CR_TRUNK},<ring_s>,g)`` with the
  caller id of the dialled council (``CallerID`` of the Originate: the tenant's own number, never
  a partner centre's), then ``UserEvent(CallbackOutcome,...)`` with ``DIALSTATUS`` and
  ``ANSWEREDTIME``. The adviser hears the ringing, then the caller.

How long the caller talked (an answer shorter than ``SHORT_ANSWER_S`` is a voicemail greeting or
an answering machine, and is retried): from the ``;1`` leg's ``DialEnd`` ``ANSWER`` (the
caller's answer) to its ``CallbackOutcome`` (the caller gone), on the events' ``Timestamp``
(Asterisk's clock, ``timestampevents = yes``), else on their receive times. ``ANSWEREDTIME`` only
when that ``DialEnd`` was not seen: on the ``;1`` leg it counts from the adviser's answer, so it
includes the caller's ringing (``callback_originate.txt``: 1 s of ringing and 3.0 s talked gave 4).

The ActionID ``cb:<id>:<dial>`` and the legs' Uniqueids ``<id>-<dial>-1`` / ``-2`` (``ChannelId``,
``OtherChannelId``) tie every report to its dial; ``AgentConnect`` of the ``-2`` leg names the
adviser.

An end Redis does not confirm (``redis.wait_replicas``: a fail-over under way, the surviving
replica catching up) is held and sent again, with a bounded backoff, until confirmed (every
instance that heard it, lease or not); meanwhile its dial is not taken for lost.

A dial nobody saw end (the controller died and no other instance was connected): once it is older
than the adviser wait + ``lost_after_s`` with no adviser answer seen, or the adviser wait +
``talk_bound_s`` when an adviser answered, it ends as ``interrupted`` and the callback is due
again at once, keeping its place and its attempts: the caller is dialled again once (the dial
number fences it), never twice for the same lost dial.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr import channel_vars as cv
from records.dispositions import submit_callback
from routing import callbacks as store
from routing.core.callback_order import (
    AttemptOutcome,
    QueuedCallback,
    QueueView,
    after_attempt,
    decide_callbacks,
    dial_outcome,
)
from routing.core.decide import CompiledPlan
from routing.core.live import LiveState, Toggles
from routing.core.numbers import display
from routing.core.plan import CallbackPolicy, Tenant
from routing.masking import mask_number
from routing.redis_keys import KEYS, RedisKeys
from routing.replicas import NO_WAIT, NotReplicated, ReplicaWait

log = structlog.get_logger("callrouter.callbacks")

ADVISER_CONTEXT = "callrouter-callback-adviser"
CALLER_CONTEXT = "callrouter-callback-caller"
ACTION_PREFIX = "cb:"
_LEG = re.compile(r"^(cb-[0-9a-f]{20})-(\d+)-([12])$")
DEFAULT_POLICY = CallbackPolicy()  # for callbacks of a queue whose policy a new plan removed
NO_ANSWER_REASON = "3"  # OriginateResponse Reason: rang, nobody answered within Timeout
REFUSED_RETRY_S = 60.0
ANSWERS_KEPT = 10_000  # caller answers awaiting their CallbackOutcome (the oldest go first)
ENDS_KEPT = 10_000  # ends held until confirmed (the oldest go first)


@dataclass(frozen=True, slots=True)
class DiallerSettings:
    """Timings (seconds)."""

    interval_s: float = 2.0  # between sweeps
    adviser_wait_s: float | None = None  # the adviser leg's wait in the queue (None: its timeout_s)
    lost_after_s: float = 30.0  # past adviser_wait_s with no report: the dial is lost
    talk_bound_s: float = 4 * 3600.0  # past an adviser's answer with no outcome: the dial is lost
    end_retry_first_s: float = 0.5  # an end not confirmed: sent again after this, then twice as long...
    end_retry_max_s: float = 5.0  # ...up to this between two tries, until confirmed


def end_backoff(tries: int, settings: DiallerSettings) -> float:
    """Seconds before an unconfirmed end is sent again, after ``tries`` tries (1, 2, ...)."""
    return min(settings.end_retry_max_s, settings.end_retry_first_s * 2.0 ** min(tries - 1, 30))


@dataclass(slots=True)
class HeldEnd:
    """The end of a dial as Asterisk reported it (``at``: when it was heard), held until Redis
    confirms it: ``tries`` so far, ``due`` (monotonic) the next."""

    ident: str
    dial: int
    outcome: AttemptOutcome
    reason: str
    at: float
    tries: int = 0
    due: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        return (self.ident, self.dial)


DIALLER_DEFAULTS = DiallerSettings()


def action_id(ident: str, dial: int) -> str:
    return f"{ACTION_PREFIX}{ident}:{dial}"


def parse_action_id(value: str) -> tuple[str, int] | None:
    prefix, _, rest = value.partition(ACTION_PREFIX)
    ident, _, dial = rest.rpartition(":")
    if prefix or not ident.startswith("cb-") or not dial.isdigit():
        return None
    return ident, int(dial)


def caller_id(tenant: Tenant) -> str:
    """``"<council name>" <national number>``: the dialled council's own name and first number
    (no comma: it travels in the Originate's comma-separated ``Variable`` header too)."""
    name = re.sub(r'["<>\\\r\n,]', "", tenant.name)[:40]
    return f'"{name}" <{display(tenant.numbers[0]).replace(" ", "")}>'


@dataclass(frozen=True, slots=True)
class Dial:
    """One dial to start: the callback, its dial number, where it enters the queue, how long its
    adviser leg may wait there (seconds)."""

    cb: store.StoredCallback
    dial: int
    position: int
    wait_s: float


def originate_action(d: Dial, tenant: Tenant, policy: CallbackPolicy) -> dict[str, str]:
    """The AMI ``Originate`` of one dial (see the module doc)."""
    cb, dial = d.cb, d.dial
    variables = {
        cv.CALLBACK_ID: cb.callback_id,
        cv.CALLBACK_DIAL: str(dial),
        cv.CALLBACK_QUEUE: cb.asterisk_queue,
        cv.CALLBACK_POSITION: str(d.position),
        cv.CALLBACK_NUMBER: cb.number,
        cv.CALLBACK_RING_S: str(policy.ring_s),
        # set again on the ;1 leg before it dials the caller: when the adviser answers, the ;2
        # leg's connected line becomes ;1's caller id (callback_originate.txt), which Dial() shows
        cv.CALLBACK_CLI: caller_id(tenant),
    }
    return {
        "Action": "Originate",
        "Channel": f"Local/s@{ADVISER_CONTEXT}",
        "Context": CALLER_CONTEXT,
        "Exten": "s",
        "Priority": "1",
        "Async": "true",
        "Timeout": str(int(d.wait_s * 1000)),
        "CallerID": caller_id(tenant),
        "ChannelId": f"{cb.callback_id}-{dial}-1",
        "OtherChannelId": f"{cb.callback_id}-{dial}-2",
        "Variable": ",".join(f"{k}={v}" for k, v in variables.items()),
        "ActionID": action_id(cb.callback_id, dial),
    }


Send = Callable[[Mapping[str, str]], Awaitable[dict[str, str]]]


class Dialler:
    """Sweeps the plan's queues (lease holder only) and records what Asterisk reports (all)."""

    def __init__(
        self,
        redis: Redis,
        *,
        holder: str,
        is_holder: Callable[[], bool],
        send: Send,
        plan: Callable[[], CompiledPlan],
        live: Callable[[CompiledPlan, str, datetime], tuple[LiveState, Toggles]],
        waiting: Callable[[str], Awaitable[dict[str, float]]],
        clock: Callable[[], datetime],
        keys: RedisKeys = KEYS,
        settings: DiallerSettings = DIALLER_DEFAULTS,
        records: bool = False,
        wait: ReplicaWait = NO_WAIT,
    ) -> None:
        self.redis, self.holder, self.is_holder, self.send = redis, holder, is_holder, send
        self.records = records  # contact records are on: an ended callback goes to its call's record
        self.wait = wait  # replicas each claim and each end waits for (a Redis fail-over loses neither)
        self.plan, self.live, self.waiting, self.clock = plan, live, waiting, clock
        self.keys, self.settings = keys, settings
        self.inbox: asyncio.Queue[tuple[dict[str, str], float | None]] = asyncio.Queue(maxsize=10_000)
        # ;1 leg Uniqueid -> when the caller answered: (the DialEnd's Timestamp or None, received)
        self._answered: dict[str, tuple[float | None, float]] = {}
        # ends Redis did not confirm (a fail-over under way, replicas catching up): sent again
        self._ends: dict[tuple[str, int], HeldEnd] = {}
        self.dialled = 0

    # --- what Asterisk reports (every instance) -----------------------------------------------

    def on_message(self, headers: Mapping[str, str], ts: float) -> None:
        """The AMI tap (``ts``: receive time): keep the events about callback dials, and time the
        caller's talk (see the module doc). Never raises, never blocks."""
        event = headers.get("Event", "")
        talk_s: float | None = None
        if event == "DialEnd":
            leg = _LEG.match(headers.get("Uniqueid", ""))
            if leg is not None and leg.group(3) == "1" and headers.get("DialStatus") == "ANSWER":
                if len(self._answered) >= ANSWERS_KEPT:
                    del self._answered[next(iter(self._answered))]
                self._answered[leg.group(0)] = (_stamp(headers), ts)
            return
        if event == "UserEvent" and headers.get("UserEvent") == cv.CALLBACK_OUTCOME_EVENT:
            answered = self._answered.pop(headers.get("Uniqueid", ""), None)
            if answered is not None:
                talk_s = talk_seconds(answered, (_stamp(headers), ts))
        relevant = (
            (event == "OriginateResponse" and headers.get("ActionID", "").startswith(ACTION_PREFIX))
            or (event == "UserEvent" and headers.get("UserEvent") == cv.CALLBACK_OUTCOME_EVENT)
            or (event == "AgentConnect" and _LEG.match(headers.get("Uniqueid", "")) is not None)
        )
        if relevant:
            with contextlib.suppress(asyncio.QueueFull):
                self.inbox.put_nowait((dict(headers), talk_s))

    async def handle(self, headers: Mapping[str, str], talk_s: float | None = None) -> None:
        """Apply one report to its dial (idempotent). ``talk_s``: for a ``CallbackOutcome``, the
        seconds the caller talked, when their answer was seen (:meth:`on_message`)."""
        event = headers.get("Event", "")
        if event == "AgentConnect":
            leg = _LEG.match(headers.get("Uniqueid", ""))
            if leg is not None:
                name = headers.get("MemberName", "") or headers.get("Interface", "")
                await store.note(self.redis, self.keys, leg.group(1), int(leg.group(2)), adviser=name[:80])
            return
        if event == "OriginateResponse":
            parsed = parse_action_id(headers.get("ActionID", ""))
            if parsed is None:
                return
            ident, dial = parsed
            if headers.get("Response") == "Success":
                now = self.clock().timestamp()
                await store.note(self.redis, self.keys, ident, dial, adviser_at=repr(now))
            else:
                await self._end(ident, dial, "no-adviser", reason=headers.get("Reason", ""))
            return
        reported, number = headers.get("Callback", ""), headers.get("Dial", "")
        # Only a UserEvent naming the dial's own ;1 leg counts (its Uniqueid is the Originate's
        # ChannelId), as the dialplan raises it. The UserEvent *action* copies any header its
        # sender writes, so an AMI client with the `user` write class could forge one: that
        # class is for trusted clients only (docs/callbacks.md).
        if (
            reported.startswith("cb-")
            and number.isdigit()
            and headers.get("Uniqueid") == f"{reported}-{number}-1"
        ):
            outcome = dial_outcome(headers.get("DialStatus", ""), headers.get("AnsweredTime", ""), talk_s)
            await self._end(reported, int(number), outcome, reason=headers.get("DialStatus", ""))

    async def _end(self, ident: str, dial: int, outcome: AttemptOutcome, *, reason: str = "") -> bool:
        """End dial ``dial`` of ``ident`` now; True when this ended it. Never raises: an end that
        Redis did not take, or whose replicas did not confirm it, is held and sent again until
        confirmed (:meth:`retry_ends`)."""
        end = HeldEnd(ident, dial, outcome, reason, self.clock().timestamp())
        held = self._ends.get(end.key)
        if held is not None:  # the same end heard again while held: the held one goes on
            return False
        try:
            return await self._apply_end(end)
        except (RedisError, ConnectionError, TimeoutError, OSError) as exc:
            self._hold(end, exc)
            return False

    async def _apply_end(self, end: HeldEnd) -> bool:
        """Write ``end`` (raises what Redis raises, :class:`NotReplicated` included); True when it
        ended the dial now. Sent again after an unconfirmed answer it finds the end in already
        (``already``) and, the replicas confirming it this time, is done."""
        ident, dial, outcome, reason, at = end.ident, end.dial, end.outcome, end.reason, end.at
        cb = await store.load_callback(self.redis, self.keys, ident)
        if cb is None or cb.fields.get("dials") != str(dial):
            if end.tries:  # held, and the callback is not in that dial (after a fail-over that lost more)
                log.warning("callback.end_dropped", callback=ident, dial=dial, why="not in that dial")
            return False
        policy = self._policy(cb)
        nxt = after_attempt(outcome, cb.attempts, policy, at)
        if outcome == "no-adviser" and reason != NO_ANSWER_REASON:
            # Asterisk refused the Originate (a missing context, a channel it could not make):
            # not a wait that timed out. Again at once would loop every sweep; a minute later.
            nxt = dataclasses.replace(nxt, next_at=at + REFUSED_RETRY_S)
            if not end.tries:
                log.warning("callback.originate_failed", callback=ident, dial=dial, reason=reason[:80])
        started = float(cb.fields.get("dial_started") or at)
        adviser = cb.fields.get("adviser", "") if outcome != "no-adviser" else ""
        attempt = store.Attempt(dial, started, at, outcome, adviser)
        found = await store.finish(
            self.redis,
            self.keys,
            cb,
            dial,
            attempt=attempt,
            nxt=nxt,
            now=self.clock().timestamp(),
            wait=self.wait,
        )
        if found == "ended" and nxt.state != "pending":
            await self._to_record(ident, at)
        elif found == "already" and cb.state in ("done", "failed"):
            # ended before, unconfirmed: its record may not have been asked for (once per callback)
            await self._to_record(ident, float(cb.fields.get("updated_at") or at))
        if found == "ended":
            log.info(
                "callback.attempt",
                callback=ident,
                tenant=cb.tenant,
                queue=cb.queue,
                dial=dial,
                outcome=outcome,
                why=reason,
                state=nxt.state,
                attempts=nxt.attempts,
                number=mask_number(cb.number),
            )
        if end.tries:
            log.info("callback.end_confirmed", callback=ident, dial=dial, tries=end.tries + 1, found=found)
        return found == "ended"

    def _hold(self, end: HeldEnd, exc: BaseException) -> None:
        """Keep ``end`` to send again later, backing off (bounded), until confirmed."""
        held = self._ends.pop(end.key, end)
        if len(self._ends) >= ENDS_KEPT:  # never reached but by a Redis away for days: the oldest go
            oldest = min(self._ends.values(), key=lambda e: e.at)
            del self._ends[oldest.key]
            log.error("callback.end_given_up", callback=oldest.ident, dial=oldest.dial, held=len(self._ends))
        held.tries += 1
        held.due = time.monotonic() + end_backoff(held.tries, self.settings)
        self._ends[held.key] = held
        log.warning(
            "callback.end_unconfirmed",
            callback=held.ident,
            dial=held.dial,
            outcome=held.outcome,
            tries=held.tries,
            error=(str(exc) if isinstance(exc, NotReplicated) else type(exc).__name__)[:200],
        )

    def holds_end(self, ident: str, dial: int) -> bool:
        """An end of that dial is held here, not yet confirmed: the dial is over, not lost."""
        return (ident, dial) in self._ends

    async def retry_ends(self) -> int:
        """Send again every held end that is due; returns how many were confirmed."""
        confirmed = 0
        now = time.monotonic()
        for end in sorted((e for e in self._ends.values() if e.due <= now), key=lambda e: e.at):
            try:
                await self._apply_end(end)
            except (RedisError, ConnectionError, TimeoutError, OSError) as exc:
                self._hold(end, exc)
                continue
            self._ends.pop(end.key, None)
            confirmed += 1
        return confirmed

    async def _to_record(self, ident: str, now: float) -> None:
        """The ended callback (its attempts and outcome) into its call's contact record: on the
        centre's dispositions stream, as an adviser's late disposition goes, so the controller that
        owns the call (or the archive) makes the next version. Once per callback (request id)."""
        if not self.records:
            return
        cb = await store.load_callback(self.redis, self.keys, ident)
        if cb is not None:
            await submit_callback(
                self.redis,
                self.plan().plan.centre,
                cb,
                cb.outcome or None,
                by="dialler",
                at=now,
                keys=self.keys,
            )

    def _policy(self, cb: store.StoredCallback) -> CallbackPolicy:
        tenant = self.plan().plan.tenants.get(cb.tenant)
        queue = tenant.queues.get(cb.queue) if tenant is not None else None
        return (queue.callback if queue is not None else None) or DEFAULT_POLICY

    # --- dialling (the lease holder) ------------------------------------------------------------

    async def sweep(self) -> int:
        """One pass over every queue of the plan; returns how many dials were started."""
        if not self.is_holder():
            return 0
        compiled, started = self.plan(), 0
        for tid, tenant in compiled.plan.tenants.items():
            for name in tenant.queues:
                started += await self._queue(compiled, tid, name)
        return started

    async def _queue(self, compiled: CompiledPlan, tid: str, name: str) -> int:
        tenant = compiled.plan.tenants[tid]
        asterisk_queue, policy = tenant.queues[name].asterisk_queue, tenant.queues[name].callback
        pending = await store.pending_callbacks(self.redis, self.keys, asterisk_queue)
        if not pending:
            return 0
        found = await store.load_many(self.redis, self.keys, [p.callback_id for p in pending])
        ours = [c for c in found if c.tenant == tid and c.queue == name]
        if not ours:
            return 0
        now_dt = self.clock()
        now = now_dt.timestamp()
        wait_s = self.settings.adviser_wait_s or float(tenant.queues[name].timeout_s)
        for cb in ours:
            dial = int(cb.fields.get("dials", "0"))
            # a dial whose end is held here (unconfirmed) is over, not lost: never dialled again
            if (
                cb.state == "dialling"
                and not self.holds_end(cb.callback_id, dial)
                and self._lost(cb, now, wait_s)
            ):
                await self._end(cb.callback_id, dial, "interrupted", reason="lost")
        policy = policy or DEFAULT_POLICY
        ours = await store.load_many(self.redis, self.keys, [c.callback_id for c in ours])
        live, toggles = self.live(compiled, tid, now_dt)
        snapshot = live.snapshot(asterisk_queue, now_dt)
        waiting = await self.waiting(asterisk_queue)
        view = QueueView(
            tenant_id=tid,
            queue=name,
            policy=policy,
            callbacks=[
                QueuedCallback(c.callback_id, c.joined_at, c.next_at, c.state)
                for c in ours
                if c.state in ("pending", "dialling")
            ],
            live_joins=sorted(t for uid, t in waiting.items() if not uid.startswith("cb-")),
            logged_in=snapshot.logged_in if snapshot is not None else None,
            overflowing=f"{tid}/{name}" in live.overflowing,
        )
        verdict = decide_callbacks(view, compiled.calendars[tid], toggles, now_dt)
        by_id = {c.callback_id: c for c in ours}
        for ident, at in verdict.reschedule:
            await store.reschedule(self.redis, self.keys, ident, self.holder, next_at=at, now=now)
            log.info("callback.rescheduled", callback=ident, tenant=tid, queue=name, next_at=at)
        for ident in verdict.cancel:
            before = await store.cancel(
                self.redis,
                self.keys,
                by_id[ident],
                outcome="cancelled_at_closing",
                by="dialler",
                reason="pending at closing time",
                now=now,
                only_pending=True,
            )
            log.info("callback.cancelled", callback=ident, tenant=tid, queue=name, was=before, why="closing")
            if before == "pending":
                await self._to_record(ident, now)
        started = 0
        for ident, position in zip(verdict.dial, verdict.positions, strict=True):
            started += await self._dial(
                by_id[ident], tenant, policy, position=position, wait_s=wait_s, now=now
            )
        return started

    def _lost(self, cb: store.StoredCallback, now: float, wait_s: float) -> bool:
        started = float(cb.fields.get("dial_started") or now)
        if cb.fields.get("adviser_at"):
            return now - started > wait_s + self.settings.talk_bound_s
        return now - started > wait_s + self.settings.lost_after_s

    async def _dial(
        self,
        cb: store.StoredCallback,
        tenant: Tenant,
        policy: CallbackPolicy,
        *,
        position: int,
        wait_s: float,
        now: float,
    ) -> int:
        try:
            dial = await store.claim(self.redis, self.keys, cb.callback_id, self.holder, now, wait=self.wait)
        except NotReplicated as exc:
            # Not dialled: a fail-over could lose this claim and another controller dial it too.
            # The claim stands on this primary and ends as lost later (dialled again once then).
            log.warning("callback.claim_not_replicated", callback=cb.callback_id, error=str(exc)[:200])
            return 0
        if dial <= 0:
            return 0
        action = originate_action(Dial(cb, dial, position, wait_s), tenant, policy)
        try:
            reply = await self.send(action)
        except (ConnectionError, TimeoutError, OSError) as exc:
            # Not known whether Asterisk took it: the dial stays claimed and, if no report
            # comes, ends as lost after adviser_wait_s + lost_after_s (dialled again once).
            log.warning(
                "callback.originate_unanswered", callback=cb.callback_id, dial=dial, error=type(exc).__name__
            )
            return 1
        if reply.get("Response") != "Success":
            await self._end(cb.callback_id, dial, "no-adviser", reason=reply.get("Message", ""))
            return 0
        self.dialled += 1
        log.info("callback.dialling", callback=cb.callback_id, tenant=cb.tenant, queue=cb.queue, dial=dial)
        return 1

    # --- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sweep every ``interval_s`` and apply reports as they come, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._sweep_loop(), name="callback-sweep")
            tg.create_task(self._inbox_loop(), name="callback-reports")
            tg.create_task(self._retry_loop(), name="callback-ends")

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except (RedisError, ConnectionError, TimeoutError, OSError) as exc:  # next sweep
                log.warning("callback.sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(self.settings.interval_s)

    async def _retry_loop(self) -> None:
        """Held ends, sent again as they fall due (every instance: not only the lease holder, so a
        controller that loses the lease and takes it back, or never held it, keeps them)."""
        while True:
            await asyncio.sleep(self.settings.end_retry_first_s)
            await self.retry_ends()

    async def _inbox_loop(self) -> None:
        while True:
            headers, talk_s = await self.inbox.get()
            for _ in range(5):
                try:
                    await self.handle(headers, talk_s)
                    break
                except (RedisError, ConnectionError, TimeoutError, OSError) as exc:  # Redis away
                    log.warning("callback.report_failed", error=type(exc).__name__)
                    await asyncio.sleep(0.5)


def _stamp(headers: Mapping[str, str]) -> float | None:
    """An event's ``Timestamp`` (``timestampevents = yes``: seconds.microseconds), if any."""
    try:
        value = float(headers.get("Timestamp", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def talk_seconds(answered: tuple[float | None, float], ended: tuple[float | None, float]) -> float:
    """Seconds from the caller's answer to the dial's end, each ``(Timestamp or None, received)``:
    on Asterisk's clock when both events carry it, else on the receive times (never negative)."""
    (stamp_a, received_a), (stamp_b, received_b) = answered, ended
    if stamp_a is not None and stamp_b is not None:
        return max(0.0, stamp_b - stamp_a)
    return max(0.0, received_b - received_a)
