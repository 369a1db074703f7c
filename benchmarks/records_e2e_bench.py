"""Benchmark: a caller's hang-up to the contact record at the CRM, through ``serve``'s pump.

Run: ``.venv/bin/python -m benchmarks.records_e2e_bench [--rate 50] [--seconds 20] [--rounds 2]``.

Calls arrive at ``--rate`` a second and last ``--hold-s`` each. Every call goes into the real
record pump exactly as ``serve`` wires it (``callrouter.service.record_pump``: the builder with
serve's grace, the pump's 0.1 s round, the claim of the Linkedid, the append to the records
stream) as the controller's facts (arrival, menu) and the AMI tap's events (``Newchannel``,
``QueueCallerJoin``, the caller's ``Hangup``, then the adviser's ``Hangup`` in the same
millisecond, as the captures show); the delivery worker (default policy, ``XREADGROUP BLOCK``)
sends each record to the fake CRM (``emulator.crm``, its own process, with
redis-server on the other CPU, as in ``delivery_bench``). The latency is from the moment the
caller's ``Hangup`` is handed to the pump to the CRM's first receipt of the record
(``GET /_arrivals``). Side by side, alternating rounds: the bare ``XADD`` at the hang-up +
``XREADGROUP`` + ``POST`` loop of ``delivery_bench`` (no grace, no pump, no claim). Every round
checks the CRM got each call exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from benchmarks.delivery_bench import CENTRE, SECRET, TENANT, Bare, Crm, run
from callrouter.service import RECORD_GRACE_S, RECORD_PUMP_INTERVAL_S, ServeOptions, record_pump
from ivr.controller import PlanHolder
from records.delivery import DeliveryWorker
from records.facts import CallArrived, MenuEntered
from records.outbox import RecordPump, stop_pump
from records.sinks import WebhookSink
from records.stream import Envelope
from routing.core.plan import WebhookSink as WebhookSinkConfig

PLAN = Path(__file__).resolve().parents[1] / "examples" / "plan.yaml"
DIALLED = "01632960001"  # harborough's number in the example plan
KEY = b"benchmark caller hash key 32 b.."


def events(call_id: str, n: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A queue call's AMI events as the tap sees them: on arrival, and at the hang-up."""
    caller, agent = f"PJSIP/sipp-{n:08x}", f"PJSIP/agent1-{n:08x}"
    ids = {"Uniqueid": call_id, "Linkedid": call_id}
    start = [
        {"Event": "Newchannel", "Channel": caller, "CallerIDNum": "07700900123", "Exten": DIALLED, **ids},
        {"Event": "QueueCallerJoin", "Channel": caller, "Queue": "hdc-waste", "Position": "1", **ids},
    ]
    end = [
        {"Event": "Hangup", "Channel": caller, "Cause": "16", "Cause-txt": "Normal Clearing", **ids},
        {"Event": "Hangup", "Channel": agent, "Uniqueid": f"{call_id}1", "Linkedid": call_id,
         "Cause": "16", "Cause-txt": "Normal Clearing"},
    ]  # fmt: skip
    return start, end


class Pumped:
    """``serve``'s record pump, the records stream and the delivery worker."""

    name = "serve's pump + records deliver"

    def __init__(self, redis: Redis, crm: Crm) -> None:
        options = ServeOptions(plan=PLAN, records_key=KEY)
        pump = record_pump(options, PlanHolder.load(PLAN), redis, "bench", lambda: True)
        assert pump is not None
        self.pump: RecordPump = pump
        config = WebhookSinkConfig(type="webhook", url=crm.url, secret_env="X", timeout_s=10)
        sink = WebhookSink(f"{TENANT}/crm", config, SECRET)
        self.worker = DeliveryWorker(redis, CENTRE, {sink.name: sink})
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.pump.run()),
            asyncio.create_task(self.worker.run(self.stop_event)),
        ]

    def arrive(self, call_id: str, n: int, at: float) -> None:
        self.pump.fact(CallArrived(call_id, at, DIALLED, "07700900123", TENANT))
        self.pump.fact(MenuEntered(call_id, at, "main"))
        for event in events(call_id, n)[0]:
            self.pump.ami(event, at)

    async def hang_up(self, call_id: str, n: int, at: float) -> None:
        for event in events(call_id, n)[1]:
            self.pump.ami(event, at)

    async def stop(self) -> None:
        await stop_pump(self.pump, self.tasks[0])
        self.stop_event.set()
        await self.tasks[1]


