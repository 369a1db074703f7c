"""``callrouter serve`` and ``callrouter records deliver`` as real processes on a real
three-primary Redis Cluster (``CALLROUTER_REDIS_CLUSTER=true``, the URL of one node).

The controller's AMI consumer writes live queue state from a fake AMI into the cluster and
routes emulated calls on it (a peak overflows); a supervisor's toggle written through the library
on the cluster is obeyed; every call's contact record goes through the records stream on the
cluster to the fake CRM (the delivery worker's lease, consumer group and settle transaction).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from callrouter.redis_client import RedisTarget, connect
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.centre import CallCentre, QueuePlay
from emulator.crm import FakeCrm
from emulator.dialplan import Asterisk, place_call
from ivr.controller import PlanHolder
from routing.redis_keys import KEYS
from routing.supervisor import ToggleRequest, apply_toggle, check_request
from tests.ami.helpers import wait_until
from tests.controller.conftest import EXAMPLE, HARBOROUGH
from tests.records.conftest import SECRET, plan_with_sinks
from tests.support.processes import kill_tree
from tests.support.redis_cluster import RedisClusterSet, running_cluster
from tests.support.redis_server import free_port
from tests.support.toggle_keys import KEYRING, key_file

AMI_SECRET = "serve-cluster-secret"
HOLDER = PlanHolder.load(EXAMPLE)


@pytest.fixture
def cluster() -> Iterator[RedisClusterSet]:
    with running_cluster(max_lifetime_s=240) as found:
        yield found


def _env(cluster: RedisClusterSet, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **cluster.env(), "CALLROUTER_AMI_SECRET": AMI_SECRET,
            "CALLROUTER_RECORDS_CALLER_HASH_KEY": "serve-cluster caller hash key 32",
            "CALLROUTER_TOGGLE_KEY_FILE": str(key_file(tmp_path)), "CRM_SECRET": SECRET.decode()}  # fmt: skip


def _started(log: Path) -> dict[str, object] | None:
    """serve's start event, once it is logged."""
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "controller.started":
            return dict(event)
    return None


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(["timeout", "120", *argv], env=env, stdout=out, stderr=subprocess.STDOUT)


async def _alive_at(redis: Redis) -> float:
    raw = await redis.hget(KEYS.ami_status(), "alive_at")
    return float(raw) if raw else 0.0


async def _call(port: int, centre: Asterisk, plays: dict[str, QueuePlay], n: int, keys: str) -> str:
    """Call n dials Harborough and presses ``keys``; what happened to it."""
    caller = f"07700900{n:03d}"
    plays[caller] = QueuePlay("answer")
    steps = [PressAfterPrompt(k) for k in keys]
    script = CallerScript(dial=HARBOROUGH, caller=caller, steps=steps, uniqueid=f"1795990000.{1000 + n}")
    return (await place_call("127.0.0.1", port, script, asterisk=centre, deadline=30, number=n + 1)).summary()


async def _emergency(redis: Redis) -> None:
    """A supervisor's emergency toggle for Harborough, through the library."""
    now = datetime.now(UTC)
    request = ToggleRequest("emergency", "harborough", True, by="S. Patel", reason="flood", expires="2h")
    await apply_toggle(redis, request, check_request(HOLDER.current.plan, request, now), now, keyring=KEYRING)


async def test_serve_routes_on_live_state_in_a_cluster_and_records_reach_the_crm(
    cluster: RedisClusterSet, tmp_path: Path
) -> None:
    env = _env(cluster, tmp_path)
    redis = connect(RedisTarget(cluster.url, cluster=True), connect_timeout=1.0, timeout=2.0)
    crm = FakeCrm(SECRET)
    await crm.start()
    plan = plan_with_sinks(tmp_path, crm.url)
    processes: list[subprocess.Popen[bytes]] = []
    serve_log, deliver_log = tmp_path / "serve.log", tmp_path / "deliver.log"
    try:
        async with FakeAmi("callrouter", AMI_SECRET) as fake:
            for i in range(1, 6):
                fake.add_member("hdc-revenues", f"PJSIP/agent{i}", f"A{i}", membership="static", send=False)
            port = free_port()
            argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(plan),
                    "--agi-port", str(port), "--clock-start", "2026-11-24 10:00", "--ami-host", "127.0.0.1",
                    "--ami-port", str(fake.port), "--ami-user", "callrouter"]  # fmt: skip
            deliver = [sys.executable, "-m", "callrouter.cli", "records", "deliver", "--plan", str(plan),
                       "--archive", str(tmp_path / "archive"), "--lease-s", "1.0"]  # fmt: skip
            processes += [_start(argv, env, serve_log), _start(deliver, env, deliver_log)]
            await wait_until(functools.partial(_started, serve_log), timeout_s=20)
            assert (_started(serve_log) or {})["redis"] == f"{cluster.url} (cluster)"
            await wait_until(lambda: fake.sessions >= 1, timeout_s=10)

            # live state: the AMI consumer writes it into the centre's slot of the cluster
            async with asyncio.timeout(10):
                while await _alive_at(redis) == 0.0:
                    await asyncio.sleep(0.05)
            for _ in range(6):
                fake.caller_joins("hdc-revenues")
            async with asyncio.timeout(10):
                while await redis.zcard(KEYS.queue_waiting("hdc-revenues")) < 6:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # serve's cached live state follows within its refresh

            # calls through the emulated Asterisk: the peak overflows revenues to Charnwood
            plays: dict[str, QueuePlay] = {}
            centre = Asterisk(centre=CallCentre(fake, lambda queue, caller: plays[caller.caller_num]))

            overflowed = await _call(port, centre, plays, 0, "11")
            assert "route (open)" in overflowed
            assert "queue cbc-assist" in overflowed, overflowed

            # a supervisor's toggle, written on the cluster, is obeyed
            await _emergency(redis)
            async with asyncio.timeout(10):
                n = 1
                while "route (emergency)" not in await _call(port, centre, plays, n, "2"):
                    n += 1
                    await asyncio.sleep(0.1)

            # every call's contact record reaches the CRM through the stream on the cluster
            expected = {f"1795990000.{1000 + i}:1" for i in range(n + 1)}
            await wait_until(lambda: {k for k, _, _ in crm.accepted} >= expected, timeout_s=30)
            assert await redis.xlen(KEYS.records_stream(HOLDER.current.plan.centre)) >= len(expected)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill_tree(process.pid)
                process.wait(timeout=5)
        await crm.stop()
        await redis.aclose()
    for log in (serve_log, deliver_log):
        errors = [line for line in log.read_text().splitlines() if '"level": "error"' in line]
        assert errors == [], errors
