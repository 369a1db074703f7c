"""``serve``'s records into the records stream: each version appended once, records waiting in
the pump while Redis is down, and which of several controllers emits a call's record."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from records import outbox
from records.appender import ORPHAN_WAIT_S, ORPHANED, Ownership, StreamSink, TeeSink, envelope_of
from records.builder import RecordBuilder
from records.model import ContactRecord
from records.outbox import JsonlSink, RecordPump
from records.stream import RecordStream, parse_entry
from routing.redis_keys import RedisKeys
from tests.records.support import CENTRE, KEY, checked
from tests.records.test_outbox import T0, Clock, arrive, hang_up
from tests.support.redis_server import RedisServer, free_port, start_redis


def keys() -> RedisKeys:
    return RedisKeys(prefix=f"t{uuid.uuid4().hex[:8]}:")


class Holder:
    """Whether this controller holds the AMI writer lease (tests flip it)."""

    def __init__(self, holding: bool) -> None:
        self.holding = holding

    def __call__(self) -> bool:
        return self.holding


def controller(
    redis: Redis, k: RedisKeys, name: str, clock: Clock, holding: bool = False
) -> tuple[RecordPump, StreamSink, Holder]:
    sink = StreamSink(RecordStream(redis, CENTRE, keys=k))
    holder = Holder(holding)
    owner = Ownership(redis, CENTRE, name, lease_holder=holder, keys=k, clock=clock, park_s=10)
    pump = RecordPump(RecordBuilder(CENTRE, KEY, grace_s=0.5), sink, clock=clock, owner=owner)
    return pump, sink, holder


def seen_on_ami(pump: RecordPump, call: str) -> None:
    """A queue call as every controller's AMI consumer sees it (no facts: no FastAGI here)."""
    for event in (
        {
            "Event": "Newchannel",
            "Channel": "PJSIP/sipp-1",
            "CallerIDNum": "07700900123",
            "Exten": "01632960001",
        },
        {"Event": "QueueCallerJoin", "Channel": "PJSIP/sipp-1", "Queue": "hdc-waste", "Position": "1"},
    ):
        pump.ami({**event, "Uniqueid": call, "Linkedid": call}, T0)


async def entries(redis: Redis, k: RedisKeys) -> list[tuple[str, int, dict[str, object]]]:
    found = []
    for sid, fields in await redis.xrange(k.records_stream(CENTRE)):
        envelope = parse_entry(sid, fields).envelope
        found.append((envelope.record_id, envelope.version, envelope.payload))
    return found


async def test_each_version_is_appended_once_as_its_envelope(redis_server: RedisServer) -> None:
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        pump, sink, _ = controller(redis, k, "ctl-a", clock)
        arrive(pump, "1795533337.1", T0)
        hang_up(pump, "1795533337.1", T0 + 5)
        clock.now = T0 + 5.6
        assert await pump.flush_due() == 1
        record = pump.builder.record("1795533337.1")
        assert record is not None
        assert await sink.stream.append(envelope_of(record, CENTRE)) is None  # already in
        [(rid, version, payload)] = await entries(redis, k)
        assert (rid, version, payload["tenant"]) == ("1795533337.1", 1, "harborough")
        assert payload["ivr"]["menus"][0]["menu"] == "main"  # type: ignore[index]
        checked(record)


async def test_redis_down_keeps_the_records_in_the_pump_until_it_is_back(tmp_path: Path) -> None:
    """Redis stopped: the records wait in the pump's backlog (the claim and the append fail);
    Redis back on the same port: every one of them is appended, once."""
    port, k, clock = free_port(), keys(), Clock()
    server = start_redis(port, tmp_path, "--save", "", "--appendonly", "no", max_lifetime_s=120)
    redis = Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=1)
    try:
        pump, _, _ = controller(redis, k, "ctl-a", clock)
        arrive(pump, "1795533337.1", T0)
        await pump.flush_due()  # claimed while Redis was up
        server.stop()
        arrive(pump, "1795533337.2", T0 + 1)  # claimed only once Redis is back
        for n in (1, 2):
            hang_up(pump, f"1795533337.{n}", T0 + 5)
        clock.now = T0 + 6
        assert await pump.flush_due() == 0
        assert await pump.flush_due() == 0
        assert (len(pump.backlog), pump.sink_failures) == (2, 2)
        server = start_redis(port, tmp_path, "--save", "", "--appendonly", "no", max_lifetime_s=120)
        assert await pump.flush_due() == 2
        assert [(r, v) for r, v, _ in await entries(redis, k)] == [("1795533337.1", 1), ("1795533337.2", 1)]
        assert not pump.backlog
    finally:
        await redis.aclose()
        server.stop()


