"""Where finished contact records go: a sink, and the pump that feeds it from a builder.

:class:`RecordSink` is the one thing the controller needs of a destination: ``append`` a
record (each version of it once). The durable destination is the per-centre Redis Stream
(idempotent by record id and version); :class:`MemorySink` (tests) and :class:`JsonlSink`
(one JSON line per record version, for the demonstration and for a controller run without
that stream) implement the same protocol.

:class:`RecordPump` owns one :class:`~records.builder.RecordBuilder`: the controller's facts
and the AMI tap go into it without I/O (a fact that is not well formed is counted and
dropped: a call never stops for its record), and a background task asks it every
``interval_s`` (``serve``: 0.1 s) which records are due and appends them to the sink (in
chunks, when the sink has ``append_many``). With an :class:`~records.appender.Ownership`, only
the records of calls this controller owns are appended (several controllers, one Asterisk).
A sink that fails keeps the record in the pump's backlog and the next round tries again,
so the call path never waits for a sink. On shutdown :meth:`RecordPump.close` hands over
what is due and then every call still open, as ``complete: false`` (see
``docs/contact-records.md``). With an inbox (``records.dispositions``), each round also
applies the dispositions asked for over HTTP to the calls this controller emits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from records.builder import NotALinkedid, RecordBuilder
from records.facts import IvrFact
from records.model import ContactRecord
from routing.core.linkedid import FIX, SYSTEM_NAME_MAX
from routing.masking import shown_escaped

if TYPE_CHECKING:
    from records.appender import Ownership
    from records.journal import FactJournal, Replayed

log = logging.getLogger("records.outbox")

BACKLOG_MAX = 100_000
"""Records held while the sink fails (Redis down): about 33 minutes at 50 calls a second, a few
hundred megabytes. Beyond this the oldest are dropped, counted and logged (``records.backlog_full``,
an error, every 1,000 records dropped); ``records.backlog_growing`` warns at half of it."""

RESTARTED = "the controller was restarted and did not see this call end: its record may lack the end"

REPLAYED_OPEN_S = 60.0
"""After a replay, a call whose end is not seen within this long is closed (``complete`` false,
with :data:`RESTARTED` in its problems): it most likely ended while the controller was down. If
its end is seen later, that makes the next version."""

TIDY_S = 1.0
"""How often the pump lets the journal rotate and delete the segments it no longer needs."""

FOREIGN_ID_WARN_S = 60.0
"""At most one ``records.id_not_linkedid`` warning this often: an Asterisk whose ``systemname``
makes ids callrouter cannot file would otherwise log one line per fact of every call."""

CHUNK = 500
"""Records handed to a sink that takes batches (``append_many``) in one go: one round trip."""


class Inbox(Protocol):
    """Requests read in the pump's background round (``records.dispositions.DispositionInbox``)."""

    async def round(self, pump: RecordPump) -> int: ...


class RecordSink(Protocol):
    """Where finished records (and their later versions) are appended."""

    async def append(self, record: ContactRecord) -> None: ...


class MemorySink:
    """Keeps every record appended, in order (tests)."""

    def __init__(self) -> None:
        self.records: list[ContactRecord] = []

    async def append(self, record: ContactRecord) -> None:
        self.records.append(record)


