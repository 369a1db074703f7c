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
    ENDED_TTL_MS,
    Attempt,
    CallbackRefused,
    attempts_of,
    callback_id,
    cancel,
    claim,
    finish,
    load_callback,
    note,
    pending_callbacks,
    request_callback,
)
from routing.core.callback import CallbackRequest
from routing.core.callback_order import Next
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


async def test_only_the_lease_holder_claims_a_due_callback_and_only_once(
    redis: Redis, keys: RedisKeys
) -> None:
    """Claiming checks the AMI writer lease in the same step; a claimed callback is not pending."""
    ident = await request_callback(redis, keys, request(), CallbackPolicy(), T0 + 400)
    await redis.set(keys.ami_writer_lease(), "ctl-a")
    assert await claim(redis, keys, ident, "ctl-b", T0 + 500) == -1
    assert await claim(redis, keys, ident, "ctl-a", T0 + 100) == 0  # not due yet
    results = await asyncio.gather(*(claim(redis, keys, ident, "ctl-a", T0 + 500) for _ in range(4)))
    assert sorted(results) == [0, 0, 0, 1]
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.fields["dials"], stored.fields["claim"]) == ("dialling", "1", "ctl-a")


async def test_a_dial_ends_once_and_late_reports_change_nothing(redis: Redis, keys: RedisKeys) -> None:
    ident = await request_callback(redis, keys, request(), CallbackPolicy(), T0 + 400)
    await redis.set(keys.ami_writer_lease(), "ctl-a")
    dial = await claim(redis, keys, ident, "ctl-a", T0 + 500)
    assert await note(redis, keys, ident, dial, adviser="Agent One")
    assert not await note(redis, keys, ident, dial + 1, adviser="Someone Else")
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    attempt = Attempt(dial, T0 + 500, T0 + 540, "no-answer", "Agent One")
    retry = Next("pending", T0 + 840, "", 1)
    ended = await asyncio.gather(
        *(finish(redis, keys, stored, dial, attempt=attempt, nxt=retry, now=T0 + 540) for _ in range(3))
    )
    assert sorted(ended) == ["already", "already", "ended"]
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.next_at) == ("pending", 1, T0 + 840)
    assert attempts_of(stored) == [attempt]
    assert await redis.zscore(keys.callbacks_pending("council-tax"), ident) == T0  # its place kept
    dial = await claim(redis, keys, ident, "ctl-a", T0 + 900)
    assert dial == 2
    answered = Attempt(dial, T0 + 900, T0 + 1200, "answered", "Agent Two")
    done = Next("done", T0 + 1200, "answered", 2)
    assert await finish(redis, keys, stored, dial, attempt=answered, nxt=done, now=T0 + 1200) == "ended"
    assert (
        await finish(redis, keys, stored, dial - 1, attempt=answered, nxt=done, now=T0 + 1300) == "other_dial"
    )
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.outcome, len(attempts_of(stored))) == ("done", "answered", 2)
    assert await redis.zscore(keys.callbacks_pending("council-tax"), ident) is None
    assert 0 < await redis.pttl(keys.callback(ident)) <= ENDED_TTL_MS


async def test_cancel_ends_a_pending_callback_and_a_dial_under_way_is_still_logged(
    redis: Redis, keys: RedisKeys
) -> None:
    ident = await request_callback(redis, keys, request(), CallbackPolicy(), T0 + 400)
    await redis.set(keys.ami_writer_lease(), "ctl-a")
    dial = await claim(redis, keys, ident, "ctl-a", T0 + 500)
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (
        await cancel(
            redis, keys, stored, outcome="cancelled", by="sam", reason="x", now=T0 + 510, only_pending=True
        )
        == "dialling"
    )
    assert (
        await cancel(redis, keys, stored, outcome="cancelled", by="sam", reason="rang twice", now=T0 + 510)
        == "dialling"
    )
    attempt = Attempt(dial, T0 + 500, T0 + 530, "busy", "")
    retry = Next("pending", T0 + 830, "", 1)
    assert await finish(redis, keys, stored, dial, attempt=attempt, nxt=retry, now=T0 + 530) == "logged_only"
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.outcome, stored.fields["cancel_reason"]) == (
        "cancelled",
        "cancelled",
        "rang twice",
    )
    assert attempts_of(stored) == [attempt]
    assert await pending_callbacks(redis, keys, "council-tax") == []
    assert (
        await cancel(redis, keys, stored, outcome="cancelled", by="sam", reason="again", now=T0 + 600)
        == "cancelled"
    )