class BareAtHangup:
    """The bare loop, the record appended the moment the caller hangs up."""

    name = "bare XADD at hang-up + XREADGROUP + POST"

    def __init__(self, redis: Redis, crm: Crm, run_id: str) -> None:
        self.bare = Bare(redis, crm, run_id)

    def start(self) -> None:
        self.bare.start()

    def arrive(self, call_id: str, n: int, at: float) -> None:
        return None

    async def hang_up(self, call_id: str, n: int, at: float) -> None:
        moment = datetime.fromtimestamp(at, UTC)
        await self.bare.append([Envelope(call_id, 1, TENANT, CENTRE, moment, moment, {"id": call_id})])

    async def stop(self) -> None:
        await self.bare.stop()


Contender = Pumped | BareAtHangup


async def one_round(contender: Contender, crm: Crm, args: argparse.Namespace, base: int) -> list[float]:
    """Calls at a steady rate, each hanging up ``hold_s`` after it arrived; the latencies."""
    await crm.reset()
    contender.start()
    total = int(args.rate * args.seconds)
    hung: dict[str, float] = {}
    ends: list[tuple[float, str, int]] = []
    began = time.time()
    n = 0
    while n < total or ends:
        now = time.time()
        while n < total and began + n / args.rate <= now:
            call_id = f"{base}.{n}"
            contender.arrive(call_id, n, now)
            ends.append((now + args.hold_s, call_id, n))
            n += 1
        while ends and ends[0][0] <= now:
            _, call_id, m = ends.pop(0)
            hung[call_id] = time.time()
            await contender.hang_up(call_id, m, hung[call_id])
        await asyncio.sleep(0.005)
    stats = await crm.wait_for(total, args.limit_s)
    await contender.stop()
    if stats["accepted"] != total or stats["duplicates"] != 0 or stats["bad_signatures"] != 0:
        raise SystemExit(f"{contender.name}: the CRM's account is wrong: {stats}")
    async with crm.http.get(f"http://127.0.0.1:{crm.port}/_arrivals") as response:
        arrivals: dict[str, float] = await response.json()
    return [arrivals[f"{call_id}:1"] - at for call_id, at in hung.items()]


def figures(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms ({len(ordered)} calls)"
    )


async def bench(args: argparse.Namespace, redis_url: str, crm_port: int) -> None:
    redis = Redis.from_url(redis_url)
    print(f"serve's grace {RECORD_GRACE_S} s, pump every {RECORD_PUMP_INTERVAL_S} s; "
          f"{args.rate} calls/s for {args.seconds:.0f} s, each {args.hold_s} s long", flush=True)  # fmt: skip
    async with aiohttp.ClientSession() as http:
        crm = Crm(crm_port, http)
        await crm.wait_for(0, 10)
        for round_no in range(1, args.rounds + 1):
            base = int(time.time()) + round_no * 10
            for contender in (Pumped(redis, crm), BareAtHangup(redis, crm, f"r{round_no}")):
                latencies = await one_round(contender, crm, args, base)
                print(f"round {round_no}, {contender.name}: hang-up -> CRM {figures(latencies)}", flush=True)
                await redis.flushdb()
                base += 1
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=50.0, help="calls a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long calls keep arriving")
    parser.add_argument("--hold-s", type=float, default=1.0, help="how long each call lasts")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--limit-s", type=float, default=120.0, help="bound on each round")
    args = parser.parse_args()
    run(args, lambda url, port: bench(args, url, port))


if __name__ == "__main__":
    main()
