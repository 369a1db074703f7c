"""Benchmark: how long a centre's capacity snapshot takes to reach its partner's Redis.

Run ``python -m benchmarks.partner_bench``. It starts two redis-servers and two ``callrouter
web`` processes (real processes on free loopback ports), configured as partners with a shared
secret file (``docs/partners.md``; plain HTTP on loopback), and measures in the same run:

- **delivery**: a new snapshot of centre A written into A's Redis (as serve's AMI consumer does),
  at a random moment, until it is in B's Redis (polled every millisecond): one send interval
  (``--interval``, 1 s) at most, plus the request;
- **signed POST**: one request to B's endpoint (signature, replay and shape checks, the Lua
  store), from this process, until its answer;
- **local SET (baseline)**: the same snapshot written straight into B's Redis, which is how a
  partner's snapshot reached a controller before, when both centres shared one Redis.

Times in milliseconds: median, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from routing.core.live import QueueSnapshot
from routing.live.store import snapshot_json
from routing.partner_link import PartnerSecret, next_sequence, request_headers
from routing.redis_keys import KEYS
from tests.support.redis_server import free_port, running_redis
from tests.support.web_process import running_web

SECRET = "benchmark-partnership-secret-0123456789abcdef"


def _row(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"| {label} | {len(ms)} | {statistics.median(ms):.2f} | {p99:.2f} | {ms[-1]:.2f} |"


def _snapshot(marker: int) -> str:
    return snapshot_json(QueueSnapshot("hdc-team", marker, 0.0, 20, 3, datetime.now(UTC)))


def _env(me: str, other: str, other_port: int, keys: Path, interval: float) -> dict[str, str]:
    return {
        "CALLROUTER_PARTNERS_CENTRE": me,
        "CALLROUTER_PARTNERS_PEERS": f"{other}=http://127.0.0.1:{other_port}",
        "CALLROUTER_PARTNERS_KEY_DIR": str(keys),
        "CALLROUTER_PARTNERS_INTERVAL_S": str(interval),
    }


async def _delivery(own: Redis, theirs: Redis, rounds: int, interval: float) -> list[float]:
    times = []
    for n in range(1, rounds + 1):
        await asyncio.sleep(random.uniform(0, interval))  # a random phase
        started = time.perf_counter()
        await own.set(KEYS.centre_snapshot("harborough"), _snapshot(n), px=30_000)
        while True:
            raw = await theirs.get(KEYS.centre_snapshot("harborough"))
            if raw is not None and f'"waiting":{n},'.encode() in raw:
                break
            await asyncio.sleep(0.001)
        times.append(time.perf_counter() - started)
    return times


async def _posts(base: str, theirs: Redis, rounds: int) -> tuple[list[float], list[float]]:
    secret, sequence = PartnerSecret(SECRET.encode()), 0
    posts, sets = [], []
    url = f"{base}/api/v1/partners/melton/snapshot"
    async with aiohttp.ClientSession() as session:
        for n in range(rounds):
            body = _snapshot(n).encode()
            now_s = time.time()
            sequence = next_sequence(sequence, now_s)
            headers = request_headers(
                secret, body, sender="melton", receiver="charnwood", now_s=now_s, sequence=sequence
            )
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
                assert answer.status == 200, answer.status
            posts.append(time.perf_counter() - started)
            started = time.perf_counter()
            await theirs.set(KEYS.centre_snapshot("melton-local"), body, px=30_000)
            sets.append(time.perf_counter() - started)
    return posts, sets


async def _run(rounds: int, interval: float) -> None:
    with (
        running_redis(max_lifetime_s=900) as redis_a,
        running_redis(max_lifetime_s=900) as redis_b,
        tempfile.TemporaryDirectory() as folder,
    ):
        keys = Path(folder)
        for name in ("harborough", "charnwood", "melton"):
            (keys / f"{name}.key").write_text(SECRET)
            (keys / f"{name}.key").chmod(0o600)
        port_a, port_b = free_port(), free_port()
        env_a = _env("harborough", "charnwood", port_b, keys, interval)
        env_b = _env("charnwood", "harborough", port_a, keys, interval)
        env_b["CALLROUTER_PARTNERS_PEERS"] += ",melton=http://127.0.0.1:9"  # the POST benchmark's sender
        own, theirs = Redis.from_url(redis_a.url), Redis.from_url(redis_b.url)
        try:
            with (
                running_web(redis_a.url, port=port_a, extra_env=env_a),
                running_web(redis_b.url, port=port_b, extra_env=env_b) as base_b,
            ):
                await _delivery(own, theirs, 3, interval)  # the first requests open connections
                delivery = await _delivery(own, theirs, rounds, interval)
                posts, sets = await _posts(base_b, theirs, rounds * 5)
        finally:
            await own.aclose()
            await theirs.aclose()
    print(f"partner snapshot exchange, send interval {interval} s\n")
    print("| measure | n | median ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
    print(_row("delivery: A's Redis to B's Redis", delivery))
    print(_row("signed POST to B, stored", posts))
    print(_row("local SET into B's Redis (baseline)", sets))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(_run(args.rounds, args.interval))


if __name__ == "__main__":
    main()
