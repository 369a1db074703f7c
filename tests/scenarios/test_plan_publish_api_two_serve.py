"""A plan published through the web service's API reaches two real ``callrouter serve``
processes (``plan_source = store``), which switch together at its activation time (the
one-second goal is measured by ``benchmarks/plan_switch_bench.py``); a rollback through the API
restores the previous routing.

Real processes (``callrouter web`` and two ``callrouter serve``) on a redis-server of the test's
own; calls placed on the emulated Asterisk. Plans and the rehearsal clock as in
``test_plan_publish_two_serve.py``: the example routes a Harborough call to the menu (open), the
short day to the out-of-hours service (closed)."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime
from pathlib import Path

from callrouter.api_client import ApiClient
from routing import plan_store
from tests.ami.helpers import wait_until
from tests.controller.conftest import EXAMPLE
from tests.scenarios.test_plan_publish_two_serve import (
    SHORT_DAY,
    _events,
    _first_step,
    _serve,
    _started,
    _switch_both,
    own_redis,
)
from tests.support.processes import stop_tree_async
from tests.support.redis_server import RedisServer
from tests.support.web_process import running_web, user_token_file

__all__ = ["own_redis"]  # the fixture, shared with the direct-publish scenario


def _change(data: dict[str, object]) -> plan_store.Change:
    live = data["live"]
    assert isinstance(live, dict)
    return plan_store.Change(
        bool(data["changed"]),
        plan_store.Live(
            int(str(live["generation"])),
            int(str(live["version"])),
            str(live["sha256"]),
            datetime.fromisoformat(str(live["activate_at"])),
        ),
        None,
        str(data["message"]),
    )


async def test_an_api_publish_reaches_two_controllers_together_and_an_api_rollback_restores(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    seed = tmp_path / "plan.yaml"
    seed.write_text(EXAMPLE.read_text())
    token = await asyncio.to_thread(user_token_file, own_redis.url, tmp_path, "chief", ["*:engineer"])
    logs = [tmp_path / f"serve-{n}.log" for n in (1, 2)]
    processes: list[asyncio.subprocess.Process] = []
    with running_web(own_redis.url) as base:
        client = ApiClient(base, token.read_text().strip())
        try:
            ports = []
            for log in logs:
                process, port = await _serve(seed, own_redis.url, log)
                processes.append(process)
                ports.append(port)
            for log in logs:
                await wait_until(lambda log=log: _started(log), timeout_s=20)
            assert [await _first_step(port) for port in ports] == ["route (open)", "route (open)"]

            started = time.time()
            status, data = await asyncio.to_thread(
                client.post, "/api/v1/plans", {"text": SHORT_DAY, "comment": "short Tuesday"}
            )
            assert status == 201, data
            await _switch_both(logs, _change(data), started)
            assert [await _first_step(port) for port in ports] == ["route (closed)", "route (closed)"]

            started = time.time()
            status, data = await asyncio.to_thread(
                client.post, "/api/v1/plans/1/rollback", {"comment": "back to the full day"}
            )
            assert status == 200, data
            assert data["message"] == "rolled back from version 2 to version 1 (generation 3)"
            await _switch_both(logs, _change(data), started)
            assert [await _first_step(port) for port in ports] == ["route (open)", "route (open)"]
            listed = await asyncio.to_thread(client.get, "/api/v1/plans")
            assert [(v["number"], v["author"], v["live"]) for v in listed["versions"]] == [
                (2, "chief", False),
                (1, listed["versions"][1]["author"], True),
            ]

            for process in processes:
                process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                for process in processes:
                    await process.wait()
        finally:
            for process in processes:  # under `timeout`: killing it alone would leave serve running
                await stop_tree_async(process)
    for log in logs:  # each call's log line names the generation that decided it
        routed = [e["plan_generation"] for e in _events(log) if e.get("event") == "call.routed"]
        assert routed == [1, 2, 3], log