async def test_only_the_controller_that_served_the_call_emits_it(redis_server: RedisServer) -> None:
    """Both controllers see the call on AMI; only A served it (its facts): A claims the Linkedid
    and emits; B (the AMI lease holder, even) finds A's claim, waits, finds A alive and skips."""
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        a, _, _ = controller(redis, k, "ctl-a", clock)
        b, _, _ = controller(redis, k, "ctl-b", clock, holding=True)
        arrive(a, "1795533337.1", T0)  # AMI and facts
        seen_on_ami(a, "1795533337.1")
        seen_on_ami(b, "1795533337.1")
        await a.flush_due()
        await b.flush_due()
        for pump in (a, b):
            hang_up(pump, "1795533337.1", T0 + 5)
        clock.now = T0 + 6
        assert (await b.flush_due(), len(b.parked), b.skipped) == (0, 1, 0)  # the holder waits
        assert await a.flush_due() == 1
        clock.now = T0 + 6 + ORPHAN_WAIT_S + 0.5
        assert (await b.flush_due(), len(b.parked), b.skipped) == (0, 0, 1)  # A is alive: A's
        [(_, _, payload)] = await entries(redis, k)
        assert payload["ivr"]["menus"] != []  # type: ignore[index]
        assert await redis.get(k.record_owner(CENTRE, "1795533337.1")) == b"ctl-a"


async def test_the_lease_holder_emits_the_record_of_a_controller_that_died(
    redis_server: RedisServer,
) -> None:
    """A served and claimed the call, then was killed before its record was due (no alive key
    any more): the lease holder waits, finds A dead, takes the claim and emits what AMI showed,
    saying the IVR part is missing. Once, however often it is asked."""
    k, clock = keys(), Clock()
    call = "1795533337.5"
    async with Redis.from_url(redis_server.url) as redis:
        a, _, _ = controller(redis, k, "ctl-a", clock)
        b, _, _ = controller(redis, k, "ctl-b", clock, holding=True)
        arrive(a, call, T0)
        seen_on_ami(a, call)
        seen_on_ami(b, call)
        await a.flush_due()  # A claims the call, and is alive
        assert await redis.get(k.record_owner(CENTRE, call)) == b"ctl-a"
        await redis.delete(k.record_owner_alive(CENTRE, "ctl-a"))  # A is killed: its key lapses
        hang_up(b, call, T0 + 5)
        clock.now = T0 + 6
        assert (await b.flush_due(), len(b.parked)) == (0, 1)
        clock.now = T0 + 6 + ORPHAN_WAIT_S + 0.5
        assert await b.flush_due() == 1
        [(record_id, version, payload)] = await entries(redis, k)
        assert (record_id, version) == (call, 1)
        assert ORPHANED in payload["problems"]  # type: ignore[operator]
        assert await redis.get(k.record_owner(CENTRE, call)) == b"ctl-b"
        clock.now = T0 + 20
        assert await b.flush_due() == 0
        assert len(await entries(redis, k)) == 1


async def test_a_call_nobody_served_is_emitted_by_the_lease_holder_alone(redis_server: RedisServer) -> None:
    """No facts anywhere (the fail-static path): the lease holder claims and emits; another
    controller parks its copy for a lease take-over, then drops it once the claim is there."""
    k, clock = keys(), Clock()
    call = "1795533337.9"
    async with Redis.from_url(redis_server.url) as redis:
        a, _, a_lease = controller(redis, k, "ctl-a", clock)
        b, _, _ = controller(redis, k, "ctl-b", clock, holding=True)
        for pump in (a, b):
            seen_on_ami(pump, call)
            hang_up(pump, call, T0 + 5)
        clock.now = T0 + 6
        assert await a.flush_due() == 0
        assert (len(a.parked), a.skipped) == (1, 0)  # not the holder: waits
        assert await b.flush_due() == 1
        a_lease.holding = True  # a take-over: A now finds B's claim, waits, finds B alive
        assert (await a.flush_due(), len(a.parked), a.skipped) == (0, 1, 0)
        clock.now = T0 + 6 + ORPHAN_WAIT_S + 0.5
        assert (await a.flush_due(), len(a.parked), a.skipped) == (0, 0, 1)
        assert [(r, v) for r, v, _ in await entries(redis, k)] == [(call, 1)]


