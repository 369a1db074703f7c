"""Crashes mid-delivery: the worker killed with SIGKILL, Redis killed and restarted from its
append-only file. Nothing acknowledged to an appender is lost; the CRM ends with every version
once (after de-duplication by the idempotency key), each contact's versions in order, and the
owner's archive with every version exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from emulator.crm import FakeCrm
from records.archive import Archive
from records.delivery import DeliveryWorker
from records.sinks import WebhookSink
from records.stream import Envelope, RecordStream
from tests.records.conftest import (
    CENTRE,
    FAST,
    SECRET,
    T0,
    TENANT,
    envelope,
    plan_with_sinks,
    webhook_config,
    worker_process,
)
from tests.records.factory import record
from tests.support.processes import stop_tree
from tests.support.redis_server import PROJECT_CONF, RedisServer, free_port, start_redis


def _child(pid: int) -> int:
    """The process ``timeout`` runs (the one to kill: ``timeout`` itself would only forward)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, f"process {pid} has no child"
    return int(children[0])


def _versions(contacts: int) -> list[tuple[str, int]]:
    """Contacts 1..n, every third with a second version appended right after the first."""
    out: list[tuple[str, int]] = []
    for n in range(1, contacts + 1):
        out += [(f"1795100000.{n}", v) for v in ((1, 2) if n % 3 == 0 else (1,))]
    return out


async def _wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _record_envelope(rid: str, version: int) -> Envelope:
    """A version carrying a real contact record (what the archive keeps)."""
    made = record(rid, T0, version=version)
    return Envelope(rid, version, TENANT, CENTRE, T0, T0 + timedelta(seconds=version),
                    made.model_dump(mode="json"))  # fmt: skip


def _archived(root: Path) -> list[str]:
    archive = Archive(root)
    return [f"{r.id}:{r.version}" for day in archive.days(TENANT) for r in archive.versions(TENANT, day)]


def _archive_lines(root: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (root / TENANT).glob("*.jsonl"))


def _file_keys(folder: Path) -> list[str]:
    lines = [
        json.loads(line) for path in sorted(folder.rglob("*.jsonl")) for line in path.read_text().splitlines()
    ]
    return [f"{item['record_id']}:{item['version']}" for item in lines]


async def test_the_worker_killed_mid_delivery_and_restarted_loses_nothing(
    tmp_path: Path, aof_redis: RedisServer
) -> None:
    crm = FakeCrm(SECRET)
    await crm.start()
    crm.hang_s = 0.02  # a CRM that takes its time, so the kill lands mid-delivery
    redis = Redis.from_url(aof_redis.url)
    files, archive = tmp_path / "crm-files", tmp_path / "archive"
    plan = plan_with_sinks(tmp_path, crm.url, files)
    versions = _versions(2400)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        stream = RecordStream(redis, CENTRE)
        for start in range(0, len(versions), 500):
            await stream.append_many([_record_envelope(r, v) for r, v in versions[start : start + 500]])
        first = worker_process(plan, aof_redis.url, tmp_path / "worker.log", archive)
        workers.append(first)
        await _wait(lambda: len(crm.accepted) >= 300, 30, "the first deliveries")
        os.kill(_child(first.pid), signal.SIGKILL)
        first.wait(timeout=10)
        delivered_before = len(crm.accepted)
        assert delivered_before < len(versions)
        second = worker_process(plan, aof_redis.url, tmp_path / "worker.log", archive)
        workers.append(second)
        try:
            await crm.wait_for(len(versions), timeout_s=60)
            await _wait(lambda: len(_file_keys(files)) >= len(versions), 30, "the file sink")
            await _wait(lambda: _archive_lines(archive) >= len(versions), 30, "the archive")
            await asyncio.sleep(0.5)
        finally:
            await asyncio.to_thread(stop_tree, second)
        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "callrouter.cli", "records", "status", "--json",
             "--plan", str(plan), "--redis", aof_redis.url],
            capture_output=True, check=True, timeout=30,
        )  # fmt: skip
        exported = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "callrouter.cli", "records", "export", "--tenant", TENANT,
             "--from", "2026-11-24", "--to", "2026-11-24", "--plan", str(plan), "--archive", str(archive),
             "--no-redis", "--by", "test"],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
    finally:
        for worker in workers:
            await asyncio.to_thread(stop_tree, worker)
        await redis.aclose()
        await crm.stop()
    expected = {f"{r}:{v}" for r, v in versions}
    archived = _archived(archive)  # the owner's archive: every version, exactly once
    assert len(archived) == len(set(archived)) == _archive_lines(archive) == len(expected)
    assert set(archived) == expected
    latest = dict(versions)  # the export: the latest version of every contact
    assert sorted((d["id"], d["version"]) for d in map(json.loads, exported.stdout.splitlines())) == sorted(
        latest.items()
    )
    assert {k for k, _, _ in crm.accepted} == expected
    assert len(crm.accepted) == len(expected)
    assert crm.out_of_order() == []
    written = _file_keys(files)
    assert len(written) == len(set(written)) == len(expected)  # the file sink: each version once
    assert set(written) == expected
    sinks = {s["sink"]: s for s in json.loads(status.stdout)["sinks"]}
    assert {s: (v["backlog"], v["dead_letters"]) for s, v in sinks.items()} == {
        f"{TENANT}/crm": (0, 0),
        f"{TENANT}/archive": (0, 0),
        **{f"{t}/_owner-archive": (0, 0) for t in ("harborough", "charnwood", "_no-tenant")},
    }


