"""Dispositions asked for over HTTP (``records.dispositions``) on a real Redis: applied by the
controller that emits the call's record, through its builder, so no version is lost; handed to
the owner by another controller; made from the archive when no controller holds the call; the
same request twice is one version."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from records.appender import Ownership, StreamSink, envelope_of
from records.archive import Archive
from records.builder import RecordBuilder
from records.dispositions import (
    ARCHIVE,
    ArchiveApplier,
    DispositionInbox,
    Request,
    read_status,
    route,
    submit,
)
from records.facts import SurveyAnswered
from records.model import ContactRecord
from records.outbox import RecordPump
from records.stream import RecordStream
from routing.redis_keys import RedisKeys
from tests.records.factory import record
from tests.records.support import CENTRE, KEY, checked
from tests.records.test_appender import entries, keys, seen_on_ami
from tests.records.test_outbox import T0, Clock, arrive, hang_up
from tests.support.redis_server import RedisServer

CALL = "1795533337.1"
REASONS = ("chasing-progress", "duplicate")


def controller(
    redis: Redis, k: RedisKeys, name: str, clock: Clock, *, holding: bool = False
) -> tuple[RecordPump, StreamSink, DispositionInbox]:
    """A controller's pump as ``serve`` makes it (the tenant's avoidable reasons in the builder)
    with its dispositions inbox, read every round (``serve``: every 0.5 s)."""
    sink = StreamSink(RecordStream(redis, CENTRE, keys=k))
    owner = Ownership(redis, CENTRE, name, lease_holder=lambda: holding, keys=k, clock=clock, park_s=10)
    builder = RecordBuilder(CENTRE, KEY, grace_s=0.5, avoidable_reasons=lambda _tenant: REASONS)
    inbox = DispositionInbox(owner, clock=clock, every_s=0)
    return RecordPump(builder, sink, clock=clock, owner=owner, inbox=inbox), sink, inbox


def asked(kind: str = "avoidable", *, at: float, rid: str | None = None, call: str = CALL) -> Request:
    reason = "chasing-progress" if kind == "avoidable" else None
    team = "council-tax" if kind == "back_office" else None
    return Request(rid or secrets.token_urlsafe(16), "harborough", call, kind, team, reason, "hsup", at)  # type: ignore[arg-type]


async def ask(redis: Redis, k: RedisKeys, request: Request) -> None:
    _, new = await submit(redis, CENTRE, request, request.at, keys=k)
    assert new


async def versions(redis: Redis, k: RedisKeys, call: str = CALL) -> list[tuple[int, dict[str, object]]]:
    return [(v, p) for rid, v, p in await entries(redis, k) if rid == call]


def disposition_of(payload: dict[str, object]) -> object:
    found = payload["disposition"]
    assert isinstance(found, dict)
    return (found["kind"], found["reason"], found["by"])


def test_the_route_rule() -> None:
    assert route("a", "a", False, True, False) == ("apply", None)
    assert route("a", "a", False, False, True) == ("archive", None)  # forgotten: kept no longer
    assert route("a", "b", True, True, True) == ("hand", "b")
    assert route("a", "b", False, True, True) == ("archive", None)  # its owner stopped
    assert route("a", None, False, True, True) == ("apply", None)  # the holder claims it when due
    assert route("a", None, False, True, False) == ("wait", None)
    assert route("a", None, False, False, True) == ("archive", None)


async def test_posted_just_after_hang_up_it_is_in_the_first_version(redis_server: RedisServer) -> None:
    """0.1 s after hang-up, within the grace: the builder folds it into version 1, as it does the
    AMI CallDisposition; its status names version 1."""
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        pump, sink, _ = controller(redis, k, "ctl-a", clock)
        arrive(pump, CALL, T0)
        hang_up(pump, CALL, T0 + 5)
        request = asked(at=T0 + 5.1)
        await ask(redis, k, request)
        clock.now = T0 + 5.2
        assert await pump.flush_due() == 0
        clock.now = T0 + 5.8
        assert await pump.flush_due() == 1
        [(version, payload)] = await versions(redis, k)
        assert version == 1
        assert disposition_of(payload) == ("avoidable", "chasing-progress", "hsup")
        status = await read_status(redis, CENTRE, request.request_id, k)
        assert status is not None
        assert (status.state, status.version, status.changed, status.applied_by) == (
            "applied",
            1,
            True,
            "ctl-a",
        )
        assert sink.already_in == 0


async def test_posted_before_version_1_is_archived_makes_version_2_and_nothing_is_lost(
    redis_server: RedisServer,
) -> None:
    """(a) Version 1 is in the stream, not archived (no delivery worker): no 409, the controller
    makes version 2 with the disposition. (b) Then a survey answer: version 3 holds both."""
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        pump, sink, _ = controller(redis, k, "ctl-a", clock)
        arrive(pump, CALL, T0)
        hang_up(pump, CALL, T0 + 5)
        clock.now = T0 + 5.6
        assert await pump.flush_due() == 1  # version 1, without a disposition
        request = asked("back_office", at=T0 + 5.7)
        await ask(redis, k, request)
        clock.now = T0 + 5.8
        await pump.flush_due()  # read and applied
        status = await read_status(redis, CENTRE, request.request_id, k)
        assert status is not None
        assert (status.state, status.version) == ("applied", 2)
        clock.now = T0 + 6.4
        assert await pump.flush_due() == 1
        pump.fact(SurveyAnswered(CALL, T0 + 30, 1))  # the post-call survey, later
        clock.now = T0 + 30.6
        assert await pump.flush_due() == 1
        found = await versions(redis, k)
        assert [v for v, _ in found] == [1, 2, 3]
        assert found[0][1]["disposition"] is None
        assert disposition_of(found[1][1]) == ("back_office", None, "hsup")
        assert (disposition_of(found[2][1]), found[2][1]["survey"]) == (("back_office", None, "hsup"), 1)
        assert sink.already_in == 0  # no version refused: none lost
        for _, payload in found:
            checked(ContactRecord.model_validate_json(json.dumps(payload)))


async def test_with_two_controllers_the_owner_applies_it_once(redis_server: RedisServer) -> None:
    """(c) A served the call (it owns it); B, the AMI lease holder, built it from AMI too. B reads
    the request first and hands it to A; A applies it; version 2 is appended once."""
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        a, _, a_inbox = controller(redis, k, "ctl-a", clock)
        b, _, b_inbox = controller(redis, k, "ctl-b", clock, holding=True)
        arrive(a, CALL, T0)
        seen_on_ami(a, CALL)
        seen_on_ami(b, CALL)
        await a.flush_due()  # A claims the call
        for pump in (a, b):
            hang_up(pump, CALL, T0 + 5)
        clock.now = T0 + 5.6
        assert await a.flush_due() == 1
        await b.flush_due()
        request = asked("complaint", at=T0 + 8)
        await ask(redis, k, request)
        clock.now = T0 + 8.1
        await b.flush_due()  # B reads it first: A owns the call and is alive
        assert (b_inbox.applied, b_inbox.handed) == (0, 1)
        for step in range(6):
            clock.now = T0 + 8.2 + step * 0.2
            await a.flush_due()
            await b.flush_due()
        assert (a_inbox.applied, b_inbox.applied) == (1, 0)
        assert [v for v, _ in await versions(redis, k)] == [1, 2]
        status = await read_status(redis, CENTRE, request.request_id, k)
        assert status is not None
        assert (status.state, status.version, status.applied_by) == ("applied", 2, "ctl-a")
        pending = await redis.xpending(k.record_dispositions(CENTRE), "apply")
        assert pending["pending"] == 0


def archived(root: Path, call: str, arrived: datetime, *more: ContactRecord) -> Archive:
    archive = Archive(root)
    archive.append_many([record(call, arrived), *more])
    return archive


def applier(redis: Redis, k: RedisKeys, archive: Archive, clock: Clock) -> ArchiveApplier:
    async def latest(tenant: str, record_id: str) -> ContactRecord | None:
        day = datetime.fromtimestamp(int(record_id.split(".", maxsplit=1)[0]), UTC).date()
        found = [r for r in archive.versions(tenant, day) if r.id == record_id]
        return max(found, key=lambda r: r.version) if found else None

    async def reasons(tenant: str) -> tuple[str, ...]:
        return REASONS

    return ArchiveApplier(redis, CENTRE, latest, reasons, keys=k, clock=clock, stuck_s=0)


async def test_a_call_no_controller_holds_gets_its_version_from_the_archive(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """(d) An old record (the builder kept it no longer): the controller hands the request to the
    archive consumer, which makes version 2 from the archived version 1; the same request read
    again later (a reader stopped before acknowledging) makes nothing more."""
    k, clock = keys(), Clock()
    old = "1795400000.7"
    arrived = datetime.fromtimestamp(1795400000, UTC)
    async with Redis.from_url(redis_server.url) as redis:
        archive = archived(tmp_path / "archive", old, arrived)
        pump, _, inbox = controller(redis, k, "ctl-a", clock, holding=True)
        request = asked("avoidable", at=T0 + 1, call=old)
        await ask(redis, k, request)
        await pump.flush_due()
        assert inbox.handed == 1
        consumers = await redis.xinfo_consumers(k.record_dispositions(CENTRE), "apply")
        assert {c["name"]: c["pending"] for c in consumers}[ARCHIVE.encode()] == 1
        fallback = applier(redis, k, archive, clock)
        assert await fallback.round() == 1
        [(version, payload)] = await versions(redis, k, old)
        assert version == 2
        assert disposition_of(payload) == ("avoidable", "chasing-progress", "hsup")
        status = await read_status(redis, CENTRE, request.request_id, k)
        assert status is not None
        assert (status.state, status.version, status.applied_by) == ("applied", 2, ARCHIVE)
        # the same entry delivered again: its status is final, nothing is made
        await redis.xadd(k.record_dispositions(CENTRE), {"r": request.request_id, "q": request.to_json()})
        await pump.flush_due()
        await fallback.round()
        assert [v for v, _ in await versions(redis, k, old)] == [2]


async def test_the_archive_fallback_waits_for_a_version_on_its_way_and_runs_without_controllers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """No controller running: the archive consumer reads the request itself. Version 2 is in
    the stream but not yet archived: it waits (no 409, nothing refused); once version 2 is
    archived, it makes version 3 from it."""
    k, clock = keys(), Clock()
    old = "1795400000.8"
    arrived = datetime.fromtimestamp(1795400000, UTC)
    async with Redis.from_url(redis_server.url) as redis:
        archive = archived(tmp_path / "archive", old, arrived)
        second = record(old, arrived, version=2, survey=1)
        stream = RecordStream(redis, CENTRE, keys=k)
        assert await stream.append(envelope_of(record(old, arrived), CENTRE)) is not None
        assert await stream.append(envelope_of(second, CENTRE)) is not None
        request = asked("resolved", at=T0 + 1, call=old)
        await ask(redis, k, request)
        fallback = applier(redis, k, archive, clock)
        assert await fallback.round() == 0
        status = await read_status(redis, CENTRE, request.request_id, k)
        assert status is not None
        assert status.state == "pending"
        archive.append_many([second])
        assert await fallback.round() == 1
        found = await versions(redis, k, old)
        assert [v for v, _ in found] == [1, 2, 3]
        assert (found[2][1]["survey"], disposition_of(found[2][1])) == (1, ("resolved", None, "hsup"))


async def test_the_same_request_twice_is_one_version(redis_server: RedisServer) -> None:
    """(e) The same request id submitted twice is one entry; applied, then read again (as after a
    reader stopped before acknowledging), it changes nothing."""
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        pump, sink, inbox = controller(redis, k, "ctl-a", clock)
        arrive(pump, CALL, T0)
        hang_up(pump, CALL, T0 + 5)
        clock.now = T0 + 5.6
        await pump.flush_due()
        request = asked("resolved", at=T0 + 6, rid="same-request-id-000001")
        _, new = await submit(redis, CENTRE, request, T0 + 6, keys=k)
        again, new_again = await submit(redis, CENTRE, request, T0 + 6.5, keys=k)
        assert (new, new_again, again.state) == (True, False, "pending")
        assert await redis.xlen(k.record_dispositions(CENTRE)) == 1
        clock.now = T0 + 6.1
        await pump.flush_due()
        await redis.xadd(k.record_dispositions(CENTRE), {"r": request.request_id, "q": request.to_json()})
        for step in range(5):
            clock.now = T0 + 6.2 + step * 0.3
            await pump.flush_due()
        assert [v for v, _ in await versions(redis, k)] == [1, 2]
        assert inbox.applied == 1
        # a second request with the same disposition: applied, no version (the record holds it)
        other = asked("resolved", at=T0 + 9)
        await ask(redis, k, other)
        clock.now = T0 + 9.1
        await pump.flush_due()
        clock.now = T0 + 10
        await pump.flush_due()
        status_other = await read_status(redis, CENTRE, other.request_id, k)
        assert status_other is not None
        assert (status_other.state, status_other.version, status_other.changed) == ("applied", 2, False)
        assert [v for v, _ in await versions(redis, k)] == [1, 2]
        assert sink.already_in == 0


async def test_a_call_of_another_tenant_is_refused(redis_server: RedisServer) -> None:
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        pump, _, _ = controller(redis, k, "ctl-a", clock)
        arrive(pump, CALL, T0)  # a harborough call
        await pump.flush_due()
        request = Request(
            "other-tenant-request-01", "charnwood", CALL, "resolved", None, None, "csup", T0 + 1
        )
        await ask(redis, k, request)
        clock.now = T0 + 1.1
        await pump.flush_due()
        status = await read_status(redis, CENTRE, request.request_id, k)
        assert status is not None
        assert (status.state, status.detail) == ("refused", "the call is not one of this tenant's")
        held = pump.builder.record(CALL)
        assert held is not None
        assert held.disposition is None


async def test_serve_wires_the_inbox_into_its_record_pump(redis_server: RedisServer) -> None:
    """``serve``'s pump reads the dispositions stream as its instance and applies what it emits."""
    from callrouter.service import ServeOptions, record_pump
    from ivr.controller import PlanHolder
    from tests.controller.conftest import EXAMPLE

    start = time.time() - 10  # serve's clock is the real one: a call that ended seconds ago
    call = f"{int(start)}.{uuid.uuid4().int % 10**9}"
    k = RedisKeys()  # serve's own key names
    async with Redis.from_url(redis_server.url) as redis:
        pump = record_pump(
            ServeOptions(plan=EXAMPLE, records_key=KEY), PlanHolder.load(EXAMPLE), redis, "ctl-s"
        )
        assert pump is not None
        assert isinstance(pump.inbox, DispositionInbox)
        assert pump.inbox.reader.consumer == "ctl-s"
        arrive(pump, call, start)
        hang_up(pump, call, start + 5)
        await pump.flush_due()  # past the grace: version 1 at once
        request = asked("avoidable", at=start + 6, call=call)
        await ask(redis, k, request)
        await asyncio.sleep(0.6)  # the inbox is read every 0.5 s
        await pump.flush_due()  # applied
        await pump.flush_due()  # version 2: its grace is long past on the pump's clock
        found = await versions(redis, k, call)
        assert [v for v, _ in found] == [1, 2]
        assert disposition_of(found[1][1]) == ("avoidable", "chasing-progress", "hsup")
