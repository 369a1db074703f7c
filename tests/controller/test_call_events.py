"""One log event per FastAGI session: a route's decision is its session's end event.

``call.routed``, ``call.menu_done`` and ``call.queue_ended`` are logged by the server when the
session ends (``AgiChannel.summarize``) with the session's own fields, in place of
``agi.session.end``; a session whose handler names no event still ends with
``agi.session.end``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from emulator.agi import PressAfterPrompt
from ivr.fastagi import AgiChannel, AgiRequest
from ivr.fastagi.channel import SESSION_FIELDS
from tests.controller.conftest import HARBOROUGH, Rig

Logs = Callable[[], list[dict[str, Any]]]


def info_events(logs: Logs, uniqueid: str) -> list[dict[str, Any]]:
    return [e for e in logs() if e.get("uniqueid") == uniqueid and e["level"] != "debug"]


async def ended(logs: Logs, uniqueid: str) -> list[dict[str, Any]]:
    """The session's events once its end event is logged (after ``failure``, the server waits
    up to ``failure_grace`` for Asterisk to close)."""
    async with asyncio.timeout(5):
        while not any("outcome" in e for e in info_events(logs, uniqueid)):
            await asyncio.sleep(0.01)
    return info_events(logs, uniqueid)


async def test_a_routed_call_logs_one_event_with_the_decision_and_the_session(rig: Rig, logs: Logs) -> None:
    call = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    [routed] = info_events(logs, call.uniqueid)
    assert routed["event"] == "call.routed"
    assert (routed["tenant"], routed["state"], routed["destination"]) == ("harborough", "open", "menu main")
    assert routed["reasons"]
    assert all(isinstance(r, str) for r in routed["reasons"])
    assert (routed["plan_version"], routed["hop_from"], routed["dialled"]) == (1, None, "********001")
    assert (routed["outcome"], routed["commands"], routed["missing_prompts"]) == ("completed", 1, 0)
    assert isinstance(routed["duration_ms"], float)
    assert (routed["caller"], routed["route"], routed["channel"]) == ("********123", "route", call.channel)
    assert "01632960123" not in str(logs())


async def test_a_finished_menu_logs_its_trace_once(rig: Rig, logs: Logs) -> None:
    call = await rig.call("menu", "harborough", "main", "", dial=HARBOROUGH, steps=[PressAfterPrompt("1")])
    [done] = info_events(logs, call.uniqueid)
    assert done["event"] == "call.menu_done"
    assert (done["menu"], done["outcome"]) == ("main", "completed")
    assert done["menu_trace"]
    assert done["commands"] == len(call.commands)


async def test_the_queue_status_is_its_own_field_beside_the_session_outcome(rig: Rig, logs: Logs) -> None:
    call = await rig.call("overflow", "harborough", "revenues", "TIMEOUT", dial=HARBOROUGH)
    [ended] = info_events(logs, call.uniqueid)
    assert ended["event"] == "call.queue_ended"
    assert (ended["queue"], ended["queue_status"], ended["outcome"]) == ("revenues", "TIMEOUT", "completed")


async def test_a_call_that_fails_before_its_decision_ends_with_agi_session_end(rig: Rig, logs: Logs) -> None:
    def broken(*_args: object) -> object:
        raise RuntimeError("no decision")

    rig.controller.clock = broken  # type: ignore[assignment]
    call = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    events = await ended(logs, call.uniqueid)
    assert [e["event"] for e in events] == ["agi.handler.error", "agi.session.end"]
    assert events[-1]["outcome"] == "failed"


@pytest.mark.parametrize("name", sorted(SESSION_FIELDS | {"event"}))
async def test_a_handler_cannot_shadow_the_session_fields(rig: Rig, logs: Logs, name: str) -> None:
    """A field named like the session's own is refused in the handler (``agi.handler.error``,
    ``failure``), not at the end of the session where the event would be lost."""

    async def shadowing(channel: AgiChannel, request: AgiRequest) -> None:
        channel.summarize("call.odd", **{name: "x"})

    rig.server.register("shadowing", shadowing)
    call = await rig.call("shadowing", dial=HARBOROUGH)
    assert call.agistatus == "FAILURE"
    events = await ended(logs, call.uniqueid)
    assert [e["event"] for e in events] == ["agi.handler.error", "agi.session.end"]
    assert "ValueError" in events[0]["exception"]
