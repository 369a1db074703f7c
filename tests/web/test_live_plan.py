"""Where the web service's live view takes its plan: the plan store's live version (the --plan
file until one is published), or the file alone; a version or file that does not load keeps the
plan in use."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from routing import plan_store
from tests.support.live_web import EXAMPLE_PLAN
from web.live_plan import PlanSource

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def renamed(text: str, name: str) -> str:
    """The example plan with Charnwood's council name changed (a different, valid plan)."""
    assert 'name: "Charnwood Borough Council"' in text
    return text.replace('name: "Charnwood Borough Council"', f'name: "{name}"')


async def test_the_store_wins_over_the_file_once_a_version_is_live(web_redis: Redis) -> None:
    source = PlanSource(web_redis, path=EXAMPLE_PLAN, from_store=True)
    await source.check()
    assert source.current is not None
    assert source.origin == "plan file plan.yaml"  # nothing published yet
    text = renamed(EXAMPLE_PLAN.read_text(), "Charnwood (published)")
    change = await plan_store.publish(web_redis, text, "eng", "rename", NOW, delay_s=0.0)
    await source.check()
    assert source.origin == f"plan store version {change.live.version} (generation {change.live.generation})"
    assert source.current.plan.tenants["charnwood"].name == "Charnwood (published)"


async def test_a_file_plan_is_read_again_when_it_changes_and_kept_when_it_breaks(
    web_redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "plan.yaml"
    shutil.copy(EXAMPLE_PLAN, path)
    source = PlanSource(web_redis, path=path, from_store=False)
    await source.check()
    assert source.current is not None
    first = source.current
    path.write_text(renamed(path.read_text(), "Charnwood (edited)"))
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    await source.check()
    assert source.current.plan.tenants["charnwood"].name == "Charnwood (edited)"
    assert source.current is not first
    edited = source.current
    path.write_text("tenants: [not a plan")
    os.utime(path, ns=(1, 3_000_000_000_000_000_000))
    await source.check()
    assert source.current is edited  # kept


async def test_no_plan_anywhere(web_redis: Redis) -> None:
    source = PlanSource(web_redis, path=None, from_store=True)
    await source.check()
    assert (source.current, source.origin) == (None, "none")