# Thousands of records through a real outage: the bound is for a loaded CI machine.
@pytest.mark.timeout(180)
async def test_redis_killed_and_restarted_from_its_aof_mid_run_loses_nothing(tmp_path: Path) -> None:
    workdir, port = tmp_path / "redis", free_port()
    workdir.mkdir()
    server = start_redis(port, workdir, conf=PROJECT_CONF, max_lifetime_s=300)
    crm = FakeCrm(SECRET)
    await crm.start()
    crm.hang_s = 0.005
    # the timeouts `records deliver` connects with: a connection to the killed server never waits forever
    redis = Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=10)
    versions = _versions(1500)
    acknowledged: list[Envelope] = []
    sink = WebhookSink(f"{TENANT}/crm", webhook_config(crm.url), SECRET)
    worker = DeliveryWorker(redis, CENTRE, {sink.name: sink}, policy=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    stream = RecordStream(redis, CENTRE)

    async def append(items: list[Envelope]) -> None:  # what a record builder does: try until Redis takes it
        deadline = time.monotonic() + 20
        while True:
            try:
                await stream.append_many(items)
            except (RedisConnectionError, OSError):
                assert time.monotonic() < deadline, "Redis did not come back"
                await asyncio.sleep(0.1)
                continue
            acknowledged.extend(items)
            return

    try:
        half = len(versions) // 2
        for start in range(0, half, 100):
            await append([envelope(r, v) for r, v in versions[start : start + 100]])
        await _wait(lambda: len(crm.accepted) >= 100, 30, "the first deliveries")
        os.kill(_child(server.process.pid), signal.SIGKILL)  # no shutdown, no final fsync
        server.process.wait(timeout=10)
        restarted = asyncio.create_task(
            asyncio.to_thread(start_redis, port, workdir, conf=PROJECT_CONF, max_lifetime_s=300)
        )
        for start in range(half, len(versions), 100):
            await append([envelope(r, v) for r, v in versions[start : start + 100]])
        server = await restarted
        await crm.wait_for(len(versions), timeout_s=60)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        await redis.aclose()
        await crm.stop()
        server.stop()
    expected = {e.key for e in acknowledged}
    assert len(expected) == len(versions)
    assert {k for k, _, _ in crm.accepted} == expected
    assert len(crm.accepted) == len(expected)
    assert crm.out_of_order() == []
