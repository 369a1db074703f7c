"""The dialler on the emulator and the fake AMI server, with a real redis-server and the real AMI
consumer: callbacks are made in their callers' original join order, interleaved with live
callers; the adviser is called first; an unanswered callback is tried again; at closing time the
plan's rule applies."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from routing.callbacks import attempts_of
from routing.redis_keys import RedisKeys
from tests.callbacks.rig import ADVISERS, QUEUE, CallbackCentre, Phone, centre, open_all_hours_plan, wait_for
from tests.support.redis_server import RedisServer

LONDON = ZoneInfo("Europe/London")
A1, A2, A3 = ADVISERS
JANE, SAM = "+441632960123", "+447700900456"


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")


async def test_a_peak_callbacks_keep_their_callers_places_and_the_adviser_is_called_first(
    redis_server: RedisServer, keys: RedisKeys, tmp_path: Path
) -> None:
    """Every adviser busy; L1 joins, then Jane (who takes a callback), L2, Sam (callback), L3.
    As advisers free up one by one they go to L1, Jane, L2, Sam, L3: the original join order.
    Each callback rings an adviser (who answers) before the caller's phone."""
    async with centre(redis_server.url, keys, open_all_hours_plan(tmp_path)) as (rig, dialler):
        l1 = rig.caller_joins("Live One")
        await asyncio.sleep(0.05)
        jane = await rig.take_callback("rec-jane", JANE, joined_at=time.time())
        await asyncio.sleep(0.05)
        l2 = rig.caller_joins("Live Two")
        await asyncio.sleep(0.05)
        sam = await rig.take_callback("rec-sam", SAM, joined_at=time.time())
        await asyncio.sleep(0.05)
        l3 = rig.caller_joins("Live Three")
        await asyncio.sleep(1.0)  # sweeps: nobody is dialled while a live caller is ahead
        assert rig.originates == []

        async def next_served(count: int) -> None:
            await wait_for(lambda: len(rig.served) >= count)

        rig.free_adviser(A1)  # -> L1 (the head of the queue)
        await next_served(1)
        await wait_for(lambda: len(rig.originates) == 1)  # Jane is at the front now: her leg goes in
        assert rig.originates[0].variables["CR_CB_POSITION"] == "1"
        rig.free_adviser(A2)  # -> Jane's callback
        await next_served(2)
        await wait_for(lambda: rig.fake.model.queue(QUEUE).waiting[0].channel.uniqueid == l2)
        rig.free_adviser(A3)  # -> L2
        await next_served(3)
        await wait_for(lambda: len(rig.originates) == 2)  # Sam
        rig.free_adviser(A1)  # L1's call ends -> Sam's callback
        await next_served(4)
        rig.free_adviser(A3)  # -> L3
        await next_served(5)
        assert rig.served == [l1, jane, l2, sam, l3]

        for ident, number in ((jane, JANE), (sam, SAM)):
            await wait_for(partial(_state, rig, ident, "done"))
            stored = await rig.stored(ident)
            assert (stored.outcome, stored.attempts) == ("answered", 1)
            (attempt,) = attempts_of(stored)
            assert attempt.outcome == "answered"
            assert attempt.adviser.startswith("Adviser")
            caller_at = rig.log.index(("caller", number))
            assert rig.log[caller_at - 1][0] == "adviser"  # the adviser answered, then the caller rang
        request = rig.originates[0]
        assert request.caller_id == '"Harborough District Council" <01632960001>'  # the council's own
        assert request.channel == "Local/s@callrouter-callback-adviser"
        assert (request.context, request.exten) == ("callrouter-callback-caller", "s")
        assert request.variables["CR_CB_NUMBER"] == JANE
        assert dialler.dialled == 2
        dial = rig.pbx.dials[0]
        assert dial.data == f"PJSIP/{JANE}@pstn"
        assert dial.invite is not None
        assert dial.invite.from_ == '"Harborough District Council" <sip:01632960001@127.0.0.1>'


async def _state(rig: CallbackCentre, ident: str, state: str) -> bool:
    stored = await rig.stored(ident)
    return bool(stored.state == state)


