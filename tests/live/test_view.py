"""The live view (pure): figures, overflow verdicts with the engine's reasons, staleness, toggles,
tiles and their changes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from routing.core.decide import CompiledPlan
from routing.core.live import QueueSnapshot, Toggle
from routing.live.view import (
    FeedHealth,
    LiveRead,
    QueueRead,
    build_view,
    diff,
    only,
    tiles,
)
from routing.plan_file import load_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plan.yaml"
NOW = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # a Wednesday morning: both councils open


@pytest.fixture(scope="module")
def plan() -> CompiledPlan:
    result = load_plan(EXAMPLE)
    assert result.plan is not None, result.problems
    return CompiledPlan.compile(result.plan)


def busy_read(now: datetime = NOW) -> LiveRead:
    """Charnwood's general queue over its enter threshold; Harborough publishing spare capacity."""
    return LiveRead(
        read_at=now,
        alive_at=now - timedelta(seconds=1),
        lease_holder="ctl-a",
        queues={
            "cbc-general": QueueRead(
                waiting=10, oldest_join=now.timestamp() - 65.4, logged_in=3, available=0, paused=1
            ),
            "hdc-revenues": QueueRead(
                waiting=1, oldest_join=now.timestamp() - 5, logged_in=2, available=1, paused=0
            ),
        },
        partners={
            "harborough": QueueSnapshot("hdc-revenues", 0, 0.0, 4, 2, now - timedelta(seconds=2)),
        },
        plan_in_force={"path": "plan.yaml", "version": 3, "at": now.isoformat()},
        instances=("ctl-b", "ctl-a"),
    )


def queue_tile(view_tiles: dict[str, dict[str, object]], key: str) -> dict[str, object]:
    return view_tiles[f"queue:{key}"]


def test_queue_figures_come_from_the_read_and_the_time(plan: CompiledPlan) -> None:
    view = tiles(build_view(plan, busy_read(), NOW))
    general = queue_tile(view, "charnwood/general")
    assert (general["waiting"], general["longest_wait_s"]) == (10, 65)
    assert (general["logged_in"], general["available"], general["paused"]) == (3, 0, 1)
    assert general["asterisk_queue"] == "cbc-general"
    assert general["known"] is True
    assert general["stale"] is False
    unknown = queue_tile(view, "harborough/waste")  # no state for hdc-waste
    assert unknown["known"] is False
    assert unknown["stale"] is True


def test_overflow_to_a_partner_with_capacity_names_the_engine_reasons(plan: CompiledPlan) -> None:
    overflow = queue_tile(tiles(build_view(plan, busy_read(), NOW)), "charnwood/general")["overflow"]
    assert isinstance(overflow, dict)
    assert overflow["state"] == "overflow"
    assert overflow["latched"] is True
    assert "harborough" in overflow["destination"]
    assert "overflow starts (waiting 10 >= 10" in overflow["reason"]
    assert "partner has capacity" in overflow["reason"]


def test_a_quiet_queue_stays_and_says_why(plan: CompiledPlan) -> None:
    overflow = queue_tile(tiles(build_view(plan, busy_read(), NOW)), "harborough/revenues")["overflow"]
    assert isinstance(overflow, dict)
    assert overflow["state"] == "stay"
    assert overflow["destination"] == "queue revenues"
    assert "no overflow: below every enter threshold" in overflow["reason"]


def test_a_partner_ages_into_stale_and_overflow_there_stops(plan: CompiledPlan) -> None:
    later = NOW + timedelta(seconds=40)
    read = dataclasses.replace(busy_read(), read_at=later, alive_at=later - timedelta(seconds=1))
    view = tiles(build_view(plan, read, later, max_age_s=30))
    partner = view["partner:harborough"]
    assert partner["present"] is True
    assert partner["age_s"] == 42
    assert partner["stale"] is True
    assert partner["tenants"] == ("charnwood",)
    overflow = queue_tile(view, "charnwood/general")["overflow"]
    assert isinstance(overflow, dict)
    assert overflow["state"] == "otherwise"  # wanted, but the partner cannot be trusted: stays
    assert overflow["destination"] == "queue general"
    assert "partner state missing or stale" in overflow["reason"]
    fresh = tiles(build_view(plan, busy_read(), NOW, max_age_s=30))["partner:harborough"]
    assert fresh["age_s"] == 2
    assert fresh["stale"] is False


def test_stale_live_state_takes_the_plan_default(plan: CompiledPlan) -> None:
    later = NOW + timedelta(seconds=31)
    view = tiles(build_view(plan, busy_read(), later, max_age_s=30))
    general = queue_tile(view, "charnwood/general")
    assert general["stale"] is True
    assert view["controllers"]["ami_stale"] is True
    assert view["controllers"]["ami_age_s"] == 32
    overflow = general["overflow"]
    assert isinstance(overflow, dict)
    assert "live state unknown: plan default" in overflow["reason"]


