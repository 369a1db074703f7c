"""Every Prometheus metric callrouter exposes, in one place: name, help text, labels.

Nothing else in the project spells a metric name: the controller, the AMI consumer, the record
pump and the delivery worker call the thin functions and objects below, and ``/metrics`` (the
ops listener of ``serve`` and ``records deliver``, and the web service) renders :data:`REGISTRY`
with :func:`render`. :data:`CATALOGUE` lists every metric; ``docs/operations.md`` holds its table
(:func:`table`), a test keeps the two equal.

Two kinds of metric:

* counted as things happen (calls routed, decision latency, dead letters, delivery latency):
  prometheus_client counters and histograms, their label children cached per label values
  (:class:`RoutedCalls`), so a call pays a dict look-up and one increment;
* read when scraped (FastAGI sessions, AMI events and lag, live-state age, toggles active,
  records held): the process keeps plain counters it already had, and a *probe* registered
  here (:func:`watch`) turns them into samples at scrape time. Nothing is done per call.

Label cardinality is bounded: ``tenant`` values come from the plan in force (a dialled number
that no council owns is ``none``), never from caller input; ``kind`` and ``reason`` come from
the decision engine's own fixed sets; ``sink`` from the plan's sinks; AMI ``type`` from
Asterisk's event names, capped at :data:`AMI_TYPES_MAX` distinct values (then ``other``). No
label ever carries a caller's number, a dialled number or free text.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

NO_TENANT = "none"
AMI_TYPES_MAX = 200

DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
"""Seconds: a decision on cached live state takes tens of microseconds; 100 ms is far too long."""

WEB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
"""Seconds: an API answer from Redis takes a few milliseconds; a login's argon2 check ~50 ms."""

DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 3600.0)
"""Seconds from a record's append to the records stream to the CRM taking it (goal: 2 s from
hang-up); the long buckets show a CRM that was down."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric as exposed: ``name`` without the ``_total`` a counter's samples carry."""

    name: str
    kind: str  # counter, gauge, histogram, info
    help: str
    labels: tuple[str, ...] = ()
    where: str = "serve"  # the process exposing it: serve, deliver, any


