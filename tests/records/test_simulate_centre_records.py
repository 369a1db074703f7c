"""``callrouter simulate --centre-port``: the demonstration's callers played on a pretend
centre's AMI, so that a real ``serve`` connected to it makes complete records (answered calls,
waits, advisers' dispositions, survey scores), as the demo's KPI report shows."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import signal
import sys
from pathlib import Path

from callrouter.simulate import Run, centre_plays, run_with_centre
from emulator.pbx import Channel
from ivr.controller import PlanHolder
from records.model import ContactRecord
from tests.ami.helpers import wait_until
from tests.support.processes import stop_tree_async
from tests.support.redis_server import free_port, running_redis

PLAN = Path(__file__).resolve().parents[2] / "examples" / "plan.yaml"


def test_the_pretend_centre_plays_every_outcome_and_readable_dispositions() -> None:
    plan = PlanHolder.load(PLAN).current.plan
    play = centre_plays(plan, random.Random(1))
    plays = [play("hdc-revenues", Channel("PJSIP/x-1", "1795100000.1")) for _ in range(400)]
    assert {p.outcome for p in plays} == {"answer", "abandon", "timeout", "withdraw"}
    kinds = {(p.disposition or "").partition(":")[0] for p in plays}
    assert kinds == {"", "resolved", "back_office", "avoidable", "complaint"}
    assert all(0.2 <= p.wait_s <= 3.0 for p in plays)


def _started(log: Path) -> bool:
    return "controller.started" in log.read_text()


async def test_serve_on_the_pretend_centre_makes_answered_records(tmp_path: Path) -> None:
    with running_redis(max_lifetime_s=120) as redis:
        await _serve_on_the_pretend_centre(tmp_path, redis.url)


async def _serve_on_the_pretend_centre(tmp_path: Path, redis_url: str) -> None:
    outbox, log = tmp_path / "records.jsonl", tmp_path / "serve.log"
    agi_port, ami_port = free_port(), free_port()
    env = {**os.environ, "CALLROUTER_AMI_SECRET": "centre-secret",
           "CALLROUTER_RECORDS_CALLER_HASH_KEY": "simulate-centre hash key, 32 by."}  # fmt: skip
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(PLAN), "--agi-port", str(agi_port),
            "--redis", redis_url, "--clock-start", "2026-11-24 10:00", "--ami-host", "127.0.0.1",
            "--ami-port", str(ami_port), "--ami-user", "callrouter",
            "--records-outbox", str(outbox)]  # fmt: skip
    with log.open("w") as out:
        serve = await asyncio.create_subprocess_exec(
            "timeout", "--foreground", "90", *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env
        )
    os.environ["CALLROUTER_AMI_SECRET"] = "centre-secret"
    try:
        await wait_until(functools.partial(_started, log), timeout_s=20)
        plan = PlanHolder.load(PLAN).current.plan
        code = await run_with_centre(
            Run("127.0.0.1", agi_port, calls=12, rate=20, seed=3), plan, ami_port, 3.0
        )
        assert code == 0
        await asyncio.sleep(1.0)
        serve.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await serve.wait()
    finally:
        os.environ.pop("CALLROUTER_AMI_SECRET", None)
        await stop_tree_async(serve)
    records = [ContactRecord.model_validate_json(line) for line in outbox.read_text().splitlines()]
    ours = [r for r in records if r.tenant is not None]
    answered = [r for r in ours if r.answered is not None]
    assert answered, [r.model_dump(include={"id", "queues", "complete"}) for r in ours]
    assert all(r.complete for r in answered)
    assert any(q.wait_s is not None for r in answered for q in r.queues)
    assert any(r.disposition is not None for r in answered)
