"""The ops listener of ``serve`` and ``records deliver``: ``/metrics``, ``/health``, ``/ready``.

A small aiohttp server on ``ops.host:ops.port`` (off unless a port is set; 127.0.0.1 by
default). It runs on the process's own event loop, so its handlers stay trivial: ``/health``
answers (the loop is alive), ``/ready`` reads a few flags, ``/metrics`` renders the registry of
:mod:`routing.metrics` (counters the process already keeps; no I/O). A scrape every few seconds
costs the calls nothing measurable (``docs/performance.md``).

``/ready`` is 200 when the process can take work: for ``serve``, the plan is loaded, FastAGI
listens and no drain has begun (SIGTERM flips it to 503 *before* the drain starts); for
``records deliver``, the worker runs and is not stopping. Otherwise 503 with the reasons.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from ivr.fastagi import SessionCounters
from routing.ami.consumer import AmiConsumer
from routing.metrics import AmiFigures, SessionFigures, render

log = structlog.get_logger("callrouter.ops")


@dataclass
class Readiness:
    """What ``/ready`` checks: every condition must hold (name -> held)."""

    conditions: dict[str, bool] = field(default_factory=dict)

    def set(self, name: str, held: bool) -> None:
        self.conditions[name] = held

    def missing(self) -> list[str]:
        return [name for name, held in self.conditions.items() if not held]


def session_figures(counters: SessionCounters) -> SessionFigures:
    """The FastAGI server's counters as the metrics' failure kinds (see ``docs/operations.md``)."""
    return SessionFigures(
        started=counters.started,
        ended={
            "completed": counters.completed,
            "hangup": counters.hung_up,
            "failed": counters.failed,
            "cancelled": counters.cancelled,
        },
        failures={
            "peer_refused": counters.refused,
            "admission_refused": counters.rejected,
            "evicted": counters.evicted,
            "protocol_error": counters.bad_requests,
            "unknown_route": counters.unknown_routes,
            "handler_error": counters.failed - counters.timed_out,
            "timeout": counters.timed_out,
            "hangup": counters.hung_up,
        },
        active=counters.active,
    )


def ami_figures(consumer: AmiConsumer) -> AmiFigures:
    """The AMI consumer's counts, last event and lag, as the metrics read them."""
    last = consumer.last_event_at
    return AmiFigures(
        events=dict(consumer.types.counts),
        last_event_age_s=None if last is None else max(0.0, consumer.clock() - last),
        apply_lag_s=consumer.apply_lag_s,
        writer=consumer.is_writer,
    )


def ops_app(readiness: Readiness, metrics: Callable[[], tuple[bytes, str]] = render) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(_request: web.Request) -> web.Response:
        missing = readiness.missing()
        body = json.dumps({"ready": not missing, "missing": missing})
        return web.Response(text=body, status=503 if missing else 200, content_type="application/json")

    async def scrape(_request: web.Request) -> web.Response:
        body, content_type = metrics()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app = web.Application(client_max_size=1024)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", scrape)
    return app


class OpsListener:
    """The listener, started and stopped by its process; ``port``: the one bound (0 picks one)."""

    def __init__(self, host: str, port: int, readiness: Readiness) -> None:
        self.host, self.port, self.readiness = host, port, readiness
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(ops_app(self.readiness), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # the bound port, when 0 was asked for
        sockets = getattr(server, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("ops.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