CATALOGUE: tuple[Spec, ...] = (
    Spec("callrouter_info", "info", "this process: callrouter version, instance id and role",
         ("version", "instance", "role"), "any"),
    Spec("callrouter_calls_routed", "counter", "new calls routed (route), by tenant, destination kind and "
         "the decision's state", ("tenant", "kind", "reason")),
    Spec("callrouter_decision_seconds", "histogram", "time from a route's request to its decision "
         "(live state read and decided), by FastAGI route (route, menu, overflow)", ("route",)),
    Spec("callrouter_fastagi_sessions_started", "counter", "FastAGI sessions started (environment block "
         "received, route known, admitted)"),
    Spec("callrouter_fastagi_sessions_ended", "counter", "FastAGI sessions ended, by outcome (completed, "
         "hangup, failed, cancelled)", ("outcome",)),
    Spec("callrouter_fastagi_failures", "counter", "FastAGI connections or sessions that failed or were "
         "turned away, by kind (peer_refused, admission_refused, evicted, protocol_error, unknown_route, "
         "handler_error, timeout)", ("kind",)),
    Spec("callrouter_fastagi_sessions_active", "gauge", "FastAGI connections held now (pending and calls)"),
    Spec("callrouter_ami_events", "counter", "AMI events received (not DTMF), by event type", ("type",)),
    Spec("callrouter_ami_last_event_age_seconds", "gauge", "seconds since the last AMI event was received "
         "(absent before the first)"),
    Spec("callrouter_ami_apply_lag_seconds", "gauge", "for the last batch applied to Redis, seconds from "
         "the oldest event's receipt to its application"),
    Spec("callrouter_ami_writer", "gauge", "1 if this controller holds the AMI writer lease, else 0"),
    Spec("callrouter_live_state_age_seconds", "gauge", "seconds since the cached live state was last "
         "refreshed from Redis (absent before the first refresh)"),
    Spec("callrouter_toggles_active", "gauge", "supervisor toggles in force in the cached live state, by "
         "tenant and kind", ("tenant", "kind")),
    Spec("callrouter_plan_version", "gauge", "the published plan version in force (plan store)"),
    Spec("callrouter_plan_generation", "gauge", "plans taken by this process since start (1: the first)"),
    Spec("callrouter_records_pending", "gauge", "contact records this controller holds, decided but not "
         "yet appended to the records stream (its backlog)"),
    Spec("callrouter_records_backlog", "gauge", "record versions waiting for a sink (read from Redis by "
         "the delivery worker)", ("sink",), "deliver"),
    Spec("callrouter_records_delivery_seconds", "histogram", "seconds from a record version's append to "
         "the records stream to the sink taking it", ("sink",), "deliver"),
    Spec("callrouter_records_delivered", "counter", "record versions a sink took", ("sink",), "deliver"),
    Spec("callrouter_records_dead_letters", "counter", "record versions a sink refused (dead letters)",
         ("sink",), "deliver"),
    Spec("callrouter_web_requests", "counter", "HTTP requests answered, by route template (never the raw "
         "path), method and status class (2xx, 3xx, 4xx, 5xx)", ("route", "method", "status"), "web"),
    Spec("callrouter_web_request_seconds", "histogram", "seconds from a request's arrival to its response "
         "(a streamed response such as Server-Sent Events is counted, not timed), by route template",
         ("route",), "web"),
    Spec("callrouter_web_logins", "counter", "logins to the web page, by outcome (ok, failed, locked: "
         "refused for too many failures)", ("outcome",), "web"),
    Spec("callrouter_web_sse_streams", "gauge", "Server-Sent Events streams open now", (), "web"),
    Spec("callrouter_toggles_changed", "counter", "supervisor toggles switched by this process, by kind "
         "and action (on, off)", ("kind", "action"), "web"),
    Spec("callrouter_plans_changed", "counter", "plan versions made live by this process, by action "
         "(publish, rollback)", ("action",), "web"),
)  # fmt: skip

disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series: a process's start time is not worth one per child
SPECS = {spec.name: spec for spec in CATALOGUE}
REGISTRY = CollectorRegistry()
"""Every metric of this process; :func:`render` shows it."""


def _spec(name: str) -> Spec:
    return SPECS[name]


def _counter(name: str) -> Counter:
    s = _spec(name)
    return Counter(s.name, s.help, s.labels, registry=REGISTRY)


def _gauge(name: str) -> Gauge:
    s = _spec(name)
    return Gauge(s.name, s.help, s.labels, registry=REGISTRY)


def _histogram(name: str, buckets: tuple[float, ...]) -> Histogram:
    s = _spec(name)
    return Histogram(s.name, s.help, s.labels, buckets=buckets, registry=REGISTRY)


INFO = Info("callrouter", _spec("callrouter_info").help, registry=REGISTRY)
CALLS_ROUTED = _counter("callrouter_calls_routed")
DECISION_SECONDS = _histogram("callrouter_decision_seconds", DECISION_BUCKETS)
PLAN_VERSION = _gauge("callrouter_plan_version")
PLAN_GENERATION = _gauge("callrouter_plan_generation")
RECORDS_BACKLOG = _gauge("callrouter_records_backlog")
DELIVERY_SECONDS = _histogram("callrouter_records_delivery_seconds", DELIVERY_BUCKETS)
DELIVERED = _counter("callrouter_records_delivered")
DEAD_LETTERS = _counter("callrouter_records_dead_letters")
WEB_REQUESTS = _counter("callrouter_web_requests")
WEB_REQUEST_SECONDS = _histogram("callrouter_web_request_seconds", WEB_BUCKETS)
WEB_LOGINS = _counter("callrouter_web_logins")
TOGGLES_CHANGED = _counter("callrouter_toggles_changed")
PLANS_CHANGED = _counter("callrouter_plans_changed")


