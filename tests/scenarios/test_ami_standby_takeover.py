"""Three real ``callrouter serve`` processes on one Redis and one AMI: exactly one writes live
queue state (the AMI writer lease); SIGKILL it and a standby takes over within 5 s.

Real processes: three controllers, each with its AMI connection to the one fake AMI server (in
this process) and one real redis-server of this test's own. What must hold:

- while all three run, one holds the lease (``ami_writer_lease``) and only it has logged taking
  it; the live state in Redis follows the fake AMI's events (a caller joining a queue), and a
  caller waiting past the plan's ``max_wait_s`` is withdrawn (``QueueWithdrawCaller``) once, by
  one AMI session alone;
- the holder killed with SIGKILL (no release: the lease must expire), another takes the lease
  within ``TAKEOVER_LIMIT_S`` and the live state follows the AMI's events again, written by it
  (the status hash names it); the next long waiter is withdrawn once, by another AMI session.

The take-over time is printed: the lease time (``ami.lease_ttl_s``) bounds it, the holder renews
every third of it, and a standby tries to take it as often.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.ami import FakeAmi
from routing.live.store import QueueStateStore
from routing.redis_keys import KEYS
from tests.ami.helpers import wait_until
from tests.controller.conftest import EXAMPLE
from tests.support.processes import kill_tree
from tests.support.redis_server import RedisServer, free_port, running_redis

AMI_SECRET = "standby-secret"
QUEUE = "hdc-revenues"
TAKEOVER_LIMIT_S = 5.0  # issue 10: a standby takes over within 5 s of the writer's death
INSTANCES = 3


class RecordingAmi(FakeAmi):
    """The fake AMI, noting which session asked each ``QueueWithdrawCaller`` (and for whom)."""

    def __init__(self, username: str, secret: str, clock: Callable[[], float]) -> None:
        super().__init__(username, secret, withdraw_delay_s=0.05, clock=clock)
        self.withdraws: list[tuple[int, str]] = []  # (session, caller channel)

    async def _withdraw(self, session: Any, action: dict[str, str]) -> None:
        self.withdraws.append((id(session), action.get("caller", "")))
        await super()._withdraw(session, action)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis(max_lifetime_s=240) as server:
        yield server


async def _serve(plan: Path, redis_url: str, ami_port: int, log: Path) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(plan),
            "--agi-port", str(free_port()),
            "--redis", redis_url, "--clock-start", "2026-11-24 10:00", "--ami-host", "127.0.0.1",
            "--ami-port", str(ami_port), "--ami-user", "callrouter"]  # fmt: skip
    env = {**os.environ, "CALLROUTER_AMI_SECRET": AMI_SECRET}
    with log.open("w") as out:
        return await asyncio.create_subprocess_exec(
            "timeout", "180", *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env
        )


def _child(pid: int) -> int:
    """The process ``timeout`` runs (SIGKILL must reach it: ``timeout`` only forwards signals)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, f"process {pid} has no child"
    return int(children[0])


def _lines(log: Path, text: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if text in line)


def _started(log: Path) -> bool:
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            if json.loads(line).get("event") == "controller.started":
                return True
    return False


async def _holder(redis: Redis) -> str | None:
    value = await redis.get(KEYS.ami_writer_lease())
    return value.decode() if value is not None else None


async def _joins_seen(store: QueueStateStore, fake: FakeAmi, timeout_s: float) -> float:
    """A caller joins the queue on the fake AMI; seconds until the live state in Redis has them."""
    uniqueid = fake.caller_joins(QUEUE).channel.uniqueid
    started = time.monotonic()
    while uniqueid not in await store.waiting_callers(QUEUE):
        assert time.monotonic() - started < timeout_s, "the live state did not follow the AMI"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _long_waiter(fake: RecordingAmi, ago: list[float]) -> str:
    """A caller who joined 600 s ago (past the plan's ``max_wait_s``): its channel. Its join time
    reaches Redis with the next reconcile (``QueueStatus`` says ``Wait: 600``), which a new lease
    holder makes first."""
    ago[0] = 600.0
    channel = fake.caller_joins(QUEUE).channel.name
    ago[0] = 0.0
    return channel


