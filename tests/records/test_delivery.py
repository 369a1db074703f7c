"""Delivery to a CRM webhook that fails in every way a CRM fails: nothing lost, nothing twice,
each contact's versions in order."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from emulator.crm import Answer
from records.delivery import trim_floor
from records.stream import Envelope, RecordStream
from tests.records.conftest import CENTRE, FAST, TENANT, Rig, envelope
from tests.support.redis_server import RedisServer

OUTAGE_RECORDS = 10_000
"""Record versions appended while the CRM is down (the issue's figure, run in full)."""


async def test_two_appenders_racing_on_one_version_make_one_entry(
    rig: Rig, redis_server: RedisServer
) -> None:
    other = Redis.from_url(redis_server.url)
    try:
        streams = [rig.stream, RecordStream(other, CENTRE, keys=rig.keys)]
        results = await asyncio.gather(
            *(streams[i % 2].append(envelope("1795000000.1", 1)) for i in range(20))
        )
        stale = await rig.stream.append(envelope("1795000000.1", 1))
        newer = await streams[1].append(envelope("1795000000.1", 2))
    finally:
        await other.aclose()
    assert sum(r is not None for r in results) == 1
    assert stale is None
    assert newer is not None
    entries = await rig.redis.xrange(rig.keys.records_stream(CENTRE))
    assert [Envelope.from_json(e[1][b"e"]).key for e in entries] == ["1795000000.1:1", "1795000000.1:2"]


# Thousands of records through a real outage: the bound is for a loaded CI machine.
@pytest.mark.timeout(180)
async def test_crm_down_for_ten_thousand_records_then_back_loses_nothing(rig: Rig) -> None:
    rng = random.Random(8)
    versions: list[tuple[str, int]] = []
    contacts = 0
    while len(versions) < OUTAGE_RECORDS:  # a quarter of the contacts get a later version
        contacts += 1
        rid = f"1795000000.{contacts}"
        versions += [(rid, v) for v in range(1, 3 if rng.random() < 0.25 else 2)]
    versions = versions[:OUTAGE_RECORDS]
    await rig.crm.stop()  # down: connection refused
    worker = rig.start_worker({f"{TENANT}/crm": rig.webhook()}).workers[0]
    for start in range(0, len(versions), 1000):
        assert None not in await rig.stream.append_many(
            [envelope(r, v) for r, v in versions[start : start + 1000]]
        )
    await asyncio.sleep(1.5)  # the outage
    deadline = time.monotonic() + 30  # a loaded machine may take longer to make the first attempts
    while (stats := await rig.stats(f"{TENANT}/crm"))["breaker"] != "open":  # as records status sees it
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.1)
    attempts_while_down = worker.attempts_failed_total
    await rig.crm.start()  # back, on the same port
    await rig.crm.wait_for(OUTAGE_RECORDS, timeout_s=60)
    await asyncio.sleep(0.3)
    assert {k for k, _, _ in rig.crm.accepted} == {f"{r}:{v}" for r, v in versions}
    assert len(rig.crm.accepted) == OUTAGE_RECORDS
    assert rig.crm.out_of_order() == []
    assert rig.crm.bad_signatures == 0
    # the breaker held back: the first concurrent sends and a probe per cool-down, not one
    # attempt per record per backoff
    assert 0 < attempts_while_down < 200
    assert stats["breaker"] == "open"
    assert int(stats["attempts_failed"]) > 0
    assert stats["last_error"] == "ClientConnectorError"


async def test_a_crm_answering_500_is_retried_and_versions_keep_their_order(rig: Rig) -> None:
    rig.crm.script = [Answer(500, body="database locked")] * 6
    rig.start_worker({f"{TENANT}/crm": rig.webhook()})
    await rig.stream.append_many(
        [envelope("r.1", 1), envelope("r.1", 2), envelope("r.2", 1), envelope("r.1", 3)]
    )
    await rig.crm.wait_for(4, timeout_s=20)
    assert [k for k, _, _ in rig.crm.accepted if k.startswith("r.1")] == ["r.1:1", "r.1:2", "r.1:3"]
    assert rig.crm.script == []


async def test_429_with_retry_after_pauses_the_sink_for_that_long(rig: Rig) -> None:
    rig.crm.script = [Answer(429, {"Retry-After": "1"}, "slow down")]
    rig.start_worker({f"{TENANT}/crm": rig.webhook()})
    began = time.monotonic()
    await rig.stream.append(envelope("r.1"))
    await rig.crm.wait_for(1, timeout_s=10)
    assert time.monotonic() - began >= 1.0
    assert rig.crm.requests == 2


async def test_400_is_dead_lettered_at_once_with_the_answer_and_the_rest_goes_on(
    rig: Rig, logs: Callable[[], str]
) -> None:
    rig.crm.refuse = {"r.1:1"}
    rig.start_worker({f"{TENANT}/crm": rig.webhook()})
    caller = "07700900123"
    await rig.stream.append_many([envelope("r.1", 1, caller=caller), envelope("r.1", 2), envelope("r.2", 1)])
    await rig.crm.wait_for(2, timeout_s=10)
    dead = await rig.wait_for_dead_letters(f"{TENANT}/crm", 1)
    assert rig.crm.requests == 3  # the refused version was sent once, never retried
    assert list(dead) == [b"r.1:1"]
    letter = json.loads(dead[b"r.1:1"])
    assert letter["status"] == 400
    assert letter["answer"] == "unknown service code in r.1:1"
    assert Envelope.from_json(letter["envelope"]) == envelope("r.1", 1, caller=caller)
    assert sorted(k for k, _, _ in rig.crm.accepted) == ["r.1:2", "r.2:1"]
    assert "r.1:1" in [json.loads(line).get("record") for line in logs().splitlines()]
    assert caller not in logs()  # the complete number goes to the CRM and its dead letter only


