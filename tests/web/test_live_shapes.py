"""The live page's pure parts: tiles shaped for the page, the regions a change touches, what is
read out, the stream limits and the SSE framing (on tiles built by the real view of the example
plan)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from routing.core.decide import CompiledPlan
from routing.core.live import Toggle
from routing.live.view import LiveRead, QueueRead, build_view, tiles
from routing.plan_file import load_plan
from tests.support.live_web import EXAMPLE_PLAN, GENERAL_REGION, GENERAL_TILE
from web.live import Fragments, PageStream, StreamLimits, announcements, queue_status, region_of, sse_event
from web.problems import Problem
from web.templating import page_environment

NOW = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)  # a Monday morning: the councils are open


@pytest.fixture(scope="module")
def plan() -> CompiledPlan:
    result = load_plan(EXAMPLE_PLAN)
    assert result.plan is not None
    return CompiledPlan.compile(result.plan)


def view_tiles(plan: CompiledPlan, waiting: int, available: int = 1, **extra: object) -> dict[str, dict]:
    read = LiveRead(
        read_at=NOW,
        alive_at=NOW,
        queues={
            "cbc-general": QueueRead(waiting, NOW.timestamp() - 30 if waiting else None, 1, available, 0)
        },
        **extra,  # type: ignore[arg-type]
    )
    return tiles(build_view(plan, read, NOW))


def test_a_queue_tile_in_words(plan: CompiledPlan) -> None:
    assert queue_status(view_tiles(plan, 0)[GENERAL_TILE]) == ("normal", "Normal")
    assert queue_status(view_tiles(plan, 3, available=0)[GENERAL_TILE]) == ("busy", "Busy")
    assert queue_status(view_tiles(plan, 12)[GENERAL_TILE])[1] == "Overflow wanted, partner unavailable"
    stale = tiles(build_view(plan, LiveRead(read_at=NOW), NOW))[GENERAL_TILE]
    assert queue_status(stale) == ("stale", "No recent data")


def test_regions_of_tiles() -> None:
    assert region_of("queue:charnwood/general") == (GENERAL_REGION, "overflow-charnwood")
    assert region_of("toggle:charnwood:emergency") == ("toggles-charnwood",)
    assert region_of("toggle_rejected:charnwood:closure") == ("toggles-charnwood",)
    assert region_of("controllers") == ("service",)
    assert region_of("partner:harborough") == ("partner-harborough",)
    assert region_of("tenant:charnwood") == ("council-charnwood",)


def test_only_changes_of_state_are_read_out(plan: CompiledPlan) -> None:
    quiet, one_more = view_tiles(plan, 1), view_tiles(plan, 2)
    assert announcements(quiet, one_more) == []  # a caller joining is not read out
    peak = view_tiles(plan, 12)
    assert announcements(one_more, peak) == [
        "general (Charnwood Borough Council): Overflow wanted, partner unavailable"
    ]
    toggle = Toggle("flood <b>in</b> the office", "sam", NOW + timedelta(hours=1))
    on = view_tiles(plan, 12, toggles={"charnwood": {"emergency": toggle}})
    said = announcements(peak, on)
    assert "Charnwood Borough Council: Emergency cover switched on: flood <b>in</b> the office" in said
    assert "Charnwood Borough Council: Emergency cover switched off" in announcements(on, peak)


def test_a_page_stream_sends_the_regions_a_change_touches(plan: CompiledPlan) -> None:
    stream = PageStream(Fragments(page_environment()), SimpleNamespace(origin="plan file plan.yaml"))
    before = view_tiles(plan, 0)
    frozen = copy.deepcopy(before)
    first = dict(stream.events({"id": 1, "type": "snapshot", "at": "", "tiles": before}))
    assert {GENERAL_REGION, "overflow-charnwood", "council-charnwood", "toggles-charnwood", "service"} <= set(
        first
    )
    assert "<dt>Waiting</dt><dd>0</dd>" in first[GENERAL_REGION]
    after = view_tiles(plan, 12)
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    sent = dict(stream.events({"id": 2, "type": "changes", "at": "", "changed": changed, "removed": []}))
    assert "<dt>Waiting</dt><dd>12</dd>" in sent[GENERAL_REGION]
    assert "Overflow wanted" in sent["announce"]
    assert "toggles-charnwood" not in sent  # untouched regions are not sent again
    assert before == frozen  # the feed's shared messages are never changed


def test_text_people_typed_is_escaped_in_fragments(plan: CompiledPlan) -> None:
    toggle = Toggle("<script>alert(1)</script>", "<b>sam</b>", NOW + timedelta(hours=1))
    shown = view_tiles(plan, 0, toggles={"charnwood": {"emergency": toggle}})
    html = Fragments(page_environment()).region("toggles-charnwood", shown, "x")
    assert html is not None
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;sam&lt;/b&gt;" in html


def test_stream_limits_per_user_and_in_all() -> None:
    limits = StreamLimits(total_max=3, per_user_max=2)
    with limits.admit("a"), limits.admit("a"):
        refused = limits.refusal("a")
        assert isinstance(refused, Problem)
        assert refused.status == 429
        with limits.admit("b"):
            full = limits.refusal("c")
            assert full is not None
            assert full.status == 503
    assert (limits.total, limits.per_user) == (0, {})


def test_sse_framing() -> None:
    assert sse_event('{"a":1}', event="changes", event_id=7) == b'id: 7\nevent: changes\ndata: {"a":1}\n\n'
    assert (
        sse_event("<li>\n<p>x</p>\r\n</li>", event="q")
        == b"event: q\ndata: <li>\ndata: <p>x</p>\ndata: </li>\n\n"
    )
