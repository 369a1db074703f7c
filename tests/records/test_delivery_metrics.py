"""The delivery worker's metrics, scraped over HTTP from the ops listener ``records deliver``
runs: records a CRM took, dead letters for those it refused, delivery latency, backlog."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from callrouter.ops import OpsListener, Readiness
from callrouter.records_cli import measure_backlog
from emulator.crm import FakeCrm
from records.delivery import DeliveryWorker
from records.stream import Envelope, RecordStream
from tests.records.conftest import CENTRE, SECRET, T0, TENANT, Rig, envelope, plan_with_sinks, worker_process
from tests.records.factory import record
from tests.support.processes import stop_tree
from tests.support.redis_server import RedisServer, free_port


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_refused_records_are_counted_as_dead_letters_per_sink(rig: Rig) -> None:
    name = f"crm-{uuid.uuid4().hex[:6]}"  # the process's registry outlives a test: a sink of its own
    sink = f"{TENANT}/{name}"
    label = (("sink", sink),)
    rig.crm.refuse = {"m.2:1", "m.4:1"}
    await rig.stream.append_many([envelope(f"m.{n}", 1) for n in range(1, 6)])
    ops = OpsListener("127.0.0.1", 0, Readiness({"worker_running": True}))
    await ops.start()
    waiting = DeliveryWorker(rig.redis, CENTRE, {sink: rig.webhook(name)}, keys=rig.keys)  # not run
    stop = asyncio.Event()
    measuring = asyncio.create_task(measure_backlog(rig.redis, waiting, stop))
    try:
        deadline = time.monotonic() + 10
        while (found := await scrape(ops.port)).get(("callrouter_records_backlog", label)) != 5:
            assert time.monotonic() < deadline, found  # five versions wait: no worker yet
            await asyncio.sleep(0.05)
        rig.start_worker({sink: rig.webhook(name)})
        await rig.crm.wait_for(3, timeout_s=10)
        await rig.wait_for_dead_letters(sink, 2)
        deadline = time.monotonic() + 10
        while (found := await scrape(ops.port)).get(("callrouter_records_dead_letters_total", label)) != 2:
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.05)
        assert found["callrouter_records_delivered_total", label] == 3
        assert found["callrouter_records_delivery_seconds_count", label] == 3  # the refused: not delivered
        assert 0 < found["callrouter_records_delivery_seconds_sum", label] < 30
    finally:
        stop.set()
        await measuring
        await ops.stop()


async def test_records_deliver_serves_its_metrics_and_readiness(
    tmp_path: Path, aof_redis: RedisServer
) -> None:
    """The real ``records deliver`` process with ``--ops-port``: a CRM refusing one version."""
    crm = FakeCrm(SECRET)
    await crm.start()
    crm.refuse = {"1795533300.2:1"}
    redis = Redis.from_url(aof_redis.url)
    plan = plan_with_sinks(tmp_path, crm.url)
    port = free_port()
    worker = None
    try:
        made = [record(f"1795533300.{n}", T0) for n in range(1, 5)]
        envelopes = [
            Envelope(r.id, 1, TENANT, CENTRE, T0, T0 + timedelta(seconds=1), r.model_dump(mode="json"))
            for r in made
        ]
        await RecordStream(redis, CENTRE).append_many(envelopes)
        worker = worker_process(plan, aof_redis.url, tmp_path / "worker.log", tmp_path / "archive",
                                extra=["--ops-port", str(port)])  # fmt: skip
        crm_label, archive_label = (("sink", f"{TENANT}/crm"),), (("sink", f"{TENANT}/_owner-archive"),)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                found = await scrape(port)
                if found.get(("callrouter_records_dead_letters_total", crm_label)) == 1 and found.get(
                    ("callrouter_records_delivered_total", archive_label)
                ) == len(made):
                    break
            assert time.monotonic() < deadline, "no metrics of the deliveries"
            await asyncio.sleep(0.1)
        assert found["callrouter_records_delivered_total", crm_label] == len(made) - 1
        assert found["callrouter_records_delivery_seconds_count", crm_label] == len(made) - 1
        info = next(dict(labels) for (name, labels) in found if name == "callrouter_info")
        assert info["role"] == "deliver"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/ready") as ready:
                assert ready.status == 200
            async with session.get(f"http://127.0.0.1:{port}/health") as health:
                assert health.status == 200
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 20) == 0
    finally:
        if worker is not None:
            await asyncio.to_thread(stop_tree, worker)
        await redis.aclose()
        await crm.stop()
