"""``serve`` with its ops listener: emulated calls routed, then ``/metrics`` scraped over HTTP;
``/ready`` turns 503 as soon as SIGTERM starts the drain."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from emulator.agi import CallerScript
from emulator.dialplan import place_call
from tests.controller.conftest import EXAMPLE, HARBOROUGH
from tests.controller.test_serve import Served
from tests.support.processes import kill_tree
from tests.support.redis_server import RedisServer, free_port

CHARNWOOD = "01632960100"
NOBODYS = "01632960999"  # no council owns it
CALLS = [  # (dialled, caller): every caller number distinct, so none can hide in a label
    (HARBOROUGH, "07700900201"),
    (HARBOROUGH, "07700900202"),
    (HARBOROUGH, "07700900203"),
    (CHARNWOOD, "07700900204"),
    (CHARNWOOD, "07700900205"),
    (NOBODYS, "07700900206"),
]


class OpsServed(Served):
    ops_port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ops_port}{path}"


@pytest.fixture
async def served(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[OpsServed]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(EXAMPLE.read_text())
    log = tmp_path / "controller.log"
    port, ops_port = free_port(), free_port()
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(plan), "--agi-port", str(port),
            "--redis", redis_server.url, "--clock-start", "2026-11-24 10:00", "--drain-timeout", "10",
            "--ops-port", str(ops_port)]  # fmt: skip
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=asyncio.subprocess.STDOUT)
    result = OpsServed(process, port, plan, log)
    result.ops_port = ops_port
    try:
        await result.wait_for("controller.started")
        yield result
    finally:
        if process.returncode is None:
            kill_tree(process.pid)
            await process.wait()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the scrape: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def routed(tenant: str, kind: str, reason: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return "callrouter_calls_routed_total", (("kind", kind), ("reason", reason), ("tenant", tenant))


async def test_metrics_count_exactly_the_calls_routed_and_carry_no_number(served: OpsServed) -> None:
    assert await get(served.url("/health")) == (200, "ok\n")
    status, body = await get(served.url("/ready"))
    assert (status, body) == (200, '{"ready": true, "missing": []}')

    records = [
        await place_call("127.0.0.1", served.port, CallerScript(dial=dial, caller=caller, steps=[]))
        for dial, caller in CALLS
    ]
    menus = sum(step.startswith("menu ") for r in records for step in r.steps)
    surveys = 3  # Harborough asks its survey when the adviser hangs up (examples/plan.yaml)
    sessions = len(CALLS) + menus + surveys  # the controller's FastAGI sessions (queues are Asterisk's)
    status, text = await get(served.url("/metrics"))
    assert status == 200
    found = samples(text)

    # Tuesday 10:00: both councils are open and greet with their menu; a number no council owns
    # is hung up on (tenant "none")
    assert [r.steps[0] for r in records] == ["route (open)"] * 5 + ["route (unknown_number)"]
    assert menus == 5
    assert found[routed("harborough", "menu", "open")] == 3
    assert found[routed("charnwood", "menu", "open")] == 2
    assert found[routed("none", "hangup", "unknown_number")] == 1
    total = sum(v for (name, _), v in found.items() if name == "callrouter_calls_routed_total")
    assert total == len(CALLS)
    assert found["callrouter_decision_seconds_count", (("route", "route"),)] == len(CALLS)
    assert found["callrouter_decision_seconds_count", (("route", "menu"),)] == menus
    assert found["callrouter_fastagi_sessions_started_total", ()] == sessions
    assert found["callrouter_fastagi_sessions_ended_total", (("outcome", "completed"),)] == sessions
    assert found["callrouter_fastagi_failures_total", (("kind", "handler_error"),)] == 0
    assert found["callrouter_plan_generation", ()] == 1
    assert found["callrouter_live_state_age_seconds", ()] < 5
    info = next(labels for (name, labels), _ in found.items() if name == "callrouter_info")
    assert dict(info)["role"] == "serve"

    numbers = {n for call in CALLS for n in call} | {n[1:] for call in CALLS for n in call}
    assert not [n for n in numbers if n in text]  # no caller's or dialled number anywhere


async def test_ready_turns_503_when_sigterm_starts_the_drain(served: OpsServed) -> None:
    """A call in progress holds the drain open; /ready says 503 meanwhile, /health still 200."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    block = (
        "agi_network: yes\nagi_network_script: route\nagi_request: agi://127.0.0.1/route\n"
        "agi_channel: PJSIP/sipp-0001\nagi_uniqueid: 1795533300.1\nagi_callerid: 07700900301\n"
        f"agi_extension: s\nagi_arg_1: {HARBOROUGH}\n\n"
    )
    writer.write(block.encode())
    await writer.drain()
    await reader.readline()  # the controller's first command: the call is in progress, unanswered
    assert (await get(served.url("/ready")))[0] == 200
    served.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(5):
        while (await get(served.url("/ready")))[0] != 503:
            await asyncio.sleep(0.02)
    status, body = await get(served.url("/ready"))
    assert (status, body) == (503, '{"ready": false, "missing": ["not_draining"]}')
    assert await get(served.url("/health")) == (200, "ok\n")
    assert served.process.returncode is None  # still draining: the call holds it
    writer.close()
    async with asyncio.timeout(15):
        assert await served.process.wait() == 0


async def test_a_second_sigterm_during_the_drain_does_not_cut_it_short(served: OpsServed) -> None:
    """``timeout``, a supervisor and systemd may each send SIGTERM: the second one is ignored,
    the call in progress finishes its drain and the controller stops cleanly (its records'
    last flush included)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    block = (
        "agi_network: yes\nagi_network_script: route\nagi_request: agi://127.0.0.1/route\n"
        "agi_channel: PJSIP/sipp-0001\nagi_uniqueid: 1795533300.2\nagi_callerid: 07700900301\n"
        f"agi_extension: s\nagi_arg_1: {HARBOROUGH}\n\n"
    )
    writer.write(block.encode())
    await writer.drain()
    await reader.readline()  # the call is in progress
    served.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(5):
        while (await get(served.url("/ready")))[0] != 503:
            await asyncio.sleep(0.02)
    served.process.send_signal(signal.SIGTERM)  # the second one
    await asyncio.sleep(0.3)
    assert served.process.returncode is None  # still draining: the call holds it
    writer.close()
    async with asyncio.timeout(15):
        assert await served.process.wait() == 0
    assert "controller.stopped" in served.log.read_text()