def test_an_emergency_toggle_shows_with_its_reason_and_routes_the_council(plan: CompiledPlan) -> None:
    toggle = Toggle("flooded depot \x1b[31m", "sup@charnwood", NOW + timedelta(hours=3))
    read = dataclasses.replace(busy_read(), toggles={"charnwood": {"emergency": toggle}})
    view = tiles(build_view(plan, read, NOW))
    shown = view["toggle:charnwood:emergency"]
    assert shown["reason"] == "flooded depot \\x1b[31m"  # the escape written out, not obeyed
    assert shown["by"] == "sup@charnwood"
    assert shown["service"] is None
    assert shown["expires_in_s"] == 3 * 3600
    assert shown["expires_local"] == "Wed 25 Nov 2026 14:00 GMT"
    council = view["tenant:charnwood"]
    assert council["state"] == "emergency"
    assert "emergency toggle on (flooded depot" in council["reason"]
    assert view["tenant:harborough"]["state"] == "open"


def test_a_queue_emergency_toggle_sends_that_queue_to_cover(plan: CompiledPlan) -> None:
    toggle = Toggle("system down", "sup", NOW + timedelta(hours=1), service="revenues")
    read = dataclasses.replace(busy_read(), toggles={"harborough": {"emergency": toggle}})
    view = tiles(build_view(plan, read, NOW))
    overflow = queue_tile(view, "harborough/revenues")["overflow"]
    assert isinstance(overflow, dict)
    assert overflow["state"] == "emergency"
    assert queue_tile(view, "harborough/waste")["overflow"]["state"] == "stay"  # type: ignore[index]


def test_an_expired_toggle_is_not_shown(plan: CompiledPlan) -> None:
    toggle = Toggle("over", "sup", NOW - timedelta(seconds=1))
    read = dataclasses.replace(busy_read(), toggles={"charnwood": {"closure": toggle}})
    assert "toggle:charnwood:closure" not in tiles(build_view(plan, read, NOW))


def test_plan_controllers_and_writer(plan: CompiledPlan) -> None:
    view = tiles(build_view(plan, busy_read(), NOW))
    expected = {"version": 3, "generation": None, "sha256": None, "path": "plan.yaml", "at": NOW.isoformat()}
    assert view["plan"] == {"tile": "plan", **expected}
    assert view["controllers"]["instances"] == ("ctl-a", "ctl-b")
    assert view["controllers"]["writer"] == "ctl-a"
    assert view["feed"]["ok"] is True
    assert view["feed"]["stale"] is False


def test_a_failed_read_marks_the_feed_stale_with_its_age(plan: CompiledPlan) -> None:
    later = NOW + timedelta(seconds=5)
    health = FeedHealth(ok=False, failures=3, error="ConnectionError", last_read_at=NOW)
    feed = tiles(build_view(plan, busy_read(), later, health=health))["feed"]
    expected = {
        "ok": False,
        "stale": True,
        "read_at": NOW.isoformat(),
        "age_s": 5,
        "error": "ConnectionError",
    }
    assert feed == {"tile": "feed", **expected}


def test_tiles_of_one_council_only(plan: CompiledPlan) -> None:
    view = tiles(build_view(plan, busy_read(), NOW))
    mine = only(view, {"harborough"})
    assert "queue:harborough/revenues" in mine
    assert "queue:charnwood/general" not in mine
    assert "partner:harborough" not in mine  # only Charnwood overflows there
    assert {"feed", "plan", "controllers"} <= mine.keys()
    narrowed = tiles(build_view(plan, busy_read(), NOW, tenants={"harborough"}))
    assert narrowed.keys() == mine.keys()


def test_diff_sends_only_the_tiles_that_changed(plan: CompiledPlan) -> None:
    before = tiles(build_view(plan, busy_read(), NOW))
    assert not diff(before, before)
    read = busy_read()
    queues = {**read.queues, "hdc-revenues": QueueRead(2, NOW.timestamp() - 5, 2, 1, 0)}
    after = tiles(build_view(plan, dataclasses.replace(read, queues=queues), NOW))
    changes = diff(before, after)
    assert list(changes.changed) == ["queue:harborough/revenues"]
    assert changes.changed["queue:harborough/revenues"]["waiting"] == 2
    toggled = dataclasses.replace(
        read, toggles={"charnwood": {"closure": Toggle("x", "y", NOW + timedelta(hours=1))}}
    )
    gone = diff(tiles(build_view(plan, toggled, NOW)), before)
    assert gone.removed == ("toggle:charnwood:closure",)


def test_the_view_is_json_able(plan: CompiledPlan) -> None:
    import json

    text = json.dumps(build_view(plan, busy_read(), NOW).as_dict())
    assert '"waiting": 10' in text