class JsonlSink:
    """Appends each record as one JSON line to ``path`` (created with its folder, mode 0600:
    the lines hold complete caller numbers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        self.count = 0

    async def append(self, record: ContactRecord) -> None:
        line = record.model_dump_json() + "\n"
        with self.path.open("a", encoding="utf-8") as out:  # a few hundred bytes: no thread needed
            out.write(line)
        self.count += 1

    async def append_many(self, records: Sequence[ContactRecord]) -> None:
        lines = "".join(record.model_dump_json() + "\n" for record in records)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(lines)
        self.count += len(records)


def foreign_name(call_id: str) -> str:
    """What a log may show of an id that is not a Linkedid: the part before its last ``-`` (its
    Asterisk's ``systemname``; the digits after it say nothing), cut to 64 characters, escaped
    (a quoted Python literal: no control character, no line break) and any run of 7 or more
    digits masked as caller numbers are (:func:`routing.masking.shown_escaped`)."""
    name, dash, _ = call_id.rpartition("-")
    return shown_escaped(name if dash else call_id, SYSTEM_NAME_MAX)


class RecordPump:
    """Facts and AMI events into one builder; due records out to a sink (see the module doc)."""

    def __init__(
        self,
        builder: RecordBuilder,
        sink: RecordSink,
        *,
        clock: Callable[[], float] = time.time,
        interval_s: float = 1.0,
        owner: Ownership | None = None,
        journal: FactJournal | None = None,
        inbox: Inbox | None = None,
    ) -> None:
        self.builder, self.sink, self.clock, self.interval_s = builder, sink, clock, interval_s
        self.owner, self.journal, self.inbox = owner, journal, inbox
        self._adopt: tuple[list[str], set[str]] | None = None
        self._tidied_at = float("-inf")
        self.backlog: deque[ContactRecord] = deque()
        self.parked: list[ContactRecord] = []
        self.skipped = 0
        self._warned_growing = False
        self.appended = 0
        self.refused_facts = 0
        self.foreign_ids = 0  # of refused_facts: those of calls whose id is not a Linkedid
        self._foreign_unsaid = 0
        self._foreign_said_at = float("-inf")
        self.sink_failures = 0
        self.dropped = 0

    # --- in: cheap, synchronous, never raises --------------------------------------------------

    def fact(self, fact: IvrFact) -> None:
        """A fact from the controller (a malformed one is counted and dropped)."""
        try:
            self.builder.feed_ivr(fact)
            if self.owner is not None:
                self.owner.served(fact.call_id, fact)
            if self.journal is not None:
                self.journal.fact(fact)
        except NotALinkedid as exc:
            self._foreign_id(exc.call_id)
        except ValueError as exc:
            self.refused_facts += 1
            log.warning("records.fact_refused %s", str(exc)[:200])
        except Exception as exc:  # a record is never worth failing a call for
            self.refused_facts += 1
            log.warning("records.fact_failed %s", type(exc).__name__)

    def _foreign_id(self, call_id: str) -> None:
        """A fact of a call whose id is not a Linkedid (its Asterisk's ``systemname``): counted,
        and said once per :data:`FOREIGN_ID_WARN_S` with the fix, not once per fact or call."""
        self.refused_facts += 1
        self.foreign_ids += 1
        self._foreign_unsaid += 1
        now = self.clock()
        if now - self._foreign_said_at < FOREIGN_ID_WARN_S:
            return
        log.warning(
            "records.id_not_linkedid facts=%d system_name=%s: these calls are routed but get no "
            "contact record; %s",
            self._foreign_unsaid, foreign_name(call_id), FIX,
        )  # fmt: skip
        self._foreign_said_at, self._foreign_unsaid = now, 0

    def ami(self, headers: Mapping[str, str], received_at: float) -> None:
        """An AMI event as Asterisk sent it (the consumer's ``on_message`` tap)."""
        try:
            call_id = self.builder.feed_ami(headers, received_at)
            if call_id is not None and self.journal is not None:
                self.journal.ami(call_id, headers, received_at)
        except Exception as exc:  # a record is never worth losing the AMI stream
            log.warning("records.ami_event_failed %s", type(exc).__name__)

    def replay(self, found: Replayed) -> int:
        """On start, before any call: feed what a fact journal kept (the controller was killed
        with it). Calls whose end is known become due at once; the others are closed after
        :data:`REPLAYED_OPEN_S` unless their end is seen. Returns how many calls were fed."""
        ids: set[str] = set()
        for entry in found.facts:
            try:
                if isinstance(entry, tuple):
                    call_id = self.builder.feed_ami(entry[0], entry[1])
                else:
                    self.builder.feed_ivr(entry)
                    call_id = entry.call_id
                    if self.owner is not None:
                        self.owner.served(call_id)
            except Exception as exc:  # one bad entry does not stop the replay
                log.warning("records.replay_entry_failed %s", type(exc).__name__)
                continue
            if call_id is not None:
                ids.add(call_id)
        self.builder.restarted(self.clock() + REPLAYED_OPEN_S, RESTARTED)
        self._adopt = (sorted(ids), found.instances)
        if self.journal is not None:
            self.journal.replayed(ids)
        return len(ids)

    # --- out -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Every ``interval_s``: hand the due records to the sink. Until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush_due()

    async def flush_due(self) -> int:
        """Hand over the records due now (and any backlog); returns how many were appended."""
        if self.owner is not None and self._adopt is not None:
            try:  # first the calls the controller's previous instance had claimed
                await self.owner.adopt(*self._adopt)
                self._adopt = None
            except Exception as exc:  # Redis down: nothing is decided until this is done
                log.warning("records.adopt_failed %s", type(exc).__name__)
                return 0
        if self.owner is not None:
            try:  # claim the calls served since the last round, due or not
                await self.owner.claim()
                self._take_forwarded(await self.owner.take_forwarded())
            except Exception as exc:  # Redis down: claimed next round; their records wait
                log.warning("records.claim_failed %s", type(exc).__name__)
        if self.inbox is not None:
            try:  # dispositions asked for over HTTP: into the builder, like an AMI UserEvent's
                await self.inbox.round(self)
            except Exception as exc:  # Redis down: they stay pending and are read next round
                log.warning("records.dispositions_failed %s", type(exc).__name__)
        parked, self.parked = self.parked, []
        self._hold(parked)
        self._hold(self.builder.due(self.clock()))
        done = await self._drain()
        self._tidy()
        return done

    async def close(self) -> int:
        """On shutdown: what is due, then every call still open (``complete: false``)."""
        now = self.clock()
        self._hold(self.builder.due(now))
        self._hold(self.builder.flush(now))
        done = await self._drain()
        # Parked records are other controllers' to emit (or wait for a lease take-over): not
        # this stop's to lose. The journal still keeps them for the next start.
        left = len(self.backlog)
        if self.journal is not None:
            if not left and not self.parked:
                self.journal.remove_all()  # everything handed over: nothing to replay
            else:  # the stream did not take everything: the next start replays it
                self.journal.close()
                if left:
                    log.warning(
                        "records.left_for_replay records=%d (the next start replays them from the journal)",
                        left,
                    )
        elif left:  # said loudly: without a journal nothing brings these back
            log.error(
                "records.lost records=%d (the records stream did not take them at shutdown and there is "
                "no fact journal to replay them from: set records.journal)",
                left,
            )
        return done

    def _take_forwarded(self, facts: list[IvrFact]) -> None:
        """Facts another controller learnt of calls this one owns (a later FastAGI request
        that reached it): into the builder, and the journal."""
        for fact in facts:
            try:
                self.builder.feed_ivr(fact)
                if self.journal is not None:
                    self.journal.fact(fact)
            except NotALinkedid as exc:
                self._foreign_id(exc.call_id)
            except Exception as exc:  # as fact(): counted, never worth failing the round
                self.refused_facts += 1
                log.warning("records.fact_refused %s", str(exc)[:200])

    def _tidy(self) -> None:
        """At most every :data:`TIDY_S`: the journal drops segments whose calls are all handed over."""
        if self.journal is None or self.clock() - self._tidied_at < TIDY_S:
            return
        self._tidied_at = self.clock()
        held = {r.id for r in self.backlog} | {r.id for r in self.parked}
        self.journal.tidy(lambda call_id: self.builder.holds(call_id) or call_id in held)

    def _hold(self, records: list[ContactRecord]) -> None:
        self.backlog.extend(records)
        if len(self.backlog) > BACKLOG_MAX // 2 and not self._warned_growing:
            self._warned_growing = True
            log.warning("records.backlog_growing backlog=%d max=%d", len(self.backlog), BACKLOG_MAX)
        elif len(self.backlog) < BACKLOG_MAX // 4:
            self._warned_growing = False
        while len(self.backlog) > BACKLOG_MAX:
            self.backlog.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("records.backlog_full dropped=%d", self.dropped)

    async def _drain(self) -> int:
        """The backlog to the sink in order, a chunk at a time; a failure stops the round and
        keeps the chunk (retried next round: appends to the stream are idempotent)."""
        done = 0
        many: Callable[[Sequence[ContactRecord]], Awaitable[None]] | None = getattr(
            self.sink, "append_many", None
        )
        while self.backlog:
            chunk = list(islice(self.backlog, CHUNK if many is not None else 1))
            emit, park, skip = chunk, [], []
            try:
                if self.owner is not None:
                    decision = await self.owner.select(chunk)
                    emit, park, skip = decision.emit, decision.park, decision.skip
                if many is not None:
                    await many(emit)
                else:
                    for record in emit:
                        await self.sink.append(record)
            except Exception as exc:  # the sink (or the claim) is retried next round
                self.sink_failures += 1
                log.warning("records.sink_failed %s backlog=%d", type(exc).__name__, len(self.backlog))
                return done
            for _ in chunk:
                self.backlog.popleft()
            self.parked.extend(park)  # asked again next round
            self.skipped += len(skip)
            self.appended += len(emit)
            done += len(emit)
        return done


async def stop_pump(pump: RecordPump, task: asyncio.Task[None] | None) -> int:
    """Cancel the pump's task, then close it (hand over everything it holds)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return await pump.close()
