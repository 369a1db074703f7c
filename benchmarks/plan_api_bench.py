"""Benchmark: what publishing and previewing a plan through the web service costs, beside the
plan store library called directly (the baseline: the same work with no HTTP, no role check).

Run ``python -m benchmarks.plan_api_bench``. It starts a redis-server and ``callrouter web``
(real processes on free loopback ports), adds an engineer of ``*`` with an API token, and for
``--rounds`` rounds, alternating, publishes a new version of the example plan (each with its own
comment line, so each is stored) and previews the short-day variant against the live plan:

- **library**: ``routing.plan_store.publish`` / ``preview_live`` in this process;
- **API**: ``POST /api/v1/plans`` / ``POST /api/v1/plans/preview`` with the bearer token (the
  service checks the plan, the live plan and who may publish, then calls the same library).

Times are from the call to its answer, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from callrouter.api_client import ApiClient
from routing import plan_store
from tests.support.redis_server import running_redis
from tests.support.web_process import running_web, user_token_file

REPO = Path(__file__).parents[1]
EXAMPLE = (REPO / "examples" / "plan.yaml").read_text()
SHORT_DAY = EXAMPLE.replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-12:00"]', 1)


def _row(label: str, times: list[float]) -> str:
    ms = [t * 1000 for t in times]
    return f"| {label} | {statistics.median(ms):.1f} | {max(ms):.1f} |"


async def _run(rounds: int) -> None:
    with running_redis(max_lifetime_s=600) as server, tempfile.TemporaryDirectory() as folder:
        token = await asyncio.to_thread(user_token_file, server.url, Path(folder), "bench", ["*:engineer"])
        redis = Redis.from_url(server.url)
        results: dict[str, list[float]] = {k: [] for k in ("lib-pub", "api-pub", "lib-pre", "api-pre")}
        try:
            with running_web(server.url) as base:
                client = ApiClient(base, token.read_text().strip())
                await plan_store.publish(redis, EXAMPLE, "bench", "first", datetime.now(UTC))
                await asyncio.to_thread(client.get, "/api/v1/plans")  # the service's first request
                for n in range(rounds):
                    text = f"{EXAMPLE}# round {n}\n"
                    started = time.perf_counter()
                    await plan_store.publish(redis, text, "bench", f"library {n}", datetime.now(UTC))
                    results["lib-pub"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    status, _ = await asyncio.to_thread(
                        client.post, "/api/v1/plans", {"text": text + "#\n", "comment": f"api {n}"}
                    )
                    results["api-pub"].append(time.perf_counter() - started)
                    assert status == 201
                    started = time.perf_counter()
                    await plan_store.preview_live(redis, SHORT_DAY, datetime.now(UTC))
                    results["lib-pre"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    status, _ = await asyncio.to_thread(
                        client.post, "/api/v1/plans/preview", {"text": SHORT_DAY}
                    )
                    results["api-pre"].append(time.perf_counter() - started)
                    assert status == 200
        finally:
            await redis.aclose()
    print(f"{rounds} rounds, example plan ({len(EXAMPLE.encode()) / 1000:.1f} KB), preview over 4 weeks\n")
    print("| operation | median ms | max ms |\n|---|---:|---:|")
    print(_row("publish, library (baseline)", results["lib-pub"]))
    print(_row("publish, API", results["api-pub"]))
    print(_row("preview, library (baseline)", results["lib-pre"]))
    print(_row("preview, API", results["api-pre"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(_run(args.rounds))


if __name__ == "__main__":
    main()
