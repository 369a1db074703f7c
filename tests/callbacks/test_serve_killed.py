"""``callrouter serve`` killed (SIGKILL) in the middle of a callback, then started again: the
callback is finished once and dialled at most once more, never twice.

Real processes: the controller, one redis-server of this test's own; in this process, the fake
AMI server with its queue model and the emulated PBX running the callback contexts. Two cases:

* the restarted controller sees the dial end (Asterisk reports ``OriginateResponse`` and the
  outcome to every AMI session): the callback is done after that one dial;
* the dial ended while no controller was running (nobody saw how): once it is overdue the
  restarted controller dials again, once, and that dial finishes it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from routing.callbacks import attempts_of
from routing.redis_keys import KEYS
from tests.ami.helpers import wait_until
from tests.callbacks.rig import (
    ADVISERS,
    SECRET,
    CallbackCentre,
    emulated_centre,
    open_all_hours_plan,
    wait_for,
)
from tests.support.processes import stop_tree_async
from tests.support.redis_server import RedisServer, free_port, running_redis

JANE = "+441632960123"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis(max_lifetime_s=300) as server:
        yield server


async def _serve(
    plan: Path, redis_url: str, ami_port: int, log: Path, adviser_wait_s: float
) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(plan),
            "--agi-port", str(free_port()), "--redis", redis_url, "--ami-host", "127.0.0.1",
            "--ami-port", str(ami_port), "--ami-user", "callrouter"]  # fmt: skip
    env = {
        **os.environ,
        "CALLROUTER_AMI_SECRET": SECRET,
        "CALLROUTER_AMI_LEASE_TTL_S": "2",
        "CALLROUTER_AMI_RECONNECT_INITIAL_S": "0.1",
        "CALLROUTER_CALLBACKS_INTERVAL_S": "0.2",
        "CALLROUTER_CALLBACKS_ADVISER_WAIT_S": str(adviser_wait_s),
        "CALLROUTER_CALLBACKS_LOST_AFTER_S": "1",
    }
    with log.open("w") as out:
        return await asyncio.create_subprocess_exec(
            "timeout", "120", *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env
        )


def _has(log: Path, event: str) -> bool:
    for line in log.read_text().splitlines():
        try:
            if json.loads(line).get("event") == event:
                return True
        except ValueError:
            continue
    return False


def _child(pid: int) -> int:
    """The process ``timeout`` runs (the one to kill: ``timeout`` would only forward a signal)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, f"process {pid} has no child"
    return int(children[0])


async def _started(rig: CallbackCentre, log: Path, redis: Redis) -> None:
    await wait_until(functools.partial(_has, log, "controller.started"), timeout_s=30)
    await wait_until(lambda: rig.fake.sessions >= 1, timeout_s=10)
    deadline = time.monotonic() + 10
    while await redis.get(KEYS.ami_writer_lease()) is None:  # it holds the AMI writer lease
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM; after 20 s, SIGKILL with its children (under `timeout`, killing it alone would
    leave serve running)."""
    await stop_tree_async(process, 20)


@pytest.mark.parametrize(
    "seen", [True, False], ids=["end-seen-by-the-restarted-controller", "end-seen-by-nobody"]
)
async def test_serve_killed_mid_callback_resumes_it_once(
    own_redis: RedisServer, tmp_path: Path, seen: bool
) -> None:
    plan = open_all_hours_plan(tmp_path)
    # Seen: the adviser leg may wait 20 s, longer than the restart. Unseen: 2 s, over before it.
    adviser_wait_s = 20.0 if seen else 2.0
    processes: list[asyncio.subprocess.Process] = []
    async with emulated_centre(own_redis.url, KEYS, plan) as rig:
        try:
            first = tmp_path / "serve-1.log"
            processes.append(await _serve(plan, own_redis.url, rig.fake.port, first, adviser_wait_s))
            await _started(rig, first, rig.redis)
            jane = await rig.take_callback("rec-jane", JANE, joined_at=time.time())
            await wait_for(lambda: len(rig.originates) == 1)  # her adviser leg waits in the queue
            os.kill(_child(processes[0].pid), signal.SIGKILL)
            async with asyncio.timeout(10):
                await processes[0].wait()
            stored = await rig.stored(jane)
            assert (stored.state, stored.fields["dials"]) == ("dialling", "1")
            if not seen:
                await asyncio.sleep(adviser_wait_s + 0.5)  # the dial ends while no controller runs
                assert not rig.fake.model.queue("hdc-revenues").waiting
            second = tmp_path / "serve-2.log"
            processes.append(await _serve(plan, own_redis.url, rig.fake.port, second, adviser_wait_s))
            await _started(rig, second, rig.redis)
            rig.free_adviser(ADVISERS[0])
            await wait_for(lambda: _done(rig, jane), timeout_s=30)
            await asyncio.sleep(1.5)  # nothing more is dialled
            stored = await rig.stored(jane)
            outcomes = [a.outcome for a in attempts_of(stored)]
            dials = [r.action_id for r in rig.originates]
            if seen:
                assert dials == [f"cb:{jane}:1"]
                assert outcomes == ["answered"]
            else:
                assert dials == [f"cb:{jane}:1", f"cb:{jane}:2"]
                assert outcomes == ["interrupted", "answered"]
            assert (stored.attempts, stored.outcome) == (1, "answered")
            assert [who for who, _ in rig.log].count("caller") == 1  # Jane's phone rang once
        finally:
            for process in processes:
                await _stop(process)


async def _done(rig: CallbackCentre, ident: str) -> bool:
    return (await rig.stored(ident)).state == "done"
