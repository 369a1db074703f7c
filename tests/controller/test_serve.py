"""``callrouter serve`` as a process: calls, reload on SIGHUP and on change, audit, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import place_call
from records.model import ContactRecord
from routing.redis_keys import KEYS
from tests.controller.conftest import EXAMPLE, HARBOROUGH
from tests.records.support import checked
from tests.support.redis_server import RedisServer, free_port


@dataclass
class Served:
    process: asyncio.subprocess.Process
    port: int
    plan: Path
    log: Path

    def events(self) -> list[dict[str, object]]:
        found = []
        for line in self.log.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    async def wait_for(self, event: str, count: int = 1, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while sum(e.get("event") == event for e in self.events()) < count:
                await asyncio.sleep(0.05)


@pytest.fixture
async def served(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Served]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(EXAMPLE.read_text())
    log = tmp_path / "controller.log"
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "callrouter.cli",
        "serve",
        "--plan",
        str(plan),
        "--agi-port",
        str(port),
        "--redis",
        redis_server.url,
        "--watch-interval",
        "0.2",
        "--clock-start",
        "2026-11-24 10:00",
    ]
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=asyncio.subprocess.STDOUT)
    result = Served(process, port, plan, log)
    try:
        await result.wait_for("controller.started")
        yield result
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_routes_calls(served: Served) -> None:
    """A whole call through the process, and its decision in the JSON log with the caller masked."""
    script = CallerScript(dial=HARBOROUGH, caller="07700900123", steps=[])
    record = await place_call("127.0.0.1", served.port, script)
    assert record.steps[:2] == ["route (open)", "menu main"]
    await served.wait_for("call.routed")
    routed = next(e for e in served.events() if e.get("event") == "call.routed")
    assert routed["tenant"] == "harborough"
    assert "07700900123" not in served.log.read_text()


async def test_reload_only_a_valid_plan_and_audit_both(served: Served, redis_server: RedisServer) -> None:
    """A broken edit is rejected (the old plan serves on); SIGHUP after a fix reloads it."""
    served.plan.write_text(EXAMPLE.read_text().replace("queue: waste}", "queue: bins}", 1))
    await served.wait_for("plan.rejected")
    record = await place_call("127.0.0.1", served.port, CallerScript(dial=HARBOROUGH, steps=[]))
    assert record.steps[0] == "route (open)"
    served.plan.write_text(EXAMPLE.read_text().replace('"01632 960001"', '"01632 960002"'))
    await served.wait_for("plan.reloaded")
    served.process.send_signal(signal.SIGHUP)
    await served.wait_for("plan.reloaded", count=2)
    record = await place_call("127.0.0.1", served.port, CallerScript(dial="01632960002", steps=[]))
    assert record.variables["CR_TENANT"] == "harborough"
    redis = Redis.from_url(redis_server.url)
    try:
        rows = await redis.xrevrange(KEYS.audit_stream(), count=10)
    finally:
        await redis.aclose()
    whats = [json.loads(fields[b"entry"])["what"] for _, fields in rows]
    assert whats[:3] == ["plan.reload.accepted", "plan.reload.accepted", "plan.reload.rejected"]


async def test_sigterm_drains_and_exits(served: Served) -> None:
    """SIGTERM: the process drains and exits 0 with a summary line."""
    await place_call("127.0.0.1", served.port, CallerScript(dial=HARBOROUGH, steps=[]))
    served.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        code = await served.process.wait()
    assert code == 0
    stopped = next(e for e in served.events() if e.get("event") == "controller.stopped")
    assert stopped["completed"] >= 2


async def test_serve_keeps_a_record_of_each_call_and_flushes_open_ones_on_sigterm(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """With a caller hash key (from a file) and an outbox: the call's facts make a record; the
    call's end never came over AMI (none here), so SIGTERM hands it over as ``complete: false``.
    The key and the caller's number appear in no log line."""
    key_file = tmp_path / "hash.key"
    key_file.write_text("a-records-key-of-32-bytes-length")
    outbox = tmp_path / "records" / "outbox.jsonl"
    log = tmp_path / "controller.log"
    port = free_port()
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(EXAMPLE),
            "--agi-port", str(port), "--redis", redis_server.url, "--clock-start", "2026-11-24 10:00",
            "--records-outbox", str(outbox)]  # fmt: skip
    env = {**os.environ, "CALLROUTER_RECORDS_CALLER_HASH_KEY_FILE": str(key_file)}
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env
        )
    served = Served(process, port, EXAMPLE, log)
    try:
        await served.wait_for("controller.started")
        script = CallerScript(dial=HARBOROUGH, caller="07700900123", steps=[PressAfterPrompt("2")])
        call = await place_call("127.0.0.1", port, script)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    records = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert [(r["id"], r["version"], r["complete"]) for r in records] == [
        (call.sessions[0].uniqueid, 1, False)
    ]
    record = records[0]
    assert record["caller"]["number"] == "07700900123"
    assert [m["menu"] for m in record["ivr"]["menus"]] == ["main"]
    assert record["ivr"]["menus"][0]["keys"] == ["2"]
    assert [d["kind"] for d in record["decisions"]] == ["open", "open"]
    checked(ContactRecord.model_validate_json(json.dumps(record)))
    text = log.read_text()
    assert "07700900123" not in text
    assert "a-records-key-of-32-bytes-length" not in text
    flushed = next(e for e in served.events() if e.get("event") == "records.flushed")
    assert flushed["records"] == 1
