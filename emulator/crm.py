"""A council CRM's webhook, for people trying callrouter, tests and benchmarks: a real aiohttp
server on 127.0.0.1.

It does what a careful CRM does with callrouter's contact events
(``docs/contact-records-delivery.md``): checks the signature over the raw body (401 if wrong),
de-duplicates by the idempotency key (a repeat is answered 2xx and counted, never stored
twice), and keeps what it accepted in arrival order. ``on_event`` is told of each event it
accepts (``callrouter simulate-crm`` prints them, caller numbers masked).

Tests steer it: ``script`` answers the next requests with given statuses (500, 429 with
``Retry-After``, 400 ...), ``refuse`` answers 400 to given keys, ``hang_s`` holds every answer;
:meth:`stop` and :meth:`start` on the same port make it down and back (connection refused).

Run alone for a benchmark: ``python -m emulator.crm --port N`` (secret in
``CRM_SECRET``); ``GET /_stats`` answers its counts, and latencies when events carry
``data.bench_t0`` (epoch seconds at append); ``GET /_arrivals`` when each key first arrived
(epoch seconds); ``POST /_reset`` forgets everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

SIGNATURE_HEADER = "X-Callrouter-Signature-256"  # as documented in docs/contact-records-delivery.md


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class FakeCrm:
    def __init__(self, secret: bytes, host: str = "127.0.0.1") -> None:
        self.secret, self.host = secret, host
        self.port = 0
        self.script: list[Answer] = []
        self.refuse: set[str] = set()
        self.hang_s = 0.0
        self.keep_events = True
        self.accepted: list[tuple[str, str, int]] = []  # (key, record id, version), first arrivals
        self.events: dict[str, dict[str, object]] = {}
        self.seen: set[str] = set()
        self.duplicates = 0
        self.bad_signatures = 0
        self.requests = 0
        self.latencies: list[float] = []
        self.arrival: dict[str, float] = {}  # key -> epoch seconds of its first arrival
        self.arrived = asyncio.Event()
        self.on_event: Callable[[dict[str, object]], None] | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/contacts"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/contacts", self._contact)
        app.router.add_get("/_stats", self._stats)
        app.router.add_get("/_arrivals", self._arrivals)
        app.router.add_post("/_reset", self._reset)
        return app

    async def _contact(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get(SIGNATURE_HEADER, "")):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if self.script:
            answer = self.script.pop(0)
            return web.Response(status=answer.status, headers=answer.headers, text=answer.body)
        if request.content_type == "application/cloudevents-batch+json":  # batched mode
            events = json.loads(body)
            refused = [e["id"] for e in events if e["id"] in self.refuse]
            if refused:
                return web.Response(status=400, text=f"unknown service code in {refused[0]}")
            for event in events:  # each event's id is its idempotency key
                self._take(event["id"], event)
            return web.Response(status=201, text="ok")
        key = request.headers.get("Idempotency-Key", "")
        if key in self.refuse:
            return web.Response(status=400, text=f"unknown service code in {key}")
        if request.content_type != "application/cloudevents+json":
            return web.Response(status=415, text="expected application/cloudevents+json")
        self._take(key, json.loads(body))
        return web.Response(status=201, text="ok")

    def _take(self, key: str, event: dict[str, object]) -> None:
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        self.arrival[key] = time.time()
        self.accepted.append((key, str(event["subject"]), int(str(event["recordversion"]))))
        if self.keep_events:
            self.events[key] = event
        data = event.get("data")
        if isinstance(data, dict) and isinstance(data.get("bench_t0"), float):
            self.latencies.append(time.time() - data["bench_t0"])
        if self.on_event is not None:
            self.on_event(event)
        self.arrived.set()

    async def _reset(self, _request: web.Request) -> web.Response:
        self.accepted.clear()
        self.events.clear()
        self.seen.clear()
        self.latencies.clear()
        self.arrival.clear()
        self.duplicates = self.bad_signatures = self.requests = 0
        return web.json_response(self.stats())

    async def _arrivals(self, _request: web.Request) -> web.Response:
        return web.json_response(self.arrival)

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def stats(self) -> dict[str, object]:
        ordered = sorted(self.latencies)
        pick = (lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]) if ordered else None
        return {
            "accepted": len(self.accepted),
            "duplicates": self.duplicates,
            "bad_signatures": self.bad_signatures,
            "requests": self.requests,
            "out_of_order": len(self.out_of_order()),
            "latency_p50_s": pick(0.5) if pick else None,
            "latency_p99_s": pick(0.99) if pick else None,
        }

    def out_of_order(self) -> list[str]:
        """Keys that arrived after a later version of the same contact."""
        last: dict[str, int] = {}
        wrong = []
        for key, rid, version in self.accepted:
            if version <= last.get(rid, 0):
                wrong.append(key)
            last[rid] = max(version, last.get(rid, 0))
        return wrong

    async def start(self, port: int | None = None) -> int:
        """Listen (again) on ``port`` (default: the previous one, else a free one)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port if port is None else port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection: the CRM is down (connection refused)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.accepted) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the CRM has {len(self.accepted)} of {count} records")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout=min(0.5, deadline - time.monotonic()))
            except TimeoutError:
                continue


async def _serve(port: int, secret: bytes, lifetime_s: float) -> None:
    crm = FakeCrm(secret)
    crm.keep_events = False  # a benchmark sends hundreds of thousands
    await crm.start(port)
    print(crm.port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=lifetime_s)
    await crm.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime-s", type=float, default=900)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, os.environ["CRM_SECRET"].encode(), args.lifetime_s))


if __name__ == "__main__":
    main()