async def _withdrawn_once(fake: RecordingAmi, channel: str, timeout_s: float) -> int:
    """The AMI session that asked to withdraw ``channel``, once (the holder sweeps every 5 s)."""
    started = time.monotonic()
    while not any(caller == channel for _, caller in fake.withdraws):
        assert time.monotonic() - started < timeout_s, "the long waiter was not withdrawn"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a second instance asking too would show by now
    asked = [session for session, caller in fake.withdraws if caller == channel]
    assert len(asked) == 1, "withdrawn more than once"
    return asked[0]


async def test_one_of_three_writes_live_state_and_a_standby_takes_over_within_5_s_of_a_sigkill(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"  # the example, with callers withdrawn from revenues after 120 s
    plan.write_text(
        EXAMPLE.read_text().replace(
            "          when_unknown: stay\n", "          when_unknown: stay\n          max_wait_s: 120\n"
        )
    )
    ago = [0.0]
    logs = [tmp_path / f"serve-{n}.log" for n in range(INSTANCES)]
    processes: list[asyncio.subprocess.Process] = []
    redis = Redis.from_url(own_redis.url)
    store = QueueStateStore(redis, writer="test-reader")
    host = socket.gethostname()
    try:
        async with RecordingAmi("callrouter", AMI_SECRET, clock=lambda: time.time() - ago[0]) as fake:
            fake.add_member(QUEUE, "PJSIP/agent1", "Agent One", membership="static", send=False)
            first_waiter = _long_waiter(fake, ago)  # there before the controllers start
            for log in logs:
                processes.append(await _serve(plan, own_redis.url, fake.port, log))
            for log in logs:
                await wait_until(lambda log=log: _started(log), timeout_s=30)
            await wait_until(lambda: fake.sessions >= INSTANCES, timeout_s=15)
            pids = {f"{host}:{_child(p.pid)}": p for p in processes}
            holder = None
            async with asyncio.timeout(15):
                while (holder := await _holder(redis)) is None:
                    await asyncio.sleep(0.05)
            assert holder in pids, (holder, list(pids))
            await _joins_seen(store, fake, timeout_s=10)
            first_withdrawer = await _withdrawn_once(fake, first_waiter, timeout_s=15)
            takers = [log for log in logs if _lines(log, "ami.writer_lease_taken")]
            assert len(takers) == 1, "more than one instance took the lease"  # exactly one writer
            assert await _holder(redis) == holder

            victim = pids[holder]
            os.kill(_child(victim.pid), signal.SIGKILL)
            killed = time.monotonic()
            second_waiter = _long_waiter(fake, ago)  # joins while nobody writes
            async with asyncio.timeout(TAKEOVER_LIMIT_S * 3):
                while (now_holder := await _holder(redis)) in (holder, None):
                    await asyncio.sleep(0.01)
            took_over = time.monotonic() - killed
            assert now_holder in pids
            assert now_holder != holder
            followed = await _joins_seen(store, fake, timeout_s=10)
            resumed = time.monotonic() - killed
            status = await redis.hget(KEYS.ami_status(), "writer")
            assert status is not None
            assert status.decode() == now_holder  # the live state is written by the new holder
            second_withdrawer = await _withdrawn_once(fake, second_waiter, timeout_s=15)
            assert second_withdrawer != first_withdrawer  # the new holder's AMI session
            print(
                f"\nAMI standby: writer {holder} killed (SIGKILL); {now_holder} took the lease after "
                f"{took_over:.2f} s; a new AMI event in the live state {followed * 1000:.0f} ms later "
                f"({resumed:.2f} s after the kill)"
            )
            assert took_over < TAKEOVER_LIMIT_S
            assert resumed < TAKEOVER_LIMIT_S
            for process in processes:
                if process is not victim:
                    process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                for process in processes:
                    await process.wait()
    finally:
        await redis.aclose()
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(OSError, AssertionError):  # SIGKILL is not passed on by timeout
                    os.kill(_child(process.pid), signal.SIGKILL)
                kill_tree(process.pid)
                await process.wait()
