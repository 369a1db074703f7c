"""The controller on a real FastAGI server, for calls through the real dialplans."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ivr.fastagi import FastAgiServer, ServerConfig
from tests.controller.conftest import Rig, make_controller


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    controller, clock = make_controller()
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        yield Rig(server, controller, clock)
