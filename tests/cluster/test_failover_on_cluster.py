"""A primary of a real Redis Cluster (three primaries, one replica each) is killed with SIGKILL while
a controller routes emulated calls on the live state its AMI consumer writes into that primary's
slot. What must hold:

- routing never stops: every call placed before, during and after the failover gets a route, each
  in bounded time (the controller decides on its cached live state, fail-static past that);
- within 5 s of the failover (a replica promoted and the cluster ok again) the controller works on
  the new primary: the AMI consumer writes live state there again (a new caller is counted) and a
  toggle written through the library is obeyed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.cluster import key_slot
from redis.exceptions import RedisError

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import place_call
from routing.supervisor import ToggleRequest, apply_toggle, check_request
from tests.cluster.conftest import cluster_client
from tests.cluster.rig import HOLDER, NORTH, Centre, centre
from tests.controller.conftest import EXAMPLE, HARBOROUGH
from tests.support.redis_cluster import RedisClusterSet, running_cluster
from tests.support.toggle_keys import KEYRING

RESUME_LIMIT_S = 5.0
CALL_LIMIT_S = 5.0


@pytest.fixture
def replicated_cluster() -> Iterator[RedisClusterSet]:
    with running_cluster(max_lifetime_s=240, replicas=1) as found:
        yield found


async def _stream_calls(north: Centre, stop: asyncio.Event, placed: list[tuple[float, float, str]]) -> None:
    """Calls one after another until ``stop``: (started, took, what happened)."""
    while not stop.is_set():
        script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("1"), PressAfterPrompt("1")])
        started = time.monotonic()
        summary = (await place_call("127.0.0.1", north.port, script, deadline=10)).summary()
        placed.append((started, time.monotonic() - started, summary))
        await asyncio.sleep(0.05)


async def _emergency(redis: Redis) -> None:
    now = datetime.now(UTC)
    request = ToggleRequest("emergency", "harborough", True, by="S. Patel", reason="flood", expires="2h")
    toggle = check_request(HOLDER.current.plan, request, now)
    async with asyncio.timeout(RESUME_LIMIT_S):
        while True:
            try:
                await apply_toggle(redis, request, toggle, now, NORTH, keyring=KEYRING)
                return
            except RedisError:
                await asyncio.sleep(0.05)


async def test_a_killed_primary_is_ridden_out(replicated_cluster: RedisClusterSet, tmp_path: Path) -> None:
    cluster = replicated_cluster
    slot = key_slot(NORTH.audit_stream().encode())
    redis = cluster_client(cluster)
    plan = tmp_path / "plan.yaml"
    plan.write_text(EXAMPLE.read_text())
    try:
        async with centre(redis, NORTH, plan, "north-1", KEYRING) as north:
            await north.until("hdc-revenues", lambda s: s.logged_in == 5)
            for _ in range(2):
                north.fake.caller_joins("hdc-revenues")
            await north.until("hdc-revenues", lambda s: s.waiting == 2)
            placed: list[tuple[float, float, str]] = []
            stop = asyncio.Event()
            calls = asyncio.create_task(_stream_calls(north, stop, placed))
            await asyncio.sleep(1.0)

            killed_node = cluster.kill_primary_of(slot)
            killed = time.monotonic()
            north.fake.caller_joins("hdc-revenues")  # while the slot has no primary
            promoted = await asyncio.to_thread(cluster.wait_failover, slot)
            failed_over = time.monotonic()
            assert promoted.port != killed_node.port
            await north.until("hdc-revenues", lambda s: s.waiting == 3)  # written on the new primary
            live_again = time.monotonic()
            await _emergency(redis)
            toggled = time.monotonic()
            async with asyncio.timeout(RESUME_LIMIT_S):
                while not any("route (emergency)" in s for started, _, s in placed if started > toggled):
                    await asyncio.sleep(0.05)
            obeyed = time.monotonic()
            stop.set()
            await asyncio.wait_for(calls, 30)
    finally:
        await redis.aclose()

    print(f"failover {failed_over - killed:.2f} s after the kill; live state written again "
          f"{live_again - failed_over:.2f} s after it; toggle obeyed {obeyed - failed_over:.2f} s after it; "
          f"{len(placed)} calls, longest {max(t for _, t, _ in placed):.3f} s")  # fmt: skip
    assert live_again - failed_over < RESUME_LIMIT_S
    assert toggled - failed_over < RESUME_LIMIT_S
    assert obeyed - toggled < RESUME_LIMIT_S
    assert all("route (" in s for _, _, s in placed), [s for _, _, s in placed]
    assert max(t for _, t, _ in placed) < CALL_LIMIT_S
    during = [p for p in placed if killed <= p[0] <= failed_over]
    assert during, "no call was placed while the slot had no primary"
