"""The expected wait's inputs with callbacks in the queue, on the emulator and the fake AMI server
with a real redis-server and the real AMI consumer and dialler: a callback being dialled is a
caller in the queue (its adviser leg), counted once, not again as a callback ahead."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ivr.callback_desk import RedisCallbackDesk
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.callbacks.rig import QUEUE, CallbackCentre, centre, open_all_hours_plan, wait_for
from tests.support.redis_server import RedisServer

JANE, SAM = "+441632960123", "+447700900456"


async def _waiting(rig: CallbackCentre, count: int) -> bool:
    snap = await QueueStateStore(rig.redis, "reader", rig.keys).snapshot(QUEUE, datetime.now(UTC))
    return snap is not None and snap.waiting == count


async def test_a_callback_being_dialled_counts_once_in_the_place_of_the_callers_behind_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Every adviser busy. Jane takes a callback and, at the front, is dialled: her adviser leg
    joins the queue. Then a live caller, L1, joins; then Sam takes a callback (behind L1: not
    dialled yet). For L1 (Queue()'s position 2: behind Jane's leg) nobody more is ahead: place 2.
    For a caller joining now: Jane's leg and L1 waiting (place 3), and Sam's callback: place 4.
    Jane's callback is counted once, as the caller in the queue it is."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    async with centre(redis_server.url, keys, open_all_hours_plan(tmp_path)) as (rig, _dialler):
        await rig.take_callback("rec-jane", JANE, joined_at=time.time())
        await wait_for(lambda: len(rig.originates) == 1)
        await wait_for(lambda: _waiting(rig, 1))  # her leg, in the live state
        l1 = rig.caller_joins("Live One")
        await wait_for(lambda: _waiting(rig, 2))
        await asyncio.sleep(0.05)
        await rig.take_callback("rec-sam", SAM, joined_at=time.time())
        await asyncio.sleep(1.0)  # sweeps: Sam is not dialled, L1 joined before him
        assert len(rig.originates) == 1
        desk = RedisCallbackDesk(rig.redis, keys)
        store = QueueStateStore(rig.redis, "reader", keys)
        joins = await store.waiting_callers(QUEUE)
        snap = await store.snapshot(QUEUE, datetime.now(UTC))
        assert snap is not None

        [l1_position] = [
            i + 1 for i, w in enumerate(rig.fake.model.queue(QUEUE).waiting) if w.channel.uniqueid == l1
        ]
        _, ahead_of_l1 = await desk.wait_inputs(QUEUE, joins[l1])
        assert (l1_position, ahead_of_l1) == (2, 0)

        _, ahead_of_new = await desk.wait_inputs(QUEUE, time.time())
        assert (snap.waiting + 1, ahead_of_new) == (3, 1)  # place 4: Jane's leg, L1, Sam, them
