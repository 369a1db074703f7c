"""The callback store against a real redis-server: one write per call, the queue's order kept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from redis.asyncio import Redis

from routing.callbacks import (
    CallbackRefused,
    callback_id,
    load_callback,
    pending_callbacks,
    request_callback,
)
from routing.core.callback import CallbackRequest
from routing.core.plan import CallbackPolicy
from routing.redis_keys import RedisKeys
from tests.support.redis_server import RedisServer

T0 = 1_795_600_000.0
POLICY = CallbackPolicy(initial_delay_s=60)


def request(call_id: str = "rec-1", joined_at: float = T0, **changes: object) -> CallbackRequest:
    base = CallbackRequest(
        tenant="harborough",
        queue="council-tax",
        number="+441632960123",
        joined_at=joined_at,
        requested_at=joined_at + 400,
        call_id=call_id,
        language="en",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")


async def test_a_request_is_stored_pending_with_its_place_and_first_due_time(
    redis: Redis, keys: RedisKeys
) -> None:
    """The HASH holds the request and state pending; the ZSET scores it by its join time."""
    ident = await request_callback(redis, keys, request(), POLICY, T0 + 400, asterisk_queue="harborough-ctax")
    assert ident == callback_id("rec-1")
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.outcome) == ("pending", 0, "")
    assert stored.next_at == T0 + 400 + 60  # initial_delay_s after the request
    assert stored.request == request()
    assert stored.asterisk_queue == "harborough-ctax"
    assert await redis.zscore(keys.callbacks_pending("harborough-ctax"), ident) == T0
    assert [
        (p.callback_id, p.joined_at) for p in await pending_callbacks(redis, keys, "harborough-ctax")
    ] == [(ident, T0)]


async def test_asking_again_for_the_same_call_changes_nothing(redis: Redis, keys: RedisKeys) -> None:
    """Idempotent per call_id: a second (or concurrent) request returns the same id, and the
    stored request, its place and its due time are the first one's."""
    first = await request_callback(redis, keys, request(), POLICY, T0 + 400)
    again = await asyncio.gather(
        *(
            request_callback(
                redis, keys, request(number="+447700900123", joined_at=T0 + 50), POLICY, T0 + 900
            )
            for _ in range(5)
        )
    )
    assert set(again) == {first}
    stored = await load_callback(redis, keys, first)
    assert stored is not None
    assert stored.number == "+441632960123"
    assert stored.next_at == T0 + 460
    assert await redis.zcard(keys.callbacks_pending("council-tax")) == 1
    assert await redis.zscore(keys.callbacks_pending("council-tax"), first) == T0


async def test_pending_callbacks_come_in_join_order_not_request_order(redis: Redis, keys: RedisKeys) -> None:
    """A caller who joined earlier but asked later is still ahead."""
    late_joiner = await request_callback(redis, keys, request("rec-b", T0 + 30), POLICY, T0 + 100)
    early_joiner = await request_callback(redis, keys, request("rec-a", T0 + 10), POLICY, T0 + 500)
    other_queue = await request_callback(
        redis, keys, request("rec-c", T0), POLICY, T0 + 100, asterisk_queue="harborough-waste"
    )
    pending = await pending_callbacks(redis, keys, "council-tax")
    assert [p.callback_id for p in pending] == [early_joiner, late_joiner]
    assert [p.joined_at for p in pending] == [T0 + 10, T0 + 30]
    assert [p.callback_id for p in await pending_callbacks(redis, keys, "harborough-waste")] == [other_queue]
    assert await pending_callbacks(redis, keys, "nobody") == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"number": "01632960123"}, "E.164"),
        ({"number": "+44 1632 960123"}, "E.164"),
        ({"tenant": "harborough\nX"}, "tenant"),
        ({"call_id": ""}, "record id"),
        ({"call_id": "a\x1b[2J"}, "record id"),
        ({"requested_at": T0 - 1}, "before its call joined"),
    ],
)
async def test_a_bad_request_is_refused_and_nothing_is_written(
    redis: Redis, keys: RedisKeys, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(CallbackRefused, match=message):
        await request_callback(redis, keys, request(**changes), POLICY, T0 + 400)
    assert await redis.keys(f"{keys.prefix}*") == []


async def test_an_unknown_id_loads_as_none(redis: Redis, keys: RedisKeys) -> None:
    assert await load_callback(redis, keys, callback_id("never")) is None
