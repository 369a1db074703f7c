"""A plan publish reaches two real ``callrouter serve`` processes (``plan_source = store``)
and they switch together at its activation time; a rollback restores the previous routing.

Real processes and a real redis-server of the test's own; calls placed on the emulated Asterisk.
The plans: the example, and the same with Harborough's weekday hours cut to 08:30-12:00. The
rehearsal clock starts at Tuesday 24 November 2026 14:00, so the example routes a Harborough
call to the menu (open) and the short day to the out-of-hours service (closed)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from emulator.agi import CallerScript
from emulator.dialplan import place_call
from routing import plan_store
from routing.plan_store import ACTIVATION_DELAY_S
from tests.ami.helpers import wait_until
from tests.controller.conftest import EXAMPLE, HARBOROUGH
from tests.support.processes import stop_tree_async
from tests.support.redis_server import RedisServer, free_port, running_redis

SHORT_DAY = EXAMPLE.read_text().replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-12:00"]', 1)
# What the timing checks prove: both controllers hold the new generation until its activation
# time, never before it (had they switched on the notice, they would be 0.5 s early), then
# switch together, on the notice (not on the 15 s a publisher's clock far ahead may cost).
# The one-second goal (publish to the last switch) is measured, not tested: on an idle host both
# switch at the activation time, 0.5 s after the write, under 1 ms apart (benchmarks/
# plan_switch_bench.py, docs/performance.md). The limits here hold on a loaded two-core machine
# (busy loops beside the run), where both controllers were seen to take 1.3 s from the write to
# get the version ready (fetch, validate, compile), switching late, together.
SPREAD_LIMIT_S = ACTIVATION_DELAY_S  # measured: under 1 ms idle, a few ms under load
REACH_LIMIT_S = 5.0  # from the write; 0.5 s idle (the activation delay)
EARLY_S = 0.001  # the event loop's timer may fire within its clock resolution of the time


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis(max_lifetime_s=120) as server:
        yield server


def _events(log: Path) -> list[dict[str, object]]:
    found = []
    for line in log.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def _started(log: Path) -> bool:
    return any(e.get("event") == "controller.started" for e in _events(log))


def _switched(log: Path, generation: int) -> dict[str, object] | None:
    return next(
        (e for e in _events(log) if e.get("event") == "plan.switched" and e.get("generation") == generation),
        None,
    )


async def _serve(plan: Path, redis_url: str, log: Path) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan-source", "store", "--plan", str(plan),
            "--agi-port", str(port), "--redis", redis_url, "--clock-start", "2026-11-24 14:00"]  # fmt: skip
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            "timeout", "90", *argv, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    return process, port


async def _first_step(port: int) -> str:
    record = await place_call("127.0.0.1", port, CallerScript(dial=HARBOROUGH, steps=[]), deadline=15)
    return record.steps[0]


async def _switch_both(logs: list[Path], change: plan_store.Change, started: float) -> list[float]:
    """Wait for both controllers' switch to ``change``'s generation; their switch times. Neither
    switches before the activation time, both within :data:`REACH_LIMIT_S` of the write and
    :data:`SPREAD_LIMIT_S` of each other."""
    generation = change.live.generation
    activate_at = change.live.activate_at.timestamp()
    written = activate_at - ACTIVATION_DELAY_S
    await wait_until(lambda: all(_switched(log, generation) for log in logs), timeout_s=20)
    times = []
    for log in logs:
        event = _switched(log, generation)
        assert event is not None
        assert isinstance(event["switched_at"], float)
        times.append(event["switched_at"])
    spread = max(times) - min(times)
    print(
        f"generation {generation}: switch spread {spread * 1000:.1f} ms, request to write "
        f"{written - started:.3f} s, write to last switch {max(times) - written:.3f} s"
    )
    assert started <= written + EARLY_S, "the activation time is counted from the write"
    assert min(times) >= activate_at - EARLY_S, (activate_at, times)  # never early
    assert max(times) - written < REACH_LIMIT_S, (written, times)
    assert spread < SPREAD_LIMIT_S, times
    return times


async def test_a_publish_reaches_two_controllers_together_and_a_rollback_restores_routing(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    seed = tmp_path / "plan.yaml"
    seed.write_text(EXAMPLE.read_text())
    logs = [tmp_path / f"serve-{n}.log" for n in (1, 2)]
    processes: list[asyncio.subprocess.Process] = []
    redis = Redis.from_url(own_redis.url)
    try:
        ports = []
        for log in logs:
            process, port = await _serve(seed, own_redis.url, log)
            processes.append(process)
            ports.append(port)
        for log in logs:
            await wait_until(lambda log=log: _started(log), timeout_s=20)
        # two controllers started on an empty store: the file is stored once, as version 1
        assert [v.number for v in await plan_store.versions(redis)] == [1]
        assert [await _first_step(port) for port in ports] == ["route (open)", "route (open)"]

        started = time.time()
        published = await plan_store.publish(redis, SHORT_DAY, "engineer", "short Tuesday", datetime.now(UTC))
        assert published.changed
        await _switch_both(logs, published, started)
        assert [await _first_step(port) for port in ports] == ["route (closed)", "route (closed)"]

        started = time.time()
        rolled = await plan_store.rollback(redis, 1, "engineer", "back to the full day", datetime.now(UTC))
        assert rolled.message == "rolled back from version 2 to version 1 (generation 3)"
        await _switch_both(logs, rolled, started)
        assert [await _first_step(port) for port in ports] == ["route (open)", "route (open)"]

        for process in processes:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            for process in processes:
                await process.wait()
    finally:
        await redis.aclose()
        for process in processes:  # under `timeout`: killing it alone would leave serve running
            await stop_tree_async(process)
    for log in logs:  # each call's log line names the generation that decided it
        routed = [e["plan_generation"] for e in _events(log) if e.get("event") == "call.routed"]
        assert routed == [1, 2, 3], log
