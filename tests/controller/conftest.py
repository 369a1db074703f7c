"""A real FastAGI server running the controller on loopback, with a fixed clock."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callrouter.logs import configure_logging
from emulator.agi import CallerScript, EmulatedCall, run_call
from ivr.contract import unpack
from ivr.controller import Controller, LiveSource, NoLiveState, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig

EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"
LONDON = ZoneInfo("Europe/London")
TUESDAY_10AM = datetime(2026, 11, 24, 10, 0, tzinfo=LONDON)
HARBOROUGH = "01632960001"


@dataclass
class Rig:
    server: FastAgiServer
    controller: Controller
    clock: list[datetime]

    async def call(self, route: str, *args: str, **script: Any) -> EmulatedCall:
        caller = CallerScript(**script)
        return await run_call("127.0.0.1", self.server.port, caller, route, args=args, deadline=10)


@pytest.fixture
def logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every JSON log line written while the test runs."""
    stream = io.StringIO()
    configure_logging(json=True, level="debug", stream=stream)

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    yield read
    configure_logging(json=True, level="warning", stream=io.StringIO())


def make_controller(
    live: LiveSource | None = None, plan: Path = EXAMPLE
) -> tuple[Controller, list[datetime]]:
    clock = [TUESDAY_10AM]
    controller = Controller(
        PlanHolder.load(plan), live or NoLiveState(), clock=lambda: clock[0], live_timeout=0.2
    )
    return controller, clock


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    controller, clock = make_controller()
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        yield Rig(server, controller, clock)


def fields(call: EmulatedCall) -> dict[str, str]:
    """The call's variables with CR_ROUTE unpacked, as the dialplan's callrouter-unpack does."""
    route = call.variables.get("CR_ROUTE")
    return {**call.variables, **(unpack(route) if route else {})}