async def test_a_hanging_crm_times_out_and_the_retry_is_deduplicated_by_its_key(rig: Rig) -> None:
    rig.crm.hang_s = 1.0
    rig.start_worker({f"{TENANT}/crm": rig.webhook(timeout_s=0.3)})
    await rig.stream.append(envelope("r.1"))
    deadline = time.monotonic() + 20
    while rig.crm.requests < 1:  # the first request is held for 1 s; the worker gives up at 0.3 s
        assert time.monotonic() < deadline, "no request reached the CRM"
        await asyncio.sleep(0.01)
    rig.crm.hang_s = 0.0
    await rig.crm.wait_for(1, timeout_s=10)
    await asyncio.sleep(1.0)  # the hung request finishes at the CRM after we gave up on it
    assert [k for k, _, _ in rig.crm.accepted] == ["r.1:1"]
    assert rig.crm.requests >= 2


async def test_other_tenants_records_are_skipped_and_each_sink_advances_on_its_own(rig: Rig) -> None:
    rig.start_worker({f"{TENANT}/crm": rig.webhook(), "melton/crm": rig.webhook("crm", tenant="melton")})
    await rig.stream.append_many([envelope("h.1"), envelope("m.1", tenant="melton"), envelope("h.2")])
    await rig.crm.wait_for(3, timeout_s=10)
    assert sorted(k for k, _, _ in rig.crm.accepted) == ["h.1:1", "h.2:1", "m.1:1"]
    assert {e["tenant"] for e in rig.crm.events.values()} == {TENANT, "melton"}


async def test_a_second_worker_waits_for_the_lease_and_takes_over_when_the_first_stops(rig: Rig) -> None:
    first = rig.start_worker({f"{TENANT}/crm": rig.webhook()})
    await rig.stream.append(envelope("r.1"))
    await rig.crm.wait_for(1, timeout_s=10)
    second = rig.start_worker({f"{TENANT}/crm": rig.webhook()}, FAST)
    await asyncio.sleep(0.3)
    holder = await rig.redis.get(rig.keys.sink_lease(CENTRE, f"{TENANT}/crm"))
    assert holder == first.consumer.encode()
    stop, task = rig.tasks.pop(0)
    stop.set()
    await task
    await rig.stream.append(envelope("r.2"))
    await rig.crm.wait_for(2, timeout_s=10)
    assert await rig.redis.get(rig.keys.sink_lease(CENTRE, f"{TENANT}/crm")) == second.consumer.encode()


async def test_batched_mode_loses_nothing_and_dead_letters_only_the_refused_event(rig: Rig) -> None:
    rig.crm.refuse = {"b.7:1"}
    await rig.crm.stop()
    rig.start_worker({f"{TENANT}/crm": rig.webhook(batch_size=50)})
    versions = [(f"b.{n}", v) for n in range(1, 1001) for v in ((1, 2) if n % 4 == 0 else (1,))]
    await rig.stream.append_many([envelope(r, v) for r, v in versions])
    await asyncio.sleep(0.5)
    await rig.crm.start()
    await rig.crm.wait_for(len(versions) - 1, timeout_s=30)
    dead = await rig.wait_for_dead_letters(f"{TENANT}/crm", 1)
    assert list(dead) == [b"b.7:1"]
    assert {k for k, _, _ in rig.crm.accepted} == {f"{r}:{v}" for r, v in versions} - {"b.7:1"}
    assert len(rig.crm.accepted) == len(versions) - 1
    assert rig.crm.out_of_order() == []
    assert rig.crm.requests < len(versions) / 5  # batches, not one request per event


async def test_trimming_never_passes_a_version_some_sink_has_not_delivered(rig: Rig) -> None:
    ids = [await rig.stream.append(envelope(f"t.{n}")) for n in range(6)]
    stream = rig.keys.records_stream(CENTRE)
    a, b = f"{TENANT}/a", f"{TENANT}/b"
    for group in (a, b):
        await rig.redis.xgroup_create(stream, group, id="0")
    await rig.redis.xreadgroup(a, "w", {stream: ">"})
    await rig.redis.xack(stream, a, *ids)
    await rig.redis.xreadgroup(b, "w", {stream: ">"}, count=4)  # b: two delivered, two in flight
    await rig.redis.xack(stream, b, *ids[:2])
    later = time.time() + 60
    assert await trim_floor(rig.redis, stream, [a, b], later, retention_s=0) == ids[2]
    assert await trim_floor(rig.redis, stream, [a, b, f"{TENANT}/new"], later, retention_s=0) == "0-0"
    assert await trim_floor(rig.redis, stream, [a], later, retention_s=3600) < str(ids[0])
    await rig.redis.xtrim(stream, minid=ids[2], approximate=False)
    assert [sid.decode() for sid, _ in await rig.redis.xrange(stream)] == ids[2:]