# --- setters for other parts -------------------------------------------------------------------


def set_info(role: str, instance: str | None = None) -> None:
    """Name this process (``serve``, ``deliver``, ``web``); instance: host:pid by default."""
    try:
        version = importlib.metadata.version("callrouter")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    INFO.info({"version": version, "instance": instance or f"{socket.gethostname()}:{os.getpid()}",
               "role": role})  # fmt: skip


def set_plan_version(version: int) -> None:
    """The published plan version now in force (the plan store's number)."""
    PLAN_VERSION.set(version)


def set_plan_generation(generation: int) -> None:
    """How many plans this process has taken (the first plan: 1; each accepted reload: +1)."""
    PLAN_GENERATION.set(generation)


class RoutedCalls:
    """``callrouter_calls_routed`` and ``callrouter_decision_seconds`` on the call path.

    The label children are cached in a dict: ``CALLS_ROUTED.labels(...)`` takes a lock and builds
    a key each time, which costs more than the increment itself. Measured
    (``benchmarks/metrics_bench.py``, ``docs/performance.md``): both updates of a route call
    take 1.65 us with the children cached, 3.98 us with ``.labels()`` on each call.
    ``tenant`` is the plan's tenant id or None (``none``): bounded by the plan; ``kind`` is the
    destination's type; ``reason`` the decision's state."""

    def __init__(self) -> None:
        self._routed: dict[tuple[str | None, type, str], Any] = {}
        self._latency: dict[str, Any] = {}

    def routed(self, tenant: str | None, destination: object, state: str) -> None:
        key = (tenant, type(destination), state)
        child = self._routed.get(key)
        if child is None:
            labels = (tenant or NO_TENANT, destination_kind(destination), state)
            child = self._routed[key] = CALLS_ROUTED.labels(*labels)
        child.inc()

    def decided(self, route: str, seconds: float) -> None:
        child = self._latency.get(route)
        if child is None:
            child = self._latency[route] = DECISION_SECONDS.labels(route)
        child.observe(seconds)


def destination_kind(destination: object) -> str:
    """``QueueDest`` -> ``queue``: the kind of a destination, from its type (a fixed set)."""
    name = type(destination).__name__
    return name.removesuffix("Dest").lower() or "unknown"


class SinkMetrics:
    """One delivery sink's counters, label children made once (``sink``: ``tenant/name`` from the plan)."""

    def __init__(self, sink: str) -> None:
        self.delivered = DELIVERED.labels(sink)
        self.dead_letters = DEAD_LETTERS.labels(sink)
        self.latency = DELIVERY_SECONDS.labels(sink)
        self.backlog = RECORDS_BACKLOG.labels(sink)


# --- the web service ----------------------------------------------------------------------------

WEB_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route matched (404, or 405 for an unknown method): its path
is the client's text, never a label."""