async def test_no_answer_is_retried_after_the_delay_then_answered(
    redis_server: RedisServer, keys: RedisKeys, tmp_path: Path
) -> None:
    """Jane does not answer the first time (NOANSWER), then her voicemail picks up after 35 s of
    ringing and takes 5 s (a short answer, though ANSWEREDTIME on the ;1 leg says 40), then she
    answers after 2 s and talks 60 s: three attempts, each after retry_delay_s (30 s on the
    dialler's clock, which the test moves on)."""
    offset = [timedelta(0)]
    plan = open_all_hours_plan(tmp_path, max_attempts=3, retry_delay_s=30)
    async with centre(redis_server.url, keys, plan, clock=lambda: datetime.now(UTC) + offset[0]) as (rig, _):
        rig.phones[JANE] = [
            Phone("NOANSWER"),
            Phone("ANSWER", talk_s=5, ring_s=35),
            Phone("ANSWER", talk_s=60, ring_s=2),
        ]
        jane = await rig.take_callback("rec-jane", JANE, joined_at=time.time())
        for adviser in ADVISERS:
            rig.free_adviser(adviser)
        for attempts in (1, 2):
            await wait_for(partial(_attempts, rig, jane, attempts))
            stored = await rig.stored(jane)
            assert stored.state == "pending"
            await asyncio.sleep(0.6)  # sweeps: not due yet
            assert len(rig.originates) == attempts
            offset[0] += timedelta(seconds=31)
            rig.free.extend(a for a in ADVISERS if a not in rig.free)
        await wait_for(lambda: _state(rig, jane, "done"))
        stored = await rig.stored(jane)
        assert [a.outcome for a in attempts_of(stored)] == ["no-answer", "short-answer", "answered"]
        assert (stored.attempts, stored.outcome) == (3, "answered")
        assert len(rig.originates) == 3


async def test_no_answer_every_time_ends_failed_after_max_attempts(
    redis_server: RedisServer, keys: RedisKeys, tmp_path: Path
) -> None:
    offset = [timedelta(0)]
    plan = open_all_hours_plan(tmp_path, max_attempts=2, retry_delay_s=30)
    async with centre(redis_server.url, keys, plan, clock=lambda: datetime.now(UTC) + offset[0]) as (rig, _):
        rig.phones[SAM] = [Phone("BUSY")]
        sam = await rig.take_callback("rec-sam", SAM, joined_at=time.time())
        rig.free.extend(ADVISERS)
        await wait_for(lambda: _attempts(rig, sam, 1))
        offset[0] += timedelta(seconds=31)
        rig.free.extend(a for a in ADVISERS if a not in rig.free)
        await wait_for(lambda: _state(rig, sam, "failed"))
        stored = await rig.stored(sam)
        assert [a.outcome for a in attempts_of(stored)] == ["busy", "busy"]
        assert stored.outcome == "failed"
        assert await rig.redis.zscore(keys.callbacks_pending(QUEUE), sam) is None
        offset[0] += timedelta(seconds=31)
        await asyncio.sleep(0.6)
        assert len(rig.originates) == 2


async def _attempts(rig: CallbackCentre, ident: str, count: int) -> bool:
    stored = await rig.stored(ident)
    return len(attempts_of(stored)) >= count


@pytest.mark.parametrize(("rule", "state"), [("next_morning", "pending"), ("cancel", "cancelled")])
async def test_closing_time_with_callbacks_pending_follows_the_plan(
    redis_server: RedisServer, keys: RedisKeys, tmp_path: Path, rule: str, state: str
) -> None:
    """Tuesday 17:30 Harborough closes: next_morning moves the callback to Wednesday 08:30 (it
    keeps its place); cancel ends it, the record saying so. Nothing is dialled."""
    plan = open_all_hours_plan(tmp_path, at_closing=rule)
    text = plan.read_text(encoding="utf-8").replace("00:00-24:00", "08:30-17:30")
    plan.write_text(text, encoding="utf-8")
    evening = datetime(2026, 11, 24, 17, 31, tzinfo=LONDON)
    async with centre(redis_server.url, keys, plan, clock=lambda: evening) as (rig, _):
        stamp = evening.timestamp()
        jane = await rig.take_callback("rec-jane", JANE, joined_at=stamp - 600, now=stamp - 120)
        rig.free.extend(ADVISERS)
        await wait_for(lambda: _changed(rig, jane, evening.timestamp()))
        stored = await rig.stored(jane)
        assert stored.state == state
        if rule == "next_morning":
            assert stored.next_at == datetime(2026, 11, 25, 8, 30, tzinfo=LONDON).timestamp()
            assert await rig.redis.zscore(keys.callbacks_pending(QUEUE), jane) is not None
        else:
            assert stored.outcome == "cancelled_at_closing"
            assert await rig.redis.zscore(keys.callbacks_pending(QUEUE), jane) is None
        assert rig.originates == []


async def _changed(rig: CallbackCentre, ident: str, now: float) -> bool:
    stored = await rig.stored(ident)
    return bool(stored.state == "cancelled" or stored.next_at > now + 3600)
