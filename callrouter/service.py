"""``callrouter serve``: the controller process.

FastAGI on 127.0.0.1:4573 by default, live state from Redis (refreshed in the background, off
the call path), structured JSON logs on stdout. Every setting comes from ``callrouter.settings``
(flag > environment > settings file > default), as for ``toggle`` and ``state``.
SIGHUP, or a change to the plan file, reloads the plan only if it validates; SIGTERM drains
(stop accepting, let calls in progress finish their step, then close).

``plan_source`` says where the plan comes from, never both: ``file`` (``--plan``, watched and
reloaded as above) or ``store`` (the live version published in Redis, ``routing.plan_store``,
followed by :class:`StoreFollower`; ``--plan`` then only seeds an empty store).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import os
import pickle
import pwd
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from callrouter import settings as settings_module
from callrouter import systemd
from callrouter.logs import configure_logging
from callrouter.ops import OpsListener, Readiness, ami_figures, session_figures
from callrouter.redis_client import RedisTarget, connect
from callrouter.settings import Settings
from callrouter.workers import WORKER_FLAG, supervise
from ivr.callback_desk import NoCallbackDesk, RedisCallbackDesk
from ivr.controller import Clock, Controller, LiveSource, NoLiveState, PlanError, PlanHolder, utc_now
from ivr.dialler import DIALLER_DEFAULTS, Dialler, DiallerSettings
from ivr.fastagi import FastAgiServer, ServerConfig, serve_until_signal
from records.appender import Ownership, StreamSink, TeeSink
from records.builder import RecordBuilder
from records.dispositions import DispositionInbox
from records.journal import FactJournal, JournalInUse, read_journal
from records.model import ContactRecord
from records.outbox import JsonlSink, RecordPump, RecordSink, stop_pump
from records.stream import RecordStream
from routing import plan_store
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.core.decide import CompiledPlan
from routing.core.plan import Plan, Tenant
from routing.live.source import CachedLiveSource
from routing.metrics import age_since, set_info, watch
from routing.plan_file import (
    DEFAULT_LIMITS,
    LimitReached,
    Limits,
    LoadResult,
    PlanSource,
    load_source,
    plan_files,
    read_source,
    unreadable,
)
from routing.plan_worker import DEFAULT_WORKER_LIMITS, Checked, WorkerLimits, check_in_worker
from routing.redis_keys import KEYS, RedisKeys
from routing.replicas import NO_WAIT, ReplicaWait
from routing.supervisor import MAX_BY, audit, facts_json, plan_facts
from routing.toggle_mac import ToggleKeyring
from routing.withdrawer import ami_pipeline

log = structlog.get_logger("callrouter.service")
LONDON = ZoneInfo("Europe/London")
EXIT_CANNOT_LISTEN = 3


@dataclass(frozen=True)
class ServeOptions:
    plan: Path | None
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    redis: str | None = "redis://127.0.0.1:6379/0"
    redis_password: str | None = field(default=None, repr=False)
    redis_target: RedisTarget | None = None  # from the settings (Sentinel); unset: redis + redis_password
    redis_wait: ReplicaWait = NO_WAIT  # replicas each record version waits for (off: 0)
    keys: RedisKeys = KEYS  # the centre's key schema (redis.key_tag)
    live_timeout: float = 0.25
    refresh_s: float = 0.25
    max_sessions: int = 1000
    call_timeout: float = 300.0
    drain_timeout: float = 30.0
    watch_interval: float = 2.0
    clock_start: datetime | None = None
    clock_speed: float = 1.0
    ami: AmiSettings | None = None
    withdraw_interval: float = 5.0
    allowed_peers: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    max_sessions_per_peer: int = 1000
    max_pending: int = 128
    plan_publish_interval: float = 1.0
    records_key: bytes | None = field(default=None, repr=False)
    records_outbox: Path | None = None
    toggle_keyring: ToggleKeyring | None = field(default=None, repr=False)
    plan_source: str = "file"  # file | store (docs/routing-plan.md, "Which plan is in force")
    store_poll_s: float = 0.2  # with plan_source = store: the fallback poll of the live version
    store_max_wait_s: float = plan_store.MAX_WAIT_S  # never longer after noticing a new version
    ops_host: str = "127.0.0.1"
    ops_port: int | None = None
    records_journal: Path | None = None
    worker: int | None = None  # serve --workers: this worker's index (None: the only process)
    callbacks: DiallerSettings | None = DIALLER_DEFAULTS  # None: no callback dialler

    @classmethod
    def from_settings(cls, settings: Settings, centre: str, **options: object) -> ServeOptions:
        """The options of ``serve`` from the settings (``centre``: the plan's, unless set)."""
        ami = settings.ami
        if ami is not None and not ami.centre:
            ami = dataclasses.replace(ami, centre=centre)
        password = settings.redis.password
        key = settings.records.caller_hash_key
        store = settings.plan_source == "store"
        if store and not settings.redis.enabled:
            raise settings_module.SettingsError("plan_source = store needs Redis: drop --no-redis")
        values: dict[str, object] = {
            "plan": settings.plan if store else settings.require_plan(),
            "plan_source": settings.plan_source,
            "agi_host": settings.agi.host,
            "agi_port": settings.agi.port,
            "redis": settings.redis.url if settings.redis.enabled else None,
            "redis_password": password.get_secret_value() if password else None,
            "redis_target": settings.redis_target() if settings.redis.enabled else None,
            "redis_wait": settings.replica_wait(),
            "keys": settings.redis_keys(),
            "live_timeout": settings.live_timeout_s,
            "max_sessions": settings.agi.max_sessions,
            "call_timeout": settings.agi.call_timeout_s,
            "drain_timeout": settings.agi.drain_timeout_s,
            "watch_interval": settings.watch_interval_s,
            "ami": ami,
            "allowed_peers": settings.agi.allowed_peers,
            "max_sessions_per_peer": settings.agi.max_sessions_per_peer,
            "max_pending": settings.agi.max_pending,
            "records_key": key.get_secret_value().encode("utf-8") if key else None,
            "records_outbox": settings.records.outbox,
            "toggle_keyring": settings.toggle_keyring(),
            "ops_host": settings.ops.host,
            "ops_port": settings.ops.port,
            "records_journal": settings.records.journal,
            "callbacks": _dialler_settings(settings),
        }
        return cls(**{**values, **options})  # type: ignore[arg-type]


def _dialler_settings(settings: Settings) -> DiallerSettings | None:
    c = settings.callbacks
    if not c.enabled:
        return None
    return DiallerSettings(
        interval_s=c.interval_s,
        adviser_wait_s=c.adviser_wait_s,
        lost_after_s=c.lost_after_s,
        talk_bound_s=c.talk_bound_s,
    )


def for_worker(options: ServeOptions, index: int) -> ServeOptions:
    """The options of worker ``index`` of ``serve --workers N``: the same FastAGI port (shared,
    SO_REUSEPORT), its own ops port (``ops.port`` + index) and its own fact journal folder
    (``worker-<index>`` inside ``records.journal``: one controller per journal)."""
    return dataclasses.replace(
        options,
        worker=index,
        ops_port=options.ops_port + index if options.ops_port is not None else None,
        records_journal=(
            options.records_journal / f"worker-{index}" if options.records_journal is not None else None
        ),
    )


def check_workers(settings: Settings) -> None:
    """``serve --workers N`` (N > 1) needs ports known in advance: each worker binds them itself."""
    if settings.workers > 1 and settings.agi.port == 0:
        raise settings_module.SettingsError(
            "--workers needs a fixed --agi-port: with port 0 each worker would pick its own"
        )
    if settings.workers > 1 and settings.ops.port == 0:
        raise settings_module.SettingsError(
            "--workers needs a fixed --ops-port (worker I listens on ops.port + I), or none"
        )


def rehearsal_clock(start: datetime, speed: float, real: Clock = utc_now) -> Clock:
    """A clock that starts at ``start`` and runs ``speed`` times faster than real time.

    For rehearsals and demonstrations only (``serve --clock-start``): see what the plan does
    at 17:29 without waiting for 17:29."""
    origin = real()

    def now() -> datetime:
        return start + (real() - origin) * speed

    return now


def plan_owner(path: Path) -> str:
    """The owner of the plan's newest file: who changed it."""
    files = [f for f in plan_files(path) if f.exists()]
    newest = max(files, key=lambda f: f.stat().st_mtime, default=None)
    if newest is None:
        return "unknown"
    uid = newest.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def first_plan(path: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[PlanHolder, str]:
    """The plan to start with, and the sha256 of exactly the bytes it was read from."""
    try:
        source = read_source(path, limits)
    except (LimitReached, OSError) as exc:
        raise PlanError(unreadable(exc)) from None
    result = load_source(source, limits)
    if not result.ok or result.plan is None:
        raise PlanError(result)
    return PlanHolder(path, CompiledPlan.compile(result.plan)), source.digest()


# Between two pieces of a plan being built or freed, the event loop waits this long: calls in
# progress go first, and a reload takes the controller's core a fraction of the time only. With
# no pause (sleep(0)) calls took twice as long while a 5.7 MB plan was rebuilt (reload_bench).
PACE_S = 0.001


async def rebuild(checked: Checked) -> tuple[LoadResult, CompiledPlan | None]:
    """The worker's answer as a plan in this process, built a tenant at a time on the event
    loop, calls answered between tenants (``PACE_S``); then compiled (in a thread).

    The cyclic garbage collector is paused meanwhile: building a large plan's objects sets
    off full collections, each holding the interpreter lock for as long as it scans the heap
    (0.4 s with a 5.7 MB plan alive: benchmarks/reload_bench.py), and calls wait meanwhile."""
    if checked.shell is None:
        return LoadResult(None, checked.problems), None
    gc.disable()
    try:
        shell: Plan = pickle.loads(checked.shell)  # noqa: S301 - our own worker's answer
        tenants: dict[str, Tenant] = {}
        for tid, piece in checked.tenants:
            tenants[tid] = pickle.loads(piece)  # noqa: S301 - our own worker's answer
            await asyncio.sleep(PACE_S)
        plan = shell.model_copy(update={"tenants": tenants})
        compiled = await asyncio.to_thread(CompiledPlan.compile, plan)
    finally:
        settle_memory()  # before the collector restarts: else its first pass scans the new plan
        gc.enable()
    return LoadResult(plan, checked.problems), compiled


@contextlib.contextmanager
def short_turns(seconds: float = 0.0005) -> Iterator[None]:
    """While a thread builds or frees a plan, the event loop gets the interpreter lock back
    within ``seconds`` of asking, rather than Python's 5 ms: a call waits for the lock at each
    of its reads and writes, and 5 ms at each adds up (benchmarks/reload_bench.py)."""
    usual = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(usual)


GC_THRESHOLDS = (700, 10, 100)
"""The collector's thresholds in ``serve``: Python's for the young generations (700, 10), whose
collections stay short (about 0.5 ms and 1 ms of CPU at most at 100 calls/s), and full
collections ten times rarer than Python's 10 (each walks every object not frozen: ~9 ms after a
minute of calls held by the records builder). Larger young thresholds were measured and not
taken: each collection grows with them (2,000: middle ones of ~3 ms; 20,000: young ones of
2.5-4 ms) for ~3-6 % less CPU per call. ``benchmarks/tail_bench.py``; ``docs/performance.md``,
"Tail latency"."""


def tune_collector() -> None:
    """Make full collections rarer once started (see :data:`GC_THRESHOLDS`); the objects alive
    at start are frozen out of the collector's sight first (:func:`settle_memory`)."""
    gc.set_threshold(*GC_THRESHOLDS)


def settle_memory() -> None:
    """Move the objects alive now (the plan in force above all) out of the collector's sight:
    with a large plan, each full collection would otherwise scan it again, holding up calls."""
    gc.freeze()


async def retire(box: list[CompiledPlan], wait_s: float = 10.0) -> None:
    """Free a replaced plan a tenant at a time, calls answered between tenants, once no call
    holds it any more (or after ``wait_s``). Freeing a 5.7 MB plan in one go holds the
    interpreter for about 60 ms."""
    old = box.pop()
    for _ in range(int(wait_s / 0.05)):  # nothing tells when the last call lets go: look
        if sys.getrefcount(old) <= 2:  # this function's reference and getrefcount's own
            break
        await asyncio.sleep(0.05)
    pieces: list[object] = [*old.plan.tenants.values(), *old.calendars.values()]
    del old
    while pieces:
        del pieces[-16:]  # freeing a tenant is cheaper than building one
        await asyncio.sleep(PACE_S)
    log.info("plan.retired")


@dataclass
class PlanReloader:
    """Reloads the plan without holding up calls; one change of the plan, one reload.

    SIGHUP and the file watcher both call :meth:`reload`. Reloads run one at a time; the
    files are read once, in a thread, and a plan whose bytes hash (sha256) to those of the
    last plan tried, taken or refused, is not tried again: a save followed by a SIGHUP (or a
    SIGHUP with nothing changed) is one reload and one audit entry, not two. The bytes are
    checked in a worker process (:mod:`routing.plan_worker`: memory cap, deadline), the
    result compiled in a thread, and the plan in force swapped in one assignment."""

    holder: PlanHolder
    redis: Redis | None
    last_digest: str | None = None
    limits: Limits = DEFAULT_LIMITS
    worker: WorkerLimits = DEFAULT_WORKER_LIMITS
    keys: RedisKeys = KEYS
    _lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    async def reload(self, trigger: str) -> str:
        """``"accepted"``, ``"rejected"`` or ``"unchanged"`` (nothing tried, nothing audited)."""
        async with self._lock:
            try:
                source = await asyncio.to_thread(read_source, self.holder.path, self.limits)
            except (LimitReached, OSError) as exc:
                refused = unreadable(exc)
                if self._seen("unreadable: " + str(refused.problems[0]), trigger):
                    return "unchanged"
                return await self._settle(refused, None, None, trigger)
            digest = source.digest()
            if self._seen(digest, trigger):
                return "unchanged"
            started = time.monotonic()
            checked = await check_in_worker(source, self.limits, self.worker)
            log.info("plan.checked", path=str(self.holder.path), seconds=round(time.monotonic() - started, 2))
            with short_turns():
                result, compiled = await rebuild(checked)
            replaced = [self.holder.current]
            outcome = await self._settle(result, compiled, digest, trigger)
            if outcome == "accepted":
                await retire(replaced)
            return outcome

    def _seen(self, key: str, trigger: str) -> bool:
        """Whether this plan was the last one tried; else remember it as the last one tried."""
        if key == self.last_digest:
            log.info(
                "plan.unchanged", path=str(self.holder.path), trigger=trigger, version=self.holder.version
            )
            return True
        self.last_digest = key
        return False

    async def _settle(
        self, result: LoadResult, compiled: CompiledPlan | None, digest: str | None, trigger: str
    ) -> str:
        """Take or refuse the plan and record it in the audit trail."""
        taken = self.holder.take(result, compiled)
        if taken:
            settle_memory()
        await self._audit(result, taken, digest, trigger)
        return "accepted" if taken else "rejected"

    async def _audit(self, result: LoadResult, taken: bool, digest: str | None, trigger: str) -> None:
        """Record the engineer's change in the audit trail."""
        if self.redis is None:
            return
        what = "plan.reload.accepted" if taken else "plan.reload.rejected"
        problems = [str(p) for p in result.problems if p.severity == "error"][:20]
        details = {"path": str(self.holder.path), "sha256": digest, "version": self.holder.version}
        try:
            owner = await asyncio.to_thread(plan_owner, self.holder.path)
            await audit(
                self.redis, what, owner, utc_now(), {**details, "trigger": trigger, "problems": problems},
                keys=self.keys,
            )  # fmt: skip
        except Exception as exc:  # the reload itself stands; the log line says the audit entry is missing
            log.warning("audit.not_written", what=what, error=type(exc).__name__)


STORE_PATH = Path("(plan store)")
"""The holder's ``path`` with ``plan_source = store``: in log lines, the plan's version and
generation say which one is in force."""


class StoreStartError(Exception):
    """``plan_source = store`` and no plan to start with; the message says what to do."""


async def first_from_store(options: ServeOptions, redis: Redis, instance: str) -> PlanHolder:
    """The live version of the plan store, loaded. An empty store is seeded with the ``--plan``
    file as version 1 (author "controller HOST:PID", audited; several controllers starting at
    once store it once); with no ``--plan`` the controller refuses to start."""
    try:
        current = await plan_store.live(redis, keys=options.keys)
        if current is None:
            current = await _seed(options, redis, instance)
        version = await plan_store.get(redis, current.version, keys=options.keys)
    except (StoreStartError, PlanError):
        raise
    except (RedisError, OSError) as exc:  # Redis's own words hold no secret
        raise StoreStartError(f"cannot read the plan store in Redis: {type(exc).__name__}: {exc}") from None
    if version is None:
        raise StoreStartError(f"the live version {current.version} is missing from the plan store")
    result = plan_store.validate(version.text)
    if not result.ok or result.plan is None:
        raise PlanError(result)
    holder = PlanHolder(STORE_PATH, CompiledPlan.compile(result.plan))
    holder.generation = current.generation
    log.info("plan.from_store", version=current.version, generation=current.generation, sha256=current.sha256)
    return holder


async def _seed(options: ServeOptions, redis: Redis, instance: str) -> plan_store.Live:
    if options.plan is None:
        raise StoreStartError(
            "plan_source is store and the plan store is empty: publish a plan first "
            "(callrouter plan publish FILE --comment ...), or give --plan FILE to store it as version 1"
        )
    if options.plan.is_dir():
        raise StoreStartError(f"--plan {options.plan}: the plan store keeps one file, not a folder")
    try:
        text = await asyncio.to_thread(options.plan.read_text, "utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreStartError(f"cannot read --plan {options.plan}: {exc}") from None
    try:
        change = await plan_store.publish(
            redis, text, f"controller {instance}"[:MAX_BY], f"first version, from {options.plan.name}",
            utc_now(), first_only=True, delay_s=0.0, keys=options.keys,
        )  # fmt: skip
    except plan_store.PlanStoreError as exc:
        raise PlanError(LoadResult(None, exc.problems or [])) from None
    log.info("plan.store_seeded", message=change.message, changed=change.changed)
    return change.live


@dataclass
class StoreFollower:
    """Follows the plan store: on a new generation (pub/sub notice, or the poll every
    ``poll_s``), fetches and validates that version at once (worker process, as a reload), then
    swaps it in at the generation's activation time, so every controller switches together.

    A version that fails to load here keeps the plan in force and is logged as an error (it
    should not happen: versions are validated when published); it is not tried again."""

    holder: PlanHolder
    redis: Redis
    poll_s: float = 0.2
    max_wait_s: float = plan_store.MAX_WAIT_S
    limits: Limits = DEFAULT_LIMITS
    worker: WorkerLimits = DEFAULT_WORKER_LIMITS
    keys: RedisKeys = KEYS
    seen: int = 0
    _failing: bool = False

    def __post_init__(self) -> None:
        self.seen = self.holder.generation or 0

    async def run(self) -> None:
        pubsub = self.redis.pubsub()
        listening = False
        try:
            while True:
                try:
                    if not listening:
                        await pubsub.subscribe(self.keys.plan_changed_channel())
                        listening = True
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll_s)
                except Exception as exc:  # Redis gone: poll (and try to listen) again shortly
                    listening = False
                    self._trouble("plan.store_unreachable", exc)
                    with contextlib.suppress(Exception):
                        await pubsub.reset()
                    await asyncio.sleep(self.poll_s)
                await self.check()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.reset()  # unsubscribes and gives its connection back

    def _trouble(self, event: str, exc: BaseException) -> None:
        if not self._failing:
            log.warning(event, error=type(exc).__name__, kept_generation=self.holder.generation)
        self._failing = True

    async def check(self) -> str:
        """``"switched"``, ``"rejected"``, ``"unchanged"`` or ``"unreachable"``."""
        try:
            current = await plan_store.live(self.redis, keys=self.keys)
        except Exception as exc:
            self._trouble("plan.store_unreachable", exc)
            return "unreachable"
        self._failing = False
        if current is None or current.generation <= self.seen:
            return "unchanged"
        noticed = utc_now()
        log.info("plan.store_notice", generation=current.generation, version=current.version)
        try:
            version = await plan_store.get(self.redis, current.version, keys=self.keys)
        except Exception as exc:
            self._trouble("plan.store_unreachable", exc)
            return "unreachable"  # seen unchanged: tried again next time round
        self.seen = current.generation
        if version is None or version.info.sha256 != current.sha256:
            log.error("plan.store_rejected", generation=current.generation, version=current.version,
                      kept_generation=self.holder.generation, problems=["the version is missing or altered"],
                      )  # fmt: skip
            return "rejected"
        return await self._switch(current, version, noticed)

    async def _switch(self, current: plan_store.Live, version: plan_store.Version, noticed: datetime) -> str:
        result, compiled = await self._prepare(current, version.text)
        if not result.ok or compiled is None:
            log.error("plan.store_rejected", generation=current.generation, version=current.version,
                      kept_generation=self.holder.generation,
                      problems=[str(p) for p in result.problems if p.severity == "error"][:20])  # fmt: skip
            return "rejected"
        await asyncio.sleep(plan_store.switch_delay(current.activate_at, utc_now(), noticed, self.max_wait_s))
        replaced = [self.holder.current]
        self.holder.take(result, compiled, generation=current.generation)
        switched = time.time()
        settle_memory()
        log.info(
            "plan.switched", generation=current.generation, version=current.version, sha256=current.sha256,
            switched_at=round(switched, 6), late_s=round(switched - current.activate_at.timestamp(), 4),
        )  # fmt: skip
        await retire(replaced)
        return "switched"

    async def _prepare(self, current: plan_store.Live, text: str) -> tuple[LoadResult, CompiledPlan | None]:
        """The version validated and compiled. A small plan (all real ones) is checked in a
        thread here: a worker process takes 0.8 s or more just to start on a busy host, most of
        the one second a switch may take; a large one goes to the worker, as a reload does."""
        with short_turns():
            if len(text) <= plan_store.SMALL_PLAN_CHARS:
                result = await asyncio.to_thread(plan_store.validate, text, self.limits)
                plan = result.plan if result.ok else None
                return result, await asyncio.to_thread(CompiledPlan.compile, plan) if plan else None
            files = ((plan_store.PLAN_NAME, text.encode()),)
            checked = await check_in_worker(
                PlanSource(f"plan version {current.version}", files), self.limits, self.worker
            )
            return await rebuild(checked)


def _stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of each file of the plan."""
    found = []
    for file in plan_files(path):
        with contextlib.suppress(OSError):
            info = file.stat()
            found.append((file.name, info.st_mtime_ns, info.st_size))
    return tuple(found)


async def watch_plan(
    reloader: PlanReloader, interval: float, seen: tuple[tuple[str, int, int], ...], settle: float = 0.1
) -> None:
    """Reload the plan when its file (or any file of its folder) changes from ``seen``, the
    files as they were before the plan in force was read (so a save while the controller was
    starting is not missed; if the bytes turn out the same, the reload says "unchanged").

    A change is acted on once the files have stopped changing for ``settle`` seconds, so
    an editor still writing does not cause a reload of half a file."""
    path = reloader.holder.path
    while True:
        await asyncio.sleep(interval)
        current = await asyncio.to_thread(_stamp, path)
        if current == seen:
            continue
        while True:
            await asyncio.sleep(min(settle, interval))
            again = await asyncio.to_thread(_stamp, path)
            if again == current:
                break
            current = again
        seen = current
        await reloader.reload("file changed")


Stamp = tuple[tuple[str, int, int], ...]


async def _start_plan(
    options: ServeOptions, instance: str
) -> tuple[PlanHolder, str | None, Stamp, Redis | None] | int:
    """The plan to start with (from the file or the store), the sha256 of the file's bytes, the
    file's stamp for the watcher, and the Redis client; or exit 1 with the reason on stderr."""
    try:
        if options.plan_source == "store":
            holder, redis = await _holder_from_store(options, instance)
            return holder, None, (), redis
        path = _plan_path(options)
        stamp = _stamp(path)  # before reading: a save from now on is seen by the watcher
        holder, digest = first_plan(path)
    except PlanError as exc:
        print(f"callrouter: the plan has errors, not starting:\n{exc}", file=sys.stderr)
        return 1
    except StoreStartError as exc:
        print(f"callrouter: {exc}", file=sys.stderr)
        return 1
    return holder, digest, stamp, _redis(options)


def _with_centre(options: ServeOptions, centre: str) -> ServeOptions:
    """The AMI centre defaults to the plan's."""
    if options.ami is None or options.ami.centre:
        return options
    return dataclasses.replace(options, ami=dataclasses.replace(options.ami, centre=centre))


def _plan_watcher(
    options: ServeOptions, reloader: PlanReloader, redis: Redis | None, stamp: Stamp
) -> Coroutine[Any, Any, None]:
    """What keeps the plan up to date: the store follower, or the plan file's watcher."""
    if options.plan_source == "store" and redis is not None:
        follower = StoreFollower(
            reloader.holder, redis, poll_s=options.store_poll_s, max_wait_s=options.store_max_wait_s,
            keys=options.keys,
        )  # fmt: skip
        return follower.run()
    return watch_plan(reloader, options.watch_interval, stamp)


def _plan_path(options: ServeOptions) -> Path:
    if options.plan is None:
        raise settings_module.SettingsError("no plan: give --plan PLAN (or plan_source = store)")
    return options.plan


def _redis_shown(options: ServeOptions) -> str | None:
    """Which Redis, for the start log: the URL without its password, the sentinels, or the
    cluster's seed node."""
    if options.redis is None:
        return None
    if options.redis_target is not None and (options.redis_target.sentinels or options.redis_target.cluster):
        return options.redis_target.describe()
    return settings_module.redacted(options.redis)


def _redis(options: ServeOptions) -> Redis | None:
    if options.redis is None:
        return None
    target = options.redis_target or RedisTarget(options.redis, options.redis_password)
    return connect(target, connect_timeout=0.5, timeout=2.0)


async def _holder_from_store(options: ServeOptions, instance: str) -> tuple[PlanHolder, Redis]:
    redis = _redis(options)
    if redis is None:
        raise StoreStartError("plan_source = store needs Redis")
    try:
        return await first_from_store(options, redis, instance), redis
    except BaseException:
        await redis.aclose()
        raise


def _live_source(
    options: ServeOptions, holder: PlanHolder, redis: Redis | None
) -> tuple[LiveSource, CachedLiveSource | None]:
    if redis is None:
        return NoLiveState(), None
    cached = CachedLiveSource(
        redis, lambda: holder.current, refresh_s=options.refresh_s, keyring=options.toggle_keyring,
        # live figures older than ami.stale_age_s count as unknown (partner snapshots too)
        max_age_s=(options.ami or AmiSettings()).stale_age_s, keys=options.keys,
    )  # fmt: skip
    return cached, cached


def _install_uvloop() -> str:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, imported only when present
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def server_config(options: ServeOptions) -> ServerConfig:
    """The FastAGI server's limits from the options."""
    return ServerConfig(
        host=options.agi_host,
        port=options.agi_port,
        max_sessions=options.max_sessions,
        call_timeout=options.call_timeout,
        allowed_peers=options.allowed_peers,
        max_sessions_per_peer=options.max_sessions_per_peer,
        max_pending=options.max_pending,
        reuse_port=options.worker is not None,
    )


async def publish_plan(holder: PlanHolder, redis: Redis, interval: float, keys: RedisKeys = KEYS) -> None:
    """Keep the plan in force (its councils, zones, queues and announcements) in Redis, for
    ``callrouter toggle`` run without a plan; written at start and after each accepted reload."""
    published = -1
    failures = 0
    while True:
        if holder.version != published:
            version = holder.version
            value = facts_json(plan_facts(holder.current.plan), str(holder.path), version, utc_now())
            try:
                await redis.set(keys.plan_in_force(), value)
                published, failures = version, 0
            except Exception as exc:  # Redis down: try again next time round
                failures += 1
                if failures == 1:
                    log.warning("plan.not_published", error=type(exc).__name__)
        await asyncio.sleep(interval)


async def serve(options: ServeOptions, ready: Callable[[int], None] | None = None) -> int:
    """Run the controller until SIGTERM/SIGINT; returns the exit code."""
    instance = f"{socket.gethostname()}:{os.getpid()}"
    store = options.plan_source == "store"
    start = await _start_plan(options, instance)
    if isinstance(start, int):
        return start
    holder, digest, stamp, redis = start
    options = _with_centre(options, holder.current.plan.centre)
    settle_memory()
    tune_collector()
    live, cached = _live_source(options, holder, redis)
    clock = rehearsal_clock(options.clock_start, options.clock_speed) if options.clock_start else utc_now
    controller = Controller(
        holder, live, clock=clock, live_timeout=options.live_timeout,
        # the wait route reads handle times and pending callbacks, and leaves callbacks, in Redis
        callbacks=RedisCallbackDesk(redis, options.keys) if redis is not None else NoCallbackDesk(),
    )  # fmt: skip
    lease: list[AmiConsumer] = []  # the AMI consumer once started: is it the lease holder?
    pump = record_pump(options, holder, redis, instance, lambda: bool(lease) and lease[0].is_writer)
    if pump is not None:
        controller.facts = pump.fact
    server = FastAgiServer(server_config(options))
    controller.register(server)
    readiness, ops = _ops(options)
    refused = await _listen(server, options, ops)
    if refused is not None:
        print(f"callrouter: cannot listen {refused}", file=sys.stderr)
        if redis is not None:
            await redis.aclose()
        return EXIT_CANNOT_LISTEN
    readiness.set("fastagi_listening", True)
    ami = await _start_ami(options, redis, cached, holder, clock, pump=pump, instance=instance)
    lease.extend([ami[0]] if ami is not None else [])
    _watch(
        _labelled(instance, options.worker),
        server,
        cached=cached,
        clock=clock,
        pump=pump,
        consumer=ami[0] if ami else None,
    )
    loop = asyncio.get_running_loop()
    notifier = systemd.Notifier.from_environ()  # inert in a worker: the supervisor talks to systemd
    # with several workers each reloads the plan itself; worker 0 alone writes the audit entry
    reloader = PlanReloader(
        holder, redis if not options.worker else None, last_digest=digest, keys=options.keys
    )
    _reload_on_sighup(loop, reloader, store=store)
    watcher = asyncio.create_task(_plan_watcher(options, reloader, redis, stamp))
    refresher = asyncio.create_task(cached.run(clock)) if cached is not None else None
    publisher = (
        asyncio.create_task(publish_plan(holder, redis, options.plan_publish_interval, options.keys))
        if redis
        else None
    )
    pumping = asyncio.create_task(pump.run()) if pump is not None else None
    orphan = asyncio.create_task(_drain_if_orphaned()) if options.worker is not None else None
    try:
        rehearsal = options.clock_start is not None
        log.info(
            "controller.started",
            port=server.port,
            plan=str(holder.path if store else options.plan),
            plan_source=options.plan_source,
            plan_generation=holder.generation,
            redis=_redis_shown(options),
            rehearsal_clock=rehearsal,
        )
        if ready is not None:
            ready(server.port)
        notifier.ready(f"routing calls on port {server.port}")  # Type=notify units; watchdog pings
        await serve_until_signal(
            server,
            drain_timeout=options.drain_timeout,
            on_signal=_draining(readiness, notifier),
            ignore_repeats=options.worker is not None,
            hold_sigterm=True,  # a second SIGTERM must not cut the drain or the records' last flush
        )
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await notifier.close()
        await _shut_down(
            (watcher, refresher, publisher, orphan, ami[1] if ami else None),
            ami,
            pump,
            pumping,
            redis,
            ops=ops,
        )
    log.info("controller.stopped", **asdict(server.counters))
    return 0


def _draining(readiness: Readiness, notifier: systemd.Notifier) -> Callable[[], None]:
    """What SIGTERM does first: /ready says 503 and systemd hears STOPPING=1, before the drain."""

    def on_signal() -> None:
        readiness.set("not_draining", False)
        notifier.stopping("draining calls")

    return on_signal


def _labelled(instance: str, worker: int | None) -> str:
    """The instance in ``/metrics`` (``callrouter_info``): host:pid, and the worker's index."""
    return instance if worker is None else f"{instance}/worker-{worker}"


async def _drain_if_orphaned(interval_s: float = 1.0) -> None:
    """A worker whose supervisor is gone (killed with SIGKILL) drains and stops, as on SIGTERM:
    no one would restart it or pass it a signal any more."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing signals a parent's death to a child
        await asyncio.sleep(interval_s)
    log.warning("worker.orphaned", detail="the supervisor is gone: draining")
    os.kill(os.getpid(), signal.SIGTERM)


def _reload_on_sighup(loop: asyncio.AbstractEventLoop, reloader: PlanReloader, *, store: bool) -> None:
    """SIGHUP reloads the plan file (ignored, with a warning, when the plan comes from the store)."""
    reloads: set[asyncio.Task[str]] = set()

    def on_sighup() -> None:
        if store:
            log.warning("plan.sighup_ignored", detail="plan_source is store: use callrouter plan publish")
            return
        task = loop.create_task(reloader.reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)


def _watch(
    instance: str,
    server: FastAgiServer,
    *,
    cached: CachedLiveSource | None,
    clock: Clock,
    pump: RecordPump | None,
    consumer: AmiConsumer | None,
) -> None:
    """What ``/metrics`` reads at scrape time (:mod:`routing.metrics`): nothing per call."""
    set_info("serve", instance)
    watch(sessions=lambda: session_figures(server.counters))
    if cached is not None:
        watch(
            live_age_s=lambda: age_since(cached.refreshed_monotonic),
            toggles=lambda: cached.active_toggles(clock()),
        )
    if pump is not None:
        watch(records_pending=lambda: len(pump.backlog))
    if consumer is not None:
        watch(ami=lambda: ami_figures(consumer))


def _ops(options: ServeOptions) -> tuple[Readiness, OpsListener | None]:
    """What ``/ready`` checks, and the ops listener when a port is set."""
    readiness = Readiness({"plan_loaded": True, "fastagi_listening": False, "not_draining": True})
    if options.ops_port is None:
        return readiness, None
    return readiness, OpsListener(options.ops_host, options.ops_port, readiness)


async def _listen(server: FastAgiServer, options: ServeOptions, ops: OpsListener | None) -> str | None:
    """Start listening (the ops listener first, so /ready can say "not yet"); what could not
    listen, with the reason in the system's own words (a busy port, an address this host does
    not have, an unknown host name)."""
    if ops is not None:
        try:
            await ops.start()
        except OSError as exc:
            await ops.stop()
            return f"for ops on {options.ops_host}:{options.ops_port}: {_why(exc)}"
    try:
        await server.start()
    except OSError as exc:
        if ops is not None:
            await ops.stop()
        return f"for FastAGI on {options.agi_host}:{options.agi_port}: {_why(exc)}"
    return None


def _why(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror) or not exc.errno:
        return exc.strerror or str(exc)
    return os.strerror(exc.errno)


async def _shut_down(
    tasks: tuple[asyncio.Task[None] | None, ...],
    ami: tuple[AmiConsumer, asyncio.Task[None]] | None,
    pump: RecordPump | None,
    pumping: asyncio.Task[None] | None,
    redis: Redis | None,
    *,
    ops: OpsListener | None = None,
) -> None:
    """After the drain: background tasks, AMI, then every record held, then Redis; the ops
    listener last (/ready says 503 all along)."""
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if ami is not None:
        if pump is not None and pump.owner is not None and ami[0].is_writer:
            # it held the AMI lease to its last event: it still emits the calls nobody served
            # that it has seen end (the claim's SET NX settles a race with the next holder)
            pump.owner.lease_holder = lambda: True
        await ami[0].stop()
    if pump is not None:  # after the drain and the last AMI event: hand over every record held
        handed = await stop_pump(pump, pumping)
        log.info(
            "records.flushed",
            records=handed,
            appended=pump.appended,
            backlog=len(pump.backlog),
            forwarded=pump.owner.forwarded if pump.owner is not None else 0,
            received=pump.owner.received if pump.owner is not None else 0,
        )
    if redis is not None:
        await redis.aclose()
    watch(sessions=None, ami=None, live_age_s=None, toggles=None, records_pending=None)
    if ops is not None:
        await ops.stop()


RECORD_GRACE_S = 0.5
"""A call's record is due this long after the caller's hang-up was received. The adviser's
``Hangup`` and the ``CallDisposition`` UserEvent their hangup handler raises come in the same
millisecond as the caller's ``Hangup`` or just after it, on the same AMI connection (the
captures: all within 1 ms), so they are read in the same burst; half a second also covers a
consumer that is a few hundred milliseconds behind. A disposition sent later makes version 2."""

RECORD_PUMP_INTERVAL_S = 0.1
"""How often the pump hands due records over: with the grace, hang-up to append is at most
0.6 s, leaving the rest of the 2 s goal (hang-up to the CRM) for delivery."""


def record_pump(
    options: ServeOptions,
    holder: PlanHolder,
    redis: Redis | None = None,
    instance: str = "",
    lease_holder: Callable[[], bool] = lambda: False,
) -> RecordPump | None:
    """Contact records: one builder for this controller, fed by its facts and the AMI tap, its
    due records handed to the sink every 0.1 s. None without a caller hash key. With Redis, the
    sink is the centre's records stream and records are emitted by their owner only
    (``records.appender``)."""
    if options.records_key is None:
        log.warning("records.not_configured", reason="no caller hash key: no contact records")
        return None

    def avoidable(tenant: str | None) -> tuple[str, ...]:
        found = holder.current.plan.tenants.get(tenant or "")
        return tuple(found.avoidable_contact_reasons) if found else ()

    centre = holder.current.plan.centre
    builder = RecordBuilder(centre, options.records_key, grace_s=RECORD_GRACE_S, avoidable_reasons=avoidable)
    owner = (
        Ownership(redis, centre, instance, lease_holder=lease_holder, keys=options.keys)
        if redis is not None
        else None
    )
    journal, found = None, None
    if options.records_journal is not None:  # locked first: then no one else writes it
        journal = FactJournal(options.records_journal, instance)
        found = read_journal(options.records_journal)
    pump = RecordPump(
        builder,
        record_sink(options, centre, redis, holder),
        interval_s=RECORD_PUMP_INTERVAL_S,
        owner=owner,
        journal=journal,
        inbox=DispositionInbox(owner) if owner is not None else None,
    )
    if found is not None and found.facts:
        calls = pump.replay(found)
        log.warning("records.journal_replayed", calls=calls, segments=len(found.segments))
    return pump


def record_sink(
    options: ServeOptions, centre: str = "", redis: Redis | None = None, holder: PlanHolder | None = None
) -> RecordSink:
    """Where this controller's records go: the centre's records stream when Redis is set (and
    the JSON Lines outbox too, when one is set); else the outbox alone."""
    if redis is not None:
        # the plan in force at each record, not at start: a lambda, not a bound method
        tenant_of = (lambda d: holder.current.tenant_for(d)) if holder is not None else None  # noqa: PLW0108
        stream = StreamSink(
            RecordStream(redis, centre, wait=options.redis_wait, keys=options.keys), tenant_of
        )
        log.info("records.stream", centre=centre, outbox=str(options.records_outbox or "") or None)
        if options.records_outbox is not None:
            return TeeSink(stream, JsonlSink(options.records_outbox))
        return stream
    if options.records_outbox is not None:
        log.info("records.outbox", path=str(options.records_outbox))
        return JsonlSink(options.records_outbox)
    return UndeliveredSink()


class UndeliveredSink:
    """No destination configured: each record is counted and dropped (one warning)."""

    def __init__(self) -> None:
        self.dropped = 0

    async def append(self, record: ContactRecord) -> None:
        if self.dropped == 0:
            log.warning(
                "records.no_destination", detail="set redis.url (the records stream) or records.outbox"
            )
        self.dropped += 1


async def _start_ami(
    options: ServeOptions,
    redis: Redis | None,
    cached: CachedLiveSource | None,
    holder: PlanHolder,
    clock: Clock,
    *,
    pump: RecordPump | None = None,
    instance: str = "",
) -> tuple[AmiConsumer, asyncio.Task[None]] | None:
    """The AMI consumer (live queue state into Redis) and the withdrawer, when AMI is set up."""
    if options.ami is None or redis is None or cached is None:
        log.info("ami.not_configured", live_state="unknown unless another instance writes it")
        return None
    instance = instance or f"{socket.gethostname()}:{os.getpid()}"
    pipeline = ami_pipeline(
        options.ami,
        redis,
        instance,
        cached,
        clock=clock,
        keys=options.keys,
        withdraw_interval_s=options.withdraw_interval,
        on_message=pump.ami if pump is not None else None,
    )
    jobs = [pipeline.withdrawer.run()]
    if options.callbacks is not None and options.worker in (None, 0):
        # Queued callbacks: the lease holder dials; every instance records what AMI reports.
        # With several workers only worker 0 runs it (the lease is per instance, not per worker).
        consumer = pipeline.consumer
        dialler = Dialler(
            redis,
            holder=instance,
            is_holder=lambda: consumer.is_writer,
            send=consumer.send_action,
            plan=cached.plan,
            live=cached.read_now,
            waiting=pipeline.store.waiting_callers,
            clock=clock,
            settings=options.callbacks,
            records=pump is not None,
            wait=options.redis_wait,
            keys=options.keys,
        )
        consumer.on_message = _both(consumer.on_message, dialler.on_message)
        jobs.append(dialler.run())
    await pipeline.consumer.start()
    return pipeline.consumer, asyncio.create_task(_run_all(jobs))


def _both(
    first: Callable[[Mapping[str, str], float], None] | None,
    second: Callable[[Mapping[str, str], float], None],
) -> Callable[[Mapping[str, str], float], None]:
    """One AMI tap calling ``first`` (the records pump's, when there is one) then ``second``."""
    if first is None:
        return second

    def tap(headers: Mapping[str, str], ts: float) -> None:
        first(headers, ts)
        second(headers, ts)

    return tap


async def _run_all(jobs: list[Coroutine[Any, Any, None]]) -> None:
    async with asyncio.TaskGroup() as tg:
        for job in jobs:
            tg.create_task(job)


def parse_clock_start(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=LONDON)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_module.from_args(args)
    configure_logging(json=not settings.log.console, level=settings.log.level)
    worker: int | None = getattr(args, "worker_index", None)
    if worker is not None:  # every log line of this worker says which one it is
        structlog.contextvars.bind_contextvars(worker=worker)
    else:
        check_workers(settings)
    loop_kind = _install_uvloop()
    # the AMI centre defaults to the plan's: from the file here, from the store once it is read
    centre = (
        PlanHolder.load(settings.require_plan()).current.plan.centre if settings.plan_source == "file" else ""
    )
    try:
        clock_start = parse_clock_start(args.clock_start) if args.clock_start else None
    except ValueError:
        raise settings_module.SettingsError(
            f"--clock-start {args.clock_start!r}: expected YYYY-MM-DD HH:MM"
        ) from None
    options = ServeOptions.from_settings(
        settings, centre, clock_start=clock_start, clock_speed=args.clock_speed
    )
    if worker is not None:
        options = for_worker(options, worker)
    elif settings.workers > 1:
        log.info("controller.starting", loop=loop_kind, workers=settings.workers)
        return asyncio.run(supervise(getattr(args, "argv", sys.argv[1:]), settings.workers))
    log.info("controller.starting", loop=loop_kind)
    try:
        return asyncio.run(serve(options))
    except JournalInUse as exc:  # raised before anything listens
        print(f"callrouter: {exc}, not starting", file=sys.stderr)
        return 1


SERVE_SETTINGS = (
    "plan", "plan_source",
    "agi.host", "agi.port", "redis.url", "redis.enabled", "live_timeout_s", "agi.max_sessions",
    "agi.call_timeout_s", "agi.drain_timeout_s", "agi.allowed_peers", "agi.max_sessions_per_peer",
    "agi.max_pending", "watch_interval_s", "ami.host", "ami.port", "ami.username", "ami.centre",
    "ami.publish_queue", "log.level", "log.console", "records.outbox", "records.journal", "ops.host",
    "ops.port", "workers",
)  # fmt: skip


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the controller (FastAGI) with a plan",
        description="Settings: flag > environment > settings file > default (docs/settings.md).",
    )
    settings_module.add_flags(parser, SERVE_SETTINGS)
    parser.add_argument("--clock-start", help='rehearsal: start the clock at "YYYY-MM-DD HH:MM" (London)')
    parser.add_argument("--clock-speed", type=float, default=1.0, help="rehearsal: clock speed factor")
    parser.add_argument(WORKER_FLAG, dest="worker_index", type=int, help=argparse.SUPPRESS)  # supervisor's
    parser.set_defaults(handler=cmd_serve)
