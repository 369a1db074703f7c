"""Benchmark: what switching a toggle and reading a council's toggles cost through the web
service, beside the toggle library called directly (the baseline: the same checks, signature
and atomic write with no HTTP, no token check, no role check).

Run ``python -m benchmarks.toggle_api_bench``. It starts a redis-server and ``callrouter web``
with a toggle key (real processes on free loopback ports), publishes the example plan's councils
as a controller does, adds a supervisor of ``harborough`` with an API token, and for
``--rounds`` rounds, alternating:

- **switch, library**: ``check_request`` + ``apply_toggle`` (signed, audited) in this process;
- **switch, API**: ``POST /api/v1/tenants/harborough/toggles/emergency`` with ``"confirm": true``;
- **read, library**: ``toggles_for_tenant`` (every kind, each signature checked);
- **read, API**: ``GET /api/v1/tenants/harborough/toggles``.

Times are from the call to its answer, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from callrouter.api_client import ApiClient
from ivr.controller import PlanHolder
from routing.redis_keys import KEYS
from routing.supervisor import (
    ToggleRequest,
    apply_toggle,
    check_request,
    facts_json,
    plan_facts,
    toggles_for_tenant,
)
from routing.toggle_mac import load_keyring, write_key_file
from tests.support.redis_server import running_redis
from tests.support.web_process import running_web, user_token_file

EXAMPLE = Path(__file__).parents[1] / "examples" / "plan.yaml"
PATH = "/api/v1/tenants/harborough/toggles"


def _row(label: str, times: list[float]) -> str:
    ms = [t * 1000 for t in times]
    return f"| {label} | {statistics.median(ms):.2f} | {max(ms):.2f} |"


async def _run(rounds: int) -> None:
    facts = plan_facts(PlanHolder.load(EXAMPLE).current.plan)
    with running_redis(max_lifetime_s=600) as server, tempfile.TemporaryDirectory() as folder:
        key = write_key_file(Path(folder) / "toggle.key")
        keyring = load_keyring(key)
        os.environ["CALLROUTER_TOGGLE_KEY_FILE"] = str(key)  # the service signs with the same key
        token = await asyncio.to_thread(
            user_token_file, server.url, Path(folder), "bench", ["harborough:supervisor"]
        )
        redis = Redis.from_url(server.url)
        await redis.set(KEYS.plan_in_force(), facts_json(facts, str(EXAMPLE), 1, datetime.now(UTC)))
        results: dict[str, list[float]] = {k: [] for k in ("lib-set", "api-set", "lib-get", "api-get")}
        try:
            with running_web(server.url) as base:
                client = ApiClient(base, token.read_text().strip())
                await asyncio.to_thread(client.get, PATH)  # the service's first request
                for n in range(rounds):
                    now = datetime.now(UTC)
                    started = time.perf_counter()
                    request = ToggleRequest("emergency", "harborough", True, "bench", f"library {n}", "2h")
                    toggle = check_request(facts, request, now)
                    await apply_toggle(redis, request, toggle, now, keyring=keyring)
                    results["lib-set"].append(time.perf_counter() - started)
                    body = {"on": True, "reason": f"api {n}", "expires": "2h", "confirm": True}
                    started = time.perf_counter()
                    status, _ = await asyncio.to_thread(client.post, f"{PATH}/emergency", body)
                    results["api-set"].append(time.perf_counter() - started)
                    assert status == 200
                    started = time.perf_counter()
                    stored = await toggles_for_tenant(redis, "harborough", keyring)
                    results["lib-get"].append(time.perf_counter() - started)
                    assert "emergency" in stored.in_force
                    started = time.perf_counter()
                    answer = await asyncio.to_thread(client.get, PATH)
                    results["api-get"].append(time.perf_counter() - started)
                    assert "emergency" in answer["in_force"]
        finally:
            os.environ.pop("CALLROUTER_TOGGLE_KEY_FILE", None)
            await redis.aclose()
    print(f"{rounds} rounds, emergency cover for harborough\n")
    print("| operation | median ms | max ms |\n|---|---:|---:|")
    print(_row("switch on, library (baseline)", results["lib-set"]))
    print(_row("switch on, API", results["api-set"]))
    print(_row("read toggles, library (baseline)", results["lib-get"]))
    print(_row("read toggles, API", results["api-get"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(_run(args.rounds))


if __name__ == "__main__":
    main()
