"""The delivery worker's metrics, scraped over HTTP from the ops listener ``records deliver``
runs: records a CRM took, dead letters for those it refused, delivery latency, backlog."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from callrouter.ops import OpsListener, Readiness
from callrouter.records_cli import measure_backlog
from records.delivery import DeliveryWorker
from tests.records.conftest import CENTRE, TENANT, Rig, envelope


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
