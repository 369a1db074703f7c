"""The plan the web process builds the live view from.

The live view needs the plan (its councils, queues and overflow policies) to turn live state
into tiles. The web service takes it as ``serve`` does, by ``plan_source``:

* ``store``: the plan store's live version (``routing/plan_store.py``), checked every
  ``poll_s``; a new generation is validated in a thread and taken at its activation time, as
  the controllers take it. While nothing is published yet, the ``plan`` file (if given).
* ``file``: the ``plan`` file (or folder), loaded again when its modification time changes.

A version or file that does not load keeps the plan already in use (logged as an error). With
no plan at all the live view answers 503 until one appears. The ``plan`` tile of the view always
shows what the controllers publish (``plan:in_force``) and the store's live generation, so it
says which version routes calls even in the moment this process is still switching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from redis.asyncio import Redis

from routing import plan_store
from routing.core.decide import CompiledPlan
from routing.plan_file import load_plan
from routing.redis_keys import KEYS, RedisKeys

log = structlog.get_logger("callrouter.web.live_plan")


def _compile_text(text: str) -> CompiledPlan | None:
    result = plan_store.validate(text)
    return CompiledPlan.compile(result.plan) if result.ok and result.plan is not None else None


def _compile_file(path: Path) -> CompiledPlan | None:
    result = load_plan(path)
    return CompiledPlan.compile(result.plan) if result.ok and result.plan is not None else None


def _mtime(path: Path) -> int | None:
    try:
        return max([path.stat().st_mtime_ns, *(p.stat().st_mtime_ns for p in path.rglob("*.y*ml"))])
    except OSError:
        return None


class PlanSource:
    """``current``: the compiled plan in use (None: none yet); ``origin``: where it came from."""

    def __init__(
        self,
        redis: Redis,
        *,
        path: Path | None,
        from_store: bool,
        keys: RedisKeys = KEYS,
        poll_s: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.redis = redis
        self.path = path
        self.from_store = from_store
        self.keys = keys
        self.poll_s = poll_s
        self.clock = clock
        self.current: CompiledPlan | None = None
        self.origin = "none"
        self.changed = asyncio.Event()  # set whenever ``current`` is replaced
        self._generation: int | None = None  # the store's generation in use
        self._file_seen: int | None = None
        self._failing = False

    async def check(self) -> None:
        """Take a new plan if there is one (never raises for Redis or file trouble)."""
        if self.from_store:
            try:
                if await self._check_store():
                    return
            except Exception as exc:  # Redis away: keep what we have, try again next round
                if not self._failing:
                    log.warning("web.live_plan_store_unreachable", error=type(exc).__name__)
                self._failing = True
                return
            self._failing = False
        if self.path is not None and self._generation is None:
            await self._check_file(self.path)

    async def _check_store(self) -> bool:
        """True when the store has a live version (taken now or before)."""
        live = await plan_store.live(self.redis, keys=self.keys)
        if live is None:
            return False
        if live.generation == self._generation:
            return True
        noticed = self.clock()
        version = await plan_store.get(self.redis, live.version, keys=self.keys)
        self._generation = live.generation  # not tried again if it fails to load
        if version is None or version.info.sha256 != live.sha256:
            log.error("web.live_plan_rejected", generation=live.generation, why="missing or altered")
            return True
        compiled = await asyncio.to_thread(_compile_text, version.text)
        if compiled is None:
            log.error("web.live_plan_rejected", generation=live.generation, why="does not validate")
            return True
        await asyncio.sleep(plan_store.switch_delay(live.activate_at, self.clock(), noticed))
        self._take(compiled, f"plan store version {live.version} (generation {live.generation})")
        return True

    async def _check_file(self, path: Path) -> None:
        seen = await asyncio.to_thread(_mtime, path)
        if seen is None or seen == self._file_seen:
            return
        self._file_seen = seen
        compiled = await asyncio.to_thread(_compile_file, path)
        if compiled is None:
            log.error(
                "web.live_plan_rejected", path=str(path), why="the plan file has errors or is unreadable"
            )
            return
        self._take(compiled, f"plan file {path.name}")

    def _take(self, compiled: CompiledPlan, origin: str) -> None:
        self.current, self.origin = compiled, origin
        self.changed.set()
        log.info("web.live_plan", origin=origin)

    async def run(self) -> None:
        """Check every ``poll_s`` until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(self.poll_s)