def status_class(status: int) -> str:
    """``404`` -> ``4xx``."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class WebRequests:
    """``callrouter_web_requests`` and ``callrouter_web_request_seconds`` in the web service's
    middleware, label children cached as :class:`RoutedCalls` does. ``route`` is the matched
    route's template (``/api/v1/tenants/{tenant}/toggles``) or :data:`UNMATCHED`, so the label
    values are bounded by the application's routes; a method outside :data:`WEB_METHODS` is
    ``other``."""

    def __init__(self) -> None:
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    def answered(self, route: str, method: str, status: int, seconds: float | None) -> None:
        """One request answered; ``seconds`` None for a streamed response (not timed)."""
        key = (route, method, status)
        child = self._counted.get(key)
        if child is None:
            labels = (route, method if method in WEB_METHODS else "other", status_class(status))
            child = self._counted[key] = WEB_REQUESTS.labels(*labels)
        child.inc()
        if seconds is not None:
            timer = self._timed.get(route)
            if timer is None:
                timer = self._timed[route] = WEB_REQUEST_SECONDS.labels(route)
            timer.observe(seconds)


LOGIN_OUTCOMES = ("ok", "failed", "locked")


def login(outcome: str) -> None:
    """A login to the web page: ``ok``, ``failed`` (wrong user or password) or ``locked``
    (refused for too many failed logins, no password checked)."""
    if outcome not in LOGIN_OUTCOMES:
        raise ValueError(f"login outcome {outcome!r} not one of {LOGIN_OUTCOMES}")
    WEB_LOGINS.labels(outcome).inc()


def toggle_changed(kind: str, on: bool) -> None:
    """A supervisor toggle stored (``routing.supervisor.apply_toggle``); ``kind`` is checked
    against the fixed kinds before this is called."""
    TOGGLES_CHANGED.labels(kind, "on" if on else "off").inc()


def plan_changed(action: str) -> None:
    """A plan version made live: ``publish`` or ``rollback`` (``routing.plan_store``)."""
    PLANS_CHANGED.labels(action).inc()


# --- probes: read when scraped -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """The FastAGI server's counters (``ivr.fastagi.server.SessionCounters``) as the probe reads them."""

    started: int
    ended: dict[str, int]
    failures: dict[str, int]
    active: int


@dataclass(frozen=True, slots=True)
class AmiFigures:
    events: dict[str, int]
    last_event_age_s: float | None
    apply_lag_s: float | None
    writer: bool


@dataclass
class Probes:
    """Callables the running process registers (:func:`watch`); each is read at scrape time."""

    sessions: Callable[[], SessionFigures] | None = None
    ami: Callable[[], AmiFigures] | None = None
    live_age_s: Callable[[], float | None] | None = None
    toggles: Callable[[], Iterable[tuple[str, str]]] | None = None
    records_pending: Callable[[], int] | None = None
    sse_streams: Callable[[], int] | None = None


PROBES = Probes()


def watch(**probes: Any) -> None:
    """Register what the probes read: ``sessions``, ``ami``, ``live_age_s``, ``toggles``
    (pairs tenant, kind), ``records_pending``, ``sse_streams`` (the web service's live event
    streams open); None forgets one."""
    for name, probe in probes.items():
        if not hasattr(PROBES, name):
            raise TypeError(f"no probe {name!r}")
        setattr(PROBES, name, probe)


def _family(name: str) -> Metric:
    s = _spec(name)
    if s.kind == "counter":
        return CounterMetricFamily(s.name, s.help, labels=s.labels)
    return GaugeMetricFamily(s.name, s.help, labels=s.labels)


