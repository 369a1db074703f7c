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

from callrouter.service import ServeOptions, _live_source
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import place_call
from ivr.controller import PlanHolder
from records.model import ContactRecord
from records.stream import parse_entry
from routing.ami.settings import AmiSettings
from routing.redis_keys import KEYS
from tests.controller.conftest import EXAMPLE, HARBOROUGH
from tests.core.test_plan_limits import BILLION_LAUGHS
from tests.records.support import checked
from tests.support.processes import kill_tree
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
            kill_tree(process.pid)
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


async def audit_whats(redis_server: RedisServer, plan: Path) -> list[str]:
    """This plan's audit entries, newest first (the Redis server is shared by the tests)."""
    redis = Redis.from_url(redis_server.url)
    try:
        rows = await redis.xrevrange(KEYS.audit_stream(), count=100)
    finally:
        await redis.aclose()
    entries = [json.loads(fields[b"entry"]) for _, fields in rows]
    return [e["what"] for e in entries if e.get("path") == str(plan)]


def count(served: Served, event: str) -> int:
    return sum(e.get("event") == event for e in served.events())


async def test_reload_only_a_valid_plan_and_audit_each(served: Served, redis_server: RedisServer) -> None:
    """A broken edit is rejected (the old plan serves on); a fix is taken; SIGHUP with nothing new
    changed does nothing."""
    served.plan.write_text(EXAMPLE.read_text().replace("queue: waste}", "queue: bins}", 1))
    await served.wait_for("plan.rejected")
    rejected = next(e for e in served.events() if e.get("event") == "plan.rejected")
    assert rejected["problems"] == [
        "plan.yaml:70: tenants.harborough.menus.main.options.\"2\": unknown queue 'bins' "
        "(known: charnwood_assist, emergency, revenues, waste)"
    ]
    record = await place_call("127.0.0.1", served.port, CallerScript(dial=HARBOROUGH, steps=[]))
    assert record.steps[0] == "route (open)"
    served.plan.write_text(EXAMPLE.read_text().replace('"01632 960001"', '"01632 960002"'))
    await served.wait_for("plan.reloaded")
    served.process.send_signal(signal.SIGHUP)
    await served.wait_for("plan.unchanged")
    record = await place_call("127.0.0.1", served.port, CallerScript(dial="01632960002", steps=[]))
    assert record.variables["CR_TENANT"] == "harborough"
    assert count(served, "plan.reloaded") == 1
    assert await audit_whats(redis_server, served.plan) == ["plan.reload.accepted", "plan.reload.rejected"]


async def test_one_save_is_one_reload_and_one_audit_entry(served: Served, redis_server: RedisServer) -> None:
    """A save and a SIGHUP straight after it (both the watcher and the signal see the change)."""
    served.plan.write_text(EXAMPLE.read_text().replace('"08:30-17:30"', '"08:00-18:00"'))
    served.process.send_signal(signal.SIGHUP)
    await served.wait_for("plan.reloaded")
    await served.wait_for("plan.unchanged")
    await asyncio.sleep(1.0)  # five watch intervals: nothing else comes
    assert count(served, "plan.reloaded") == 1
    assert count(served, "plan.unchanged") == 1
    assert await audit_whats(redis_server, served.plan) == ["plan.reload.accepted"]
    served.plan.write_text(served.plan.read_text())  # saved again, unchanged: no reload either
    await served.wait_for("plan.unchanged", count=2)
    assert await audit_whats(redis_server, served.plan) == ["plan.reload.accepted"]


async def test_a_billion_laughs_saved_under_serve_is_refused_and_calls_go_on(served: Served) -> None:
    """The hostile plan is refused within seconds, the controller's memory stays put, calls are
    routed meanwhile and SIGTERM still drains."""
    before = resident_bytes(served.process.pid)
    served.plan.write_text(BILLION_LAUGHS + "\n")
    started = asyncio.get_running_loop().time()
    for _ in range(5):
        record = await place_call("127.0.0.1", served.port, CallerScript(dial=HARBOROUGH, steps=[]))
        assert record.steps[0] == "route (open)"
    await served.wait_for("plan.rejected")
    assert asyncio.get_running_loop().time() - started < 5
    rejected = next(e for e in served.events() if e.get("event") == "plan.rejected")
    assert "aliases (*name) repeat more than 100,000 values" in rejected["problems"][0]
    assert resident_bytes(served.process.pid) - before < 20_000_000
    served.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await served.process.wait() == 0


def resident_bytes(pid: int) -> int:
    """A process's resident memory, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


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
            kill_tree(process.pid)
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
    # with Redis the record went to the centre's records stream first (the outbox is a copy),
    # appended by the controller that claimed the call
    rid = call.sessions[0].uniqueid
    async with Redis.from_url(redis_server.url) as redis:
        entries = [parse_entry(sid, fields).envelope for sid, fields in
                   await redis.xrange(KEYS.records_stream("charnwood"))]  # fmt: skip
        owner = await redis.get(KEYS.record_owner("charnwood", rid))
    mine = [(e.record_id, e.version, e.tenant, e.payload["complete"]) for e in entries if e.record_id == rid]
    assert mine == [(rid, 1, "harborough", False)]
    assert owner is not None
    assert owner.decode().endswith(f":{process.pid}")


def test_ami_stale_age_reaches_the_live_state_the_controller_decides_on() -> None:
    """``ami.stale_age_s`` is the age after which live figures count as unknown: serve's cached
    live source takes it (it kept its own 30 s default before)."""
    redis = Redis.from_url("redis://127.0.0.1:1/0")  # never connected: the source is only built
    holder = PlanHolder.load(EXAMPLE)
    for ami, expected in ((AmiSettings(stale_age_s=7.5), 7.5), (None, 30.0)):
        _live, cached = _live_source(ServeOptions(plan=EXAMPLE, ami=ami), holder, redis)
        assert cached is not None
        assert cached.source.max_age_s == expected
