"""``callrouter serve`` as a real process on a free loopback port, logging JSON lines to a file::

    process, port = await start_serve(plan, redis_url, log, ami_port=fake.port)
    await wait_until(functools.partial(serve_started, log), timeout_s=20)

It runs under ``timeout``, so it ends by itself even if the test is killed; stop it with
:func:`stop_processes` (SIGTERM, then kill, with what it started)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from routing.redis_keys import KEYS
from tests.support.processes import kill_tree
from tests.support.redis_server import free_port

SERVE_AMI_SECRET = "serve-process-ami-secret"
CALLER_HASH_KEY = "serve-process caller hash key 32"  # records on: the caller hash needs a key


async def start_serve(
    plan: Path,
    redis_url: str,
    log: Path,
    *,
    ami_port: int | None = None,
    ami_secret: str = SERVE_AMI_SECRET,
    clock_start: str = "2026-11-24 10:00",
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    lifetime_s: int = 120,
) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``callrouter serve`` on a free FastAGI port with ``plan``, ``redis_url`` and (when
    ``ami_port`` is given) the fake AMI on 127.0.0.1; records on. Returns the process and port."""
    port = free_port()
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(plan), "--agi-port", str(port),
            "--redis", redis_url, "--clock-start", clock_start]  # fmt: skip
    if ami_port is not None:
        argv += ["--ami-host", "127.0.0.1", "--ami-port", str(ami_port), "--ami-user", "callrouter"]
    environment = {**os.environ, "CALLROUTER_AMI_SECRET": ami_secret,
                   "CALLROUTER_RECORDS_CALLER_HASH_KEY": CALLER_HASH_KEY, **(env or {})}  # fmt: skip
    environment.pop("CALLROUTER_CONFIG", None)
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            "timeout", str(lifetime_s), *argv, *extra, stdout=out, stderr=asyncio.subprocess.STDOUT,
            env=environment,
        )  # fmt: skip
    return process, port


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines of ``log`` (other lines skipped)."""
    found = []
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            found.append(event)
    return found


async def until_ami_writer(redis_url: str, timeout_s: float = 20) -> str:
    """Wait until a controller holds the AMI writer lease (the production key names); its holder."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        async with asyncio.timeout(timeout_s):
            while (holder := await redis.get(KEYS.ami_writer_lease())) is None:
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    return str(holder)


def serve_started(log: Path) -> bool:
    return any(e.get("event") == "controller.started" for e in log_events(log))


async def stop_processes(processes: Sequence[asyncio.subprocess.Process], timeout_s: float = 40) -> list[int]:
    """SIGTERM to each process still running; those that have not ended within ``timeout_s`` are
    killed with their descendants (killing ``timeout`` alone would leave the command running).
    Returns the ids of the processes that had to be killed."""
    running = [p for p in processes if p.returncode is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    killed: list[int] = []
    try:
        async with asyncio.timeout(timeout_s):
            for process in running:
                await process.wait()
    except TimeoutError:
        for process in running:
            if process.returncode is None:
                killed.append(process.pid)
                kill_tree(process.pid)
                await process.wait()
    return killed