async def test_a_parked_record_is_dropped_after_the_park_time_if_the_lease_never_came(
    redis_server: RedisServer,
) -> None:
    k, clock = keys(), Clock()
    call = "1795533337.8"
    async with Redis.from_url(redis_server.url) as redis:
        a, _, _ = controller(redis, k, "ctl-a", clock)
        seen_on_ami(a, call)
        hang_up(a, call, T0 + 5)
        clock.now = T0 + 6
        await a.flush_due()
        clock.now = T0 + 12
        await a.flush_due()
        assert (len(a.parked), a.skipped) == (1, 0)
        clock.now = T0 + 17
        await a.flush_due()
        assert (len(a.parked), a.skipped) == (0, 1)
        assert await entries(redis, k) == []


@pytest.mark.parametrize("lines", [1, 2])
async def test_the_outbox_beside_the_stream_gets_every_version(
    redis_server: RedisServer, tmp_path: Path, lines: int
) -> None:
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        outbox = JsonlSink(tmp_path / "records.jsonl")
        tee = TeeSink(StreamSink(RecordStream(redis, CENTRE, keys=k)), outbox)
        pump = RecordPump(RecordBuilder(CENTRE, KEY, grace_s=0.5), tee, clock=clock)
        for n in range(lines):
            arrive(pump, f"1795533337.{n}", T0)
            hang_up(pump, f"1795533337.{n}", T0 + 5)
        clock.now = T0 + 6
        assert await pump.flush_due() == lines
        assert len((tmp_path / "records.jsonl").read_text().splitlines()) == lines
        assert len(await entries(redis, k)) == lines


async def test_serve_appends_to_the_stream_with_redis_and_to_the_outbox_too_when_set(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from callrouter.service import RECORD_GRACE_S, ServeOptions, record_pump, record_sink
    from ivr.controller import PlanHolder
    from tests.controller.conftest import EXAMPLE

    async with Redis.from_url(redis_server.url) as redis:
        options = ServeOptions(plan=EXAMPLE, records_key=KEY)
        assert isinstance(record_sink(options, CENTRE, redis), StreamSink)
        with_outbox = ServeOptions(plan=EXAMPLE, records_key=KEY, records_outbox=tmp_path / "r.jsonl")
        assert isinstance(record_sink(with_outbox, CENTRE, redis), TeeSink)
        assert isinstance(record_sink(with_outbox), JsonlSink)
        pump = record_pump(options, PlanHolder.load(EXAMPLE), redis, "ctl-a", lambda: False)
        assert pump is not None
        assert pump.owner is not None
        assert (pump.builder.grace_s, pump.interval_s) == (RECORD_GRACE_S, 0.1)


async def test_past_the_backlog_bound_the_oldest_are_dropped_counted_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down for longer than the backlog holds: the newest records are kept, the oldest
    dropped (counted, an error logged); half-way a warning says the backlog is growing."""
    monkeypatch.setattr(outbox, "BACKLOG_MAX", 4)
    clock = Clock()

    class Down:
        async def append(self, record: ContactRecord) -> None:
            raise ConnectionError("Redis down")

    pump = RecordPump(RecordBuilder(CENTRE, KEY, grace_s=0.5), Down(), clock=clock)
    for n in range(6):
        arrive(pump, f"1795533337.{n}", T0)
        hang_up(pump, f"1795533337.{n}", T0 + 5)
    clock.now = T0 + 6
    with caplog.at_level(logging.WARNING, logger="records.outbox"):
        assert await pump.flush_due() == 0
    assert [r.id for r in pump.backlog] == [f"1795533337.{n}" for n in range(2, 6)]
    assert pump.dropped == 2
    assert "records.backlog_growing" in caplog.text
    assert "records.backlog_full dropped=1" in caplog.text


async def test_a_stop_does_not_call_lost_the_records_another_controller_emits(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A controller that is not the lease holder parks a queue call's record for the holder; its
    stop (no journal) hands nothing over and must not say records were lost: the holder emits."""
    k, clock = keys(), Clock()
    call = "1795533337.6"
    async with Redis.from_url(redis_server.url) as redis:
        a, _, _ = controller(redis, k, "ctl-a", clock)
        b, _, _ = controller(redis, k, "ctl-b", clock, holding=True)
        for pump in (a, b):
            seen_on_ami(pump, call)
        with caplog.at_level(logging.WARNING, logger="records.outbox"):
            assert await a.close() == 0
        assert (len(a.backlog), len(a.parked)) == (0, 1)
        assert not [
            r for r in caplog.records if r.getMessage().startswith(("records.lost", "records.left_for"))
        ]
        hang_up(b, call, T0 + 5)
        clock.now = T0 + 6
        assert await b.flush_due() == 1
        assert [(r, v) for r, v, _ in await entries(redis, k)] == [(call, 1)]
