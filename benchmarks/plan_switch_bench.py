"""Benchmark: how long a plan publish takes to reach two controllers, and how far apart they switch.

Run ``python -m benchmarks.plan_switch_bench``. It starts a redis-server on a free loopback port
and two real controllers (``callrouter serve --plan-source store``), then publishes ``--rounds``
new versions (the example plan, each with its own comment line so each is a new version) and
reads from both controllers' logs when each switched (``plan.switched``): the **spread** (last
switch minus first) and the **reach** (last switch minus the moment before the publish).

Side by side in the same run, the same with the plan padded by a comment to 300 KB, over the
size a controller checks in a thread (``routing.plan_store.SMALL_PLAN_CHARS``): those versions
are checked in a worker process, as a reload of a plan file is. This is the baseline the
in-thread check is measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from routing import plan_store
from tests.support.redis_server import free_port, running_redis

REPO = Path(__file__).parents[1]
EXAMPLE = REPO / "examples" / "plan.yaml"
PADDING = "# " + "x" * 98 + "\n"  # 100 characters a line


def _switched(log: Path) -> dict[int, float]:
    found = {}
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "plan.switched":
            found[int(event["generation"])] = float(event["switched_at"])
    return found


async def _wait(predicate: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - another process's log file: nothing to await
            await asyncio.sleep(0.02)


async def _rounds(
    redis: Redis, logs: list[Path], rounds: int, pad_kb: int, label: str
) -> list[tuple[float, float]]:
    padding = PADDING * (pad_kb * 10)
    results = []
    for n in range(rounds):
        text = f"# {label} round {n}\n{padding}{EXAMPLE.read_text()}"
        started = time.time()
        change = await plan_store.publish(redis, text, "benchmark", f"{label} round {n}", datetime.now(UTC))
        generation = change.live.generation
        await _wait(lambda g=generation: all(g in _switched(log) for log in logs), timeout_s=30)
        times = [_switched(log)[generation] for log in logs]
        results.append((max(times) - min(times), max(times) - started))
        await asyncio.sleep(0.3)
    return results


def _summary(label: str, results: list[tuple[float, float]]) -> str:
    spreads = [s * 1000 for s, _ in results]
    reaches = [r for _, r in results]
    return (
        f"{label:<34} spread ms: median {statistics.median(spreads):6.1f}  max {max(spreads):6.1f}   "
        f"reach s: median {statistics.median(reaches):.3f}  max {max(reaches):.3f}"
    )


async def main(rounds: int) -> None:
    with running_redis(max_lifetime_s=600) as server, tempfile.TemporaryDirectory() as folder:
        seed = Path(folder) / "plan.yaml"
        seed.write_text(EXAMPLE.read_text())
        logs = [Path(folder) / f"serve-{n}.log" for n in (1, 2)]
        processes = []
        for log in logs:
            argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan-source", "store", "--plan",
                    str(seed), "--agi-port", str(free_port()), "--redis", server.url]  # fmt: skip
            with log.open("w") as out:
                processes.append(await asyncio.create_subprocess_exec(
                    "timeout", "600", *argv, stdout=out, stderr=asyncio.subprocess.STDOUT))  # fmt: skip
        redis = Redis.from_url(server.url)
        try:
            await _wait(lambda: all("controller.started" in log.read_text() for log in logs), timeout_s=30)
            inline = await _rounds(redis, logs, rounds, 0, "inline")
            worker = await _rounds(redis, logs, rounds, 300, "worker")
        finally:
            await redis.aclose()
            for process in processes:
                process.terminate()
                await process.wait()
    print(f"{rounds} publishes each, two controllers, one host")
    print(_summary("7.7 KB plan, checked in a thread", inline))
    print(_summary("300 KB plan, checked in a worker", worker))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
