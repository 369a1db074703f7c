"""The route entry's CPU per session in-process: the server's callbacks driven with a fake
transport (no sockets, no load generator), so the figure is the controller's and the server's
own work, steady enough to compare small changes on a busy machine.

Run ``python -m benchmarks.route_inprocess_bench`` (``--profile FILE`` writes cProfile statistics
of one round). Each round plays ``--sessions`` route sessions, ``--concurrency`` at a time, on the
example plan at a Tuesday 10:00 with live state read from memory, JSON logs at ``info`` to
``/dev/null`` (as ``serve`` logs): the environment block, the ``SET VARIABLE CR_ROUTE`` reply,
close. Once the controller is built, the objects alive are frozen and the collector tuned as
``serve`` does (``--untuned``: not); ``--uncached`` decides every call afresh (no decision
cache). It reports the best and the median round, us per session.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import time
from collections.abc import Sequence
from datetime import datetime

from benchmarks import fastagi_bench, route_bench
from callrouter import service
from callrouter.logs import configure_logging
from ivr.controller import Controller, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from ivr.fastagi.connection import AgiConnection
from routing.core.decide import CompiledPlan, decide
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE, LiveState, Toggles

REPLY = b"200 result=1\n"


class MemoryLive:
    """Live state answered from memory (``read_now``), as ``CachedLiveSource`` does."""

    def read_now(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        return UNKNOWN_LIVE_STATE, NO_TOGGLES

    async def read(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        return self.read_now(plan, tenant, now)

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None:
        return None


class Uncached:
    """``decide()`` itself in place of the controller's decision cache (``--uncached``)."""

    decide = staticmethod(decide)


class FakeTransport(asyncio.Transport):
    """What the connection writes, answered as Asterisk would: ``200 result=1`` to a command."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        super().__init__()
        self.protocol: AgiConnection | None = None
        self.closing = False
        self.done = done

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.data_received, REPLY)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            self.protocol.connection_lost(None)
            self.protocol = None  # as asyncio's transports do: no reference cycle left behind
            self.done.set_result(None)

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


async def one(server: FastAgiServer, env: bytes) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport = FakeTransport(done)
    conn = AgiConnection(server, loop, server.config.env_max_bytes)
    transport.protocol = conn
    conn.connection_made(transport)
    conn.data_received(env)
    await done


async def rounds(args: argparse.Namespace) -> list[float]:
    plans = PlanHolder.load(route_bench.PLAN)
    controller = Controller(plans, MemoryLive(), clock=route_bench._open_hours_clock)
    if args.uncached:  # every call decided afresh, as before the decision cache
        controller._decisions = Uncached()  # type: ignore[assignment]
    server = FastAgiServer(ServerConfig(port=0, max_sessions=50_000, max_sessions_per_peer=50_000))
    controller.register(server)
    await server.start()
    if not args.untuned:  # as `serve` does once started (callrouter.service)
        service.settle_memory()
        service.tune_collector()
    env = fastagi_bench.env_block("route")
    results: list[float] = []
    profiler = cProfile.Profile() if args.profile else None
    for index in range(args.rounds):
        started = time.process_time()
        if profiler is not None and index == args.rounds - 1:
            profiler.enable()
        for _ in range(args.sessions // args.concurrency):
            await asyncio.gather(*(one(server, env) for _ in range(args.concurrency)))
        if profiler is not None and index == args.rounds - 1:
            profiler.disable()
        results.append((time.process_time() - started) / args.sessions * 1e6)
    await server.drain(1)
    if profiler is not None:
        profiler.dump_stats(args.profile)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--uncached", action="store_true", help="decide every call afresh (no cache)")
    parser.add_argument(
        "--untuned",
        action="store_true",
        help="leave the collector as Python sets it (serve freezes and tunes it)",
    )
    parser.add_argument("--profile", default="", help="cProfile statistics of the last round to this file")
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level, stream=open(os.devnull, "w"))  # noqa: SIM115
    if args.uvloop:
        import uvloop

        results = uvloop.run(rounds(args))
    else:
        results = asyncio.run(rounds(args))
    print(
        f"route entry in-process, {args.sessions:,} sessions x {args.rounds} rounds, c={args.concurrency}: "
        f"best {min(results):.1f} us/session, median {statistics.median(results):.1f} us/session"
    )


if __name__ == "__main__":
    main()
