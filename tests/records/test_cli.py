"""``callrouter records dead-letters|retry|replay|status`` against a running worker and a CRM."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from callrouter.cli import main
from emulator.crm import FakeCrm
from records.delivery import DeliveryWorker
from records.sinks import WebhookSink
from records.stream import RecordStream
from routing.redis_keys import KEYS
from tests.records.conftest import CENTRE, FAST, SECRET, TENANT, envelope, plan_with_sinks, webhook_config
from tests.support.redis_server import RedisServer


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().out


async def _until(condition: object, what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_dead_letters_are_listed_retried_and_a_range_replayed(
    tmp_path: Path, aof_redis: RedisServer, capsys: pytest.CaptureFixture[str], logs: Callable[[], str]
) -> None:
    crm = FakeCrm(SECRET)
    await crm.start()
    crm.refuse = {"r.1:1", "r.2:1"}
    redis = Redis.from_url(aof_redis.url)
    plan = str(plan_with_sinks(tmp_path, crm.url))
    common = ("--plan", plan, "--redis", aof_redis.url, "--json")
    sink = WebhookSink(f"{TENANT}/crm", webhook_config(crm.url), SECRET)
    stop = asyncio.Event()
    task = asyncio.create_task(DeliveryWorker(redis, CENTRE, {sink.name: sink}, policy=FAST).run(stop))
    dead_key = KEYS.sink_dead(CENTRE, sink.name)
    try:
        await RecordStream(redis, CENTRE).append_many([envelope("r.1"), envelope("r.2"), envelope("r.3")])
        await _until(lambda: _count(redis.hlen(dead_key), 2), "two dead letters")

        code, out = await _cli(capsys, "records", "dead-letters", *common)
        letters = json.loads(out)
        assert code == 0
        assert [(d["id"], d["status"], d["answer"]) for d in letters] == [
            ("r.1:1", 400, "unknown service code in r.1:1"),
            ("r.2:1", 400, "unknown service code in r.2:1"),
        ]
        code, out = await _cli(capsys, "records", "status", *common)
        rows = {row["sink"]: row for row in json.loads(out)["sinks"]}
        assert f"{TENANT}/_owner-archive" in rows  # every tenant's archive, always on
        code, out = await _cli(capsys, "records", "status", "--sink", "crm", *common)
        (row,) = json.loads(out)["sinks"]
        assert (row["sink"], row["backlog"], row["dead_letters"], row["delivered"]) == (
            f"{TENANT}/crm",
            0,
            2,
            1,
        )
        code, out = await _cli(capsys, "records", "status", "--sink", "crm", *common[:-1])
        assert out.splitlines()[1].split()[:5] == [f"{TENANT}/crm", "0", "-", "2", "1"]
        code, out = await _cli(capsys, "records", "dead-letters", *common[:-1])
        assert " 400 " in out.splitlines()[0]
        assert out.splitlines()[0].endswith("unknown service code in r.1:1")

        code, out = await _cli(capsys, "records", "retry", "r.9", *common)
        assert (code, json.loads(out)["total"]) == (1, 0)
        crm.refuse = set()
        code, out = await _cli(capsys, "records", "retry", "r.1", *common)
        assert json.loads(out)["total"] == 1
        await crm.wait_for(2, timeout_s=10)
        code, out = await _cli(capsys, "records", "retry", "--all", *common)
        assert json.loads(out)["total"] == 1
        await crm.wait_for(3, timeout_s=10)
        assert sorted(k for k, _, _ in crm.accepted) == ["r.1:1", "r.2:1", "r.3:1"]
        assert await redis.hlen(dead_key) == 0

        crm.accepted.clear()  # the CRM restored a backup from before these records
        crm.seen.clear()
        today = f"{datetime.now(ZoneInfo('Europe/London')):%Y-%m-%d}"
        code, out = await _cli(
            capsys, "records", "replay", "--tenant", TENANT, "--from", today, "--to", today,
            "--sink", "crm", *common,
        )  # fmt: skip
        assert json.loads(out)["queued"] == 3
        await crm.wait_for(3, timeout_s=10)
        assert sorted(k for k, _, _ in crm.accepted) == ["r.1:1", "r.2:1", "r.3:1"]
        assert "crm_refused" in [json.loads(line)["event"] for line in logs().splitlines()]
        assert SECRET.decode() not in logs()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await redis.aclose()
        await crm.stop()


async def _count(pending: object, at_least: int) -> bool:
    return int(await pending) >= at_least  # type: ignore[misc]


def test_replay_refuses_an_unknown_tenant_and_a_backwards_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = str(plan_with_sinks(tmp_path, "https://crm.example.gov.uk/contacts"))
    args = ["records", "replay", "--plan", plan, "--redis", "redis://127.0.0.1:1/0"]
    assert main([*args, "--tenant", "nowhere", "--from", "2026-11-01", "--to", "2026-11-02"]) == 2
    assert "unknown tenant" in capsys.readouterr().err
    assert main([*args, "--tenant", TENANT, "--from", "2026-11-02", "--to", "2026-11-01"]) == 2
    assert "--to is before --from" in capsys.readouterr().err


def test_deliver_names_a_missing_secret_without_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRM_SECRET", raising=False)
    plan = str(plan_with_sinks(tmp_path, "https://crm.example.gov.uk/contacts"))
    argv = ["records", "deliver", "--plan", plan, "--redis", "redis://127.0.0.1:1/0"]
    assert main(argv) == 2
    assert "no archive directory" in capsys.readouterr().err
    assert main([*argv, "--archive", str(tmp_path / "archive")]) == 2
    assert "CRM_SECRET is not set" in capsys.readouterr().err