class _ProbeCollector(Collector):
    """The scraped-time metrics: a probe that raises is skipped (the scrape still answers)."""

    def describe(self) -> Iterable[Metric]:
        return [_family(name) for name in _PROBED]

    def collect(self) -> Iterator[Metric]:
        for reader in (self._sessions, self._ami, self._live, self._toggles, self._records, self._streams):
            try:
                yield from reader()
            except Exception:  # noqa: S112 - a probe of a part stopping must not break the scrape
                continue

    def _sessions(self) -> Iterator[Metric]:
        if PROBES.sessions is None:
            return
        figures = PROBES.sessions()
        started = _family("callrouter_fastagi_sessions_started")
        started.add_metric([], figures.started)  # type: ignore[attr-defined]
        ended = _family("callrouter_fastagi_sessions_ended")
        for outcome, n in figures.ended.items():
            ended.add_metric([outcome], n)  # type: ignore[attr-defined]
        failures = _family("callrouter_fastagi_failures")
        for kind, n in figures.failures.items():
            failures.add_metric([kind], n)  # type: ignore[attr-defined]
        active = _family("callrouter_fastagi_sessions_active")
        active.add_metric([], figures.active)  # type: ignore[attr-defined]
        yield from (started, ended, failures, active)

    def _ami(self) -> Iterator[Metric]:
        if PROBES.ami is None:
            return
        figures = PROBES.ami()
        events = _family("callrouter_ami_events")
        for kind, n in figures.events.items():
            events.add_metric([kind], n)  # type: ignore[attr-defined]
        yield events
        writer = _family("callrouter_ami_writer")
        writer.add_metric([], 1 if figures.writer else 0)  # type: ignore[attr-defined]
        yield writer
        if figures.last_event_age_s is not None:
            age = _family("callrouter_ami_last_event_age_seconds")
            age.add_metric([], figures.last_event_age_s)  # type: ignore[attr-defined]
            yield age
        if figures.apply_lag_s is not None:
            lag = _family("callrouter_ami_apply_lag_seconds")
            lag.add_metric([], figures.apply_lag_s)  # type: ignore[attr-defined]
            yield lag

    def _live(self) -> Iterator[Metric]:
        age = PROBES.live_age_s() if PROBES.live_age_s is not None else None
        if age is not None:
            family = _family("callrouter_live_state_age_seconds")
            family.add_metric([], age)  # type: ignore[attr-defined]
            yield family

    def _toggles(self) -> Iterator[Metric]:
        if PROBES.toggles is None:
            return
        counts: dict[tuple[str, str], int] = {}
        for tenant, kind in PROBES.toggles():
            counts[tenant, kind] = counts.get((tenant, kind), 0) + 1
        family = _family("callrouter_toggles_active")
        for (tenant, kind), n in sorted(counts.items()):
            family.add_metric([tenant, kind], n)  # type: ignore[attr-defined]
        yield family

    def _records(self) -> Iterator[Metric]:
        if PROBES.records_pending is not None:
            family = _family("callrouter_records_pending")
            family.add_metric([], PROBES.records_pending())  # type: ignore[attr-defined]
            yield family

    def _streams(self) -> Iterator[Metric]:
        if PROBES.sse_streams is not None:
            family = _family("callrouter_web_sse_streams")
            family.add_metric([], PROBES.sse_streams())  # type: ignore[attr-defined]
            yield family


_PROBED = (
    "callrouter_fastagi_sessions_started", "callrouter_fastagi_sessions_ended", "callrouter_fastagi_failures",
    "callrouter_fastagi_sessions_active", "callrouter_ami_events", "callrouter_ami_last_event_age_seconds",
    "callrouter_ami_apply_lag_seconds", "callrouter_ami_writer", "callrouter_live_state_age_seconds",
    "callrouter_toggles_active", "callrouter_records_pending", "callrouter_web_sse_streams",
)  # fmt: skip
REGISTRY.register(_ProbeCollector())


class AmiTypes:
    """AMI events counted by type in a plain dict (no lock, no prometheus call per event); at
    most :data:`AMI_TYPES_MAX` distinct types, the rest as ``other``."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, event: str) -> None:
        counts = self.counts
        if event in counts:
            counts[event] += 1
        elif len(counts) < AMI_TYPES_MAX:
            counts[event] = 1
        else:
            counts["other"] = counts.get("other", 0) + 1


def age_since(monotonic_at: float | None, now: Callable[[], float] = time.monotonic) -> float | None:
    return None if monotonic_at is None else max(0.0, now() - monotonic_at)


# --- exposition ----------------------------------------------------------------------------------


def render() -> tuple[bytes, str]:
    """``/metrics``: the Prometheus text of :data:`REGISTRY` and its content type (for any web
    framework: ``body, content_type = render()``)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def table() -> str:
    """The markdown table of :data:`CATALOGUE` (``docs/operations.md`` holds it verbatim)."""
    lines = ["| metric | type | labels | process | meaning |", "|---|---|---|---|---|"]
    for s in CATALOGUE:
        name = f"{s.name}_total" if s.kind == "counter" else s.name
        labels = ", ".join(f"`{label}`" for label in s.labels) or "—"
        lines.append(f"| `{name}` | {s.kind} | {labels} | {s.where} | {s.help} |")
    return "\n".join(lines)
