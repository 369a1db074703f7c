"""Queued callbacks across a Redis fail-over: with ``redis.wait_replicas = 1`` every callback
acknowledged before the primary is killed is on the replica promoted in its place, and the dialler
(through a Sentinel client) goes on there: each is dialled once, none lost, none twice.

Real servers: a primary, two replicas and three sentinels of the test's own
(``tests/support/redis_sentinel.py``; two replicas, so that after the fail-over one is left to
confirm the writes ``WAIT 1`` asks for); the primary is killed with SIGKILL. The centre is the
emulated one of ``tests/callbacks/rig.py`` (fake AMI server, PBX, app_queue's turns)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from redis.exceptions import RedisError

from callrouter.redis_client import RedisTarget, connect, parse_sentinel
from ivr import channel_vars as cv
from ivr.dialler import DiallerSettings
from routing.callbacks import attempts_of, load_callback
from routing.redis_keys import RedisKeys
from routing.replicas import ReplicaWait
from tests.callbacks.rig import ADVISERS, CallbackCentre, centre, open_all_hours_plan, wait_for
from tests.support.redis_sentinel import SentinelSet, running_sentinel_set

A1, A2, A3 = ADVISERS
NUMBERS = {"rec-ann": "+441632960123", "rec-bob": "+447700900456", "rec-cat": "+441632960789"}
WAIT = ReplicaWait(1, 1000)
# The adviser leg may wait in the queue longer than the fail-over takes: a dial in flight when
# the primary dies is still answered then, not ended as "no adviser" and dialled again.
SETTINGS = DiallerSettings(interval_s=0.2, adviser_wait_s=30, lost_after_s=1)


@pytest.fixture
def sentinel_set() -> Iterator[SentinelSet]:
    with running_sentinel_set(max_lifetime_s=120, replicas=2) as found:
        yield found


def _target(found: SentinelSet) -> RedisTarget:
    return RedisTarget("redis://ignored/0", sentinels=tuple(parse_sentinel(a) for a in found.addresses))


def _replica_online(host: str, port: int) -> bool:
    """The primary at ``host:port`` has a replica in sync (one that can confirm a ``WAIT 1``)."""
    client = sync_redis.Redis(host, port, socket_timeout=1, socket_connect_timeout=1)
    try:
        info = client.info("replication")
    except sync_redis.RedisError:
        return False
    finally:
        client.close()
    return any(
        isinstance(value, dict) and value.get("state") == "online"
        for name, value in info.items()
        if name.startswith("slave")
    )


async def _state(rig: CallbackCentre, ident: str, state: str) -> bool:
    try:
        found = await load_callback(rig.redis, rig.keys, ident)
    except (RedisError, OSError):  # the client finding the new primary: ask again
        return False
    return found is not None and found.state == state


async def _dialling(rig: CallbackCentre, ident: str) -> bool:
    return await _state(rig, ident, "dialling")


async def test_acknowledged_callbacks_survive_the_primary_killed_and_are_each_dialled_once(
    sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    """Every adviser busy. Ann and Bob take callbacks (each request acknowledged with WAIT 1)
    and a live caller joins. Ann's and Bob's adviser legs go into the queue; an adviser frees up
    and Ann is called back. Cat takes a callback (she waits behind the live caller) and the
    primary is killed as soon as her request is acknowledged: Bob's dial is in flight, Cat's
    callback pending. After the sentinels
    promote a replica, advisers free up: Bob, the live caller, then Cat are served, in the
    original join order. Each callback was originated once, each caller's phone rang once,
    each ends answered after one attempt."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    client = connect(_target(sentinel_set), connect_timeout=0.5, timeout=2.0)
    plan = open_all_hours_plan(tmp_path)
    async with asyncio.timeout(55):
        async with centre(client, keys, plan, settings=SETTINGS, wait=WAIT) as (rig, dialler):
            ann = await rig.take_callback("rec-ann", NUMBERS["rec-ann"], joined_at=time.time(), wait=WAIT)
            await asyncio.sleep(0.05)
            bob = await rig.take_callback("rec-bob", NUMBERS["rec-bob"], joined_at=time.time(), wait=WAIT)
            await asyncio.sleep(0.05)
            live = rig.caller_joins("Live One")
            await wait_for(lambda: len(rig.originates) == 2)  # Ann's and Bob's legs
            rig.free_adviser(A1)  # -> Ann
            await wait_for(lambda: _state(rig, ann, "done"))
            await wait_for(lambda: _dialling(rig, bob))
            # Cat joined after the live caller (she waits behind them); the primary is killed the
            # moment her request is acknowledged: nothing had time to be copied but what WAIT waited for.
            cat = await rig.take_callback("rec-cat", NUMBERS["rec-cat"], joined_at=time.time(), wait=WAIT)
            sentinel_set.kill_primary()  # Bob's dial in flight, Cat's callback pending
            new_primary = sentinel_set.wait_failover()
            # WAIT 1 needs a replica again: the sentinels point the other one at the new primary.
            await wait_for(lambda: _replica_online(*new_primary), timeout_s=15)

            rig.free_adviser(A2)  # -> Bob's leg, waiting in the queue through the fail-over
            await wait_for(lambda: _state(rig, bob, "done"))
            rig.free_adviser(A3)  # -> the live caller; then Cat's leg goes in
            await wait_for(lambda: _dialling(rig, cat))
            rig.free_adviser(A1)  # Ann's adviser again -> Cat
            await wait_for(lambda: _state(rig, cat, "done"))
            await asyncio.sleep(1.0)  # sweeps and reports after the last end: nothing more is dialled

            assert rig.served == [ann, bob, live, cat]
            originated = Counter(r.variables[cv.CALLBACK_ID] for r in rig.originates)
            assert originated == {ann: 1, bob: 1, cat: 1}
            rung = Counter(d.data for d in rig.pbx.dials)
            assert rung == {f"PJSIP/{number}@pstn": 1 for number in NUMBERS.values()}
            assert dialler.dialled == 3
            for ident in (ann, bob, cat):
                stored = await rig.stored(ident)
                assert (stored.state, stored.outcome, stored.attempts) == ("done", "answered", 1)
                assert [a.outcome for a in attempts_of(stored)] == ["answered"]
            assert await rig.redis.zcard(keys.callbacks_pending("hdc-revenues")) == 0


