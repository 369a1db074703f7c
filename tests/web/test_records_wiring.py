"""How ``callrouter web`` gives the records API its plan and archive (``callrouter/web_cli.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from callrouter.settings import Settings, SettingsError
from callrouter.web_cli import PlanReader, records_source
from routing import plan_store
from tests.web.records_rig import EXAMPLE_PLAN


async def test_the_plan_comes_from_the_file_and_is_read_again_when_it_changes(
    web_redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(EXAMPLE_PLAN.read_text(encoding="utf-8"), encoding="utf-8")
    reader = PlanReader(Settings(plan=path), web_redis)
    first = await reader()
    assert set(first.tenants) == {"harborough", "charnwood"}
    assert await reader() is first  # unchanged: not parsed again
    path.write_text(path.read_text(encoding="utf-8").replace("Harborough District Council", "HDC"))
    changed = await reader()
    assert changed is not first
    assert changed.tenants["harborough"].name == "HDC"


async def test_the_plan_comes_from_the_store_with_plan_source_store(web_redis: Redis) -> None:
    reader = PlanReader(Settings(plan_source="store"), web_redis)
    with pytest.raises(SettingsError, match="no plan has been published"):
        await reader()
    text = EXAMPLE_PLAN.read_text(encoding="utf-8")
    await plan_store.publish(web_redis, text, "tests", "first", datetime.now(UTC), delay_s=0)
    plan = await reader()
    assert plan.centre == "charnwood"


def test_no_archive_directory_no_records_api(web_redis: Redis, tmp_path: Path) -> None:
    assert records_source(Settings(plan=EXAMPLE_PLAN), web_redis) is None
    made = records_source(
        Settings(plan=EXAMPLE_PLAN, records={"archive_dir": tmp_path, "caller_hash_key": "k" * 32}),
        web_redis,
    )
    assert made is not None
    assert made.archive.root == tmp_path
    assert made.caller_key == b"k" * 32
