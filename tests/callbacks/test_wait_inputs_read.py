"""The expected wait's inputs read from a real redis-server in one round trip: the queue's handle
times and the places its callbacks hold (being dialled or not), as the AMI writer and the callback
store wrote them; the same as reading each of them apart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ivr.callback_desk import RedisCallbackDesk
from routing.callbacks import (
    WaitInputsReader,
    callback_id,
    claim,
    pending_callbacks,
    request_callback,
)
from routing.core.callback import CallbackRequest
from routing.core.plan import CallbackPolicy
from routing.core.wait import HeldPlace
from routing.live.events import AgentComplete
from routing.live.store import QueueStateStore, read_handle_times
from routing.redis_keys import RedisKeys
from tests.support.redis_monitor import monitoring, tags_in
from tests.support.redis_server import RedisServer

T0 = 1_795_600_000.0
Q = "council-tax"
NOW_DUE = CallbackPolicy(initial_delay_s=0)


def request(call_id: str, joined_at: float) -> CallbackRequest:
    return CallbackRequest(
        tenant="harborough",
        queue=Q,
        number="+441632960123",
        joined_at=joined_at,
        requested_at=joined_at + 300,
        call_id=call_id,
        language="en",
    )


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def a_busy_queue(redis: Redis, keys: RedisKeys) -> None:
    """Three handle times from the AMI writer; three callbacks (joined at T0+10, T0+20, T0+30):
    the first being dialled, the third's hash gone (as if expired) while it still holds a place."""
    await redis.set(keys.ami_writer_lease(), "ctl-a")
    store = QueueStateStore(redis, "ctl-a", keys)
    done = [AgentComplete(Q, f"u{n}", "PJSIP/agent1", "Agent One", 30, talk, "caller", T0 + n)
            for n, talk in enumerate((240, 95, 610))]  # fmt: skip
    assert await store.record_handle_times(done)
    for n in (1, 2, 3):
        await request_callback(redis, keys, request(f"{T0:.0f}.{n}", T0 + 10 * n), NOW_DUE, T0 + 400)
    assert await claim(redis, keys, callback_id(f"{T0:.0f}.1"), "ctl-a", T0 + 500) == 1
    await redis.delete(keys.callback(callback_id(f"{T0:.0f}.3")))


async def test_one_read_gives_the_handle_times_and_the_held_places(redis: Redis) -> None:
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    await a_busy_queue(redis, keys)
    found = await WaitInputsReader(redis, keys).read(Q)
    assert found.handle_times == [240.0, 95.0, 610.0]
    assert found.held == [HeldPlace(T0 + 10, True), HeldPlace(T0 + 20, False), HeldPlace(T0 + 30, False)]
    # the same as each read apart (the handle times, the pending set, each callback's state)
    assert found.handle_times == await read_handle_times(redis, keys, Q)
    pending = await pending_callbacks(redis, keys, Q)
    states = [await redis.hget(keys.callback(p.callback_id), "state") for p in pending]
    apart = [HeldPlace(p.joined_at, s == b"dialling") for p, s in zip(pending, states, strict=True)]
    assert apart == found.held
    # the desk: a caller joining at T0+25 has one callback ahead (the second: the first is being
    # dialled, its leg is in the queue already; the third joined later)
    handle, ahead = await RedisCallbackDesk(redis, keys).wait_inputs(Q, T0 + 25)
    assert (handle, ahead) == ([240.0, 95.0, 610.0], 1)


async def test_a_queue_with_nothing_stored_reads_empty(redis: Redis) -> None:
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    found = await WaitInputsReader(redis, keys).read("no-such-queue")
    assert (found.handle_times, found.held) == ([], [])


async def test_the_read_is_one_command_and_touches_only_its_centres_slot(
    redis_server: RedisServer, redis: Redis
) -> None:
    """MONITOR: one command from the client (the script by its SHA, both declared keys first),
    and every key the script reads carries the centre's tag (one Redis Cluster slot)."""
    tag = f"north-{uuid.uuid4().hex[:8]}"
    keys = RedisKeys(tag=tag)  # the real prefix: MONITOR lines are read for callrouter:{<tag>}
    await a_busy_queue(redis, keys)
    reader = WaitInputsReader(redis, keys)
    await reader.read(Q)  # loads the script once
    ours = f"[0 {(await redis.client_info())['addr']}]"  # this client's one connection
    with monitoring(redis_server) as monitor:
        monitor.mark("read")
        await reader.read(Q)
        lines = monitor.segments()["read"]
    sent = [line for line in lines if ours in line]
    assert len(sent) == 1, lines
    assert '"EVALSHA"' in sent[0].upper()
    assert f'"2" "{keys.queue_handle_times(Q)}" "{keys.callbacks_pending(Q)}"' in sent[0]
    in_script = [line for line in lines if "[0 lua]" in line]
    assert len(in_script) == 2 + 3  # two ZRANGEs, one HGET per pending callback
    assert all(tags_in(line) == {tag} for line in in_script), in_script