def _state_on(host: str, port: int, keys: RedisKeys, ident: str) -> str | None:
    """The callback's state on that server alone (not through the sentinels)."""
    client = sync_redis.Redis(host, port, socket_timeout=1, socket_connect_timeout=1)
    try:
        value = client.hget(keys.callback(ident), "state")
    finally:
        client.close()
    return value.decode() if isinstance(value, bytes) else None


async def _sample(probe: Callable[[], bool], seen: list[bool]) -> None:
    while True:
        seen.append(probe())
        await asyncio.sleep(0.05)


# The dial ends while no replica confirms anything; the primary dies with that end on it alone.
# A dial nobody saw end is ended as lost (and dialled again) 1 s past the adviser's wait, and the
# failover takes several seconds: only an end kept until confirmed stops a second call.
UNCONFIRMED = DiallerSettings(interval_s=0.2, adviser_wait_s=3, lost_after_s=1, talk_bound_s=1)


async def test_an_end_no_replica_confirmed_before_the_primary_died_is_kept_and_the_caller_is_called_once(
    sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    """Ann's callback is dialled (its claim confirmed by a replica). Both replicas stop (SIGSTOP)
    and the primary's links to them are closed (a replica cut off, then catching up), an adviser
    answers and Ann's call ends answered: the end is written on the primary, which no
    replica confirms; the primary is killed with only it holding the end; 4 s later the replicas
    come back and the sentinels promote one, which has Ann's callback still being dialled. The
    dialler keeps sending the end (bounded backoff, through losing and retaking the writer lease)
    until the new primary holds it and a replica confirms it; meanwhile the dial, long past the
    time a lost dial is given, is not ended as lost: nothing is dialled again, with an adviser
    free for it. Ann's phone rang once; her callback is done after one attempt."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    client = connect(_target(sentinel_set), connect_timeout=0.5, timeout=2.0)
    plan = open_all_hours_plan(tmp_path)
    wait = ReplicaWait(1, 300)
    paused: list[int] = []
    try:
        async with asyncio.timeout(75):
            async with centre(client, keys, plan, settings=UNCONFIRMED, wait=wait) as (rig, dialler):
                ann = await rig.take_callback("rec-ann", NUMBERS["rec-ann"], joined_at=time.time(), wait=wait)
                await wait_for(lambda: len(rig.originates) == 1)  # claimed (confirmed), her leg queued
                old = (sentinel_set.primary.host, sentinel_set.primary.port)
                paused = sentinel_set.pause_replicas()
                assert sentinel_set.cut_replicas() == 2  # what is written now reaches no replica
                rig.free_adviser(A1)  # -> Ann: answered, talked, ended
                await wait_for(lambda: _state_on(*old, keys, ann) == "done")
                await wait_for(lambda: dialler.holds_end(ann, 1))  # no replica confirmed it
                holder: list[bool] = []
                sampling = asyncio.create_task(_sample(dialler.is_holder, holder))
                sentinel_set.kill_primary()
                await asyncio.sleep(4.0)  # the primary gone, the replicas stopped: nothing takes the end
                sentinel_set.resume(paused)
                paused = []
                new_primary = await asyncio.to_thread(sentinel_set.wait_failover, 40.0)
                assert _state_on(*new_primary, keys, ann) == "dialling"  # the end is not there
                await wait_for(lambda: _replica_online(*new_primary), timeout_s=20)
                rig.free_adviser(A2)  # an adviser free: a second dial would be answered and ring Ann
                await wait_for(lambda: _state(rig, ann, "done"), timeout_s=20)
                await wait_for(lambda: not dialler.holds_end(ann, 1))  # confirmed
                await wait_for(dialler.is_holder)
                sampling.cancel()
                assert not all(holder)  # the writer lease was lost meanwhile, and taken back
                await asyncio.sleep(UNCONFIRMED.adviser_wait_s + UNCONFIRMED.lost_after_s + 1.0)

                assert Counter(r.variables[cv.CALLBACK_ID] for r in rig.originates) == {ann: 1}
                assert Counter(d.data for d in rig.pbx.dials) == {f"PJSIP/{NUMBERS['rec-ann']}@pstn": 1}
                stored = await rig.stored(ann)
                assert (stored.state, stored.outcome, stored.attempts) == ("done", "answered", 1)
                assert [a.outcome for a in attempts_of(stored)] == ["answered"]
                assert await rig.redis.zcard(keys.callbacks_pending("hdc-revenues")) == 0
    finally:
        sentinel_set.resume(paused)
