"""A connection the kernel completed just before the drain closed the listener is served.

Asterisk counts a call connected as soon as ``connect()`` completes, which the kernel does on its
own (the connection waits in the listen backlog for the event loop to accept it). ``hagi://``
moves to the next controller only when a connect fails, so a connection that is reset or turned
away after that sends the call to the fail-static path. Closing an asyncio listener resets the
connections still in its backlog; uvloop accepts them and then (draining) answered ``failure``.
The drain now accepts what is queued before it closes the listener and admits what the loop had
already accepted: both are served as calls. Run on the standard loop and on uvloop (``serve``
uses it when installed).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from emulator.agi import CallerScript, encode_env, env_lines
from ivr.fastagi import FastAgiServer, ServerConfig
from tests.controller.conftest import HARBOROUGH, make_controller


def runners() -> list[tuple[str, Callable[[Coroutine[Any, Any, str]], str]]]:
    found: list[tuple[str, Callable[[Coroutine[Any, Any, str]], str]]] = [("asyncio", asyncio.run)]
    try:
        import uvloop
    except ImportError:
        return found
    return [*found, ("uvloop", uvloop.run)]


async def queued_call_during_drain() -> str:
    """Start the controller, complete a connect the loop has not accepted yet (a blocking
    connect, no await in between), begin the drain, then play Asterisk on that connection."""
    controller, _clock = make_controller()
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0))
    controller.register(server)
    await server.start()
    port = server.port
    raw = socket.create_connection(("127.0.0.1", port), timeout=2)
    draining = asyncio.create_task(server.drain(5))
    await asyncio.sleep(0)
    reader, writer = await asyncio.open_connection(sock=raw)
    env = encode_env(
        env_lines(CallerScript(dial=HARBOROUGH), "route", "agi://127.0.0.1/route", "PJSIP/x", "1.1"), []
    )
    try:
        writer.write(env)
        line = await asyncio.wait_for(reader.readline(), 3)
        writer.write(b"200 result=1\n")
        await writer.drain()
    except ConnectionError as exc:
        line = repr(exc).encode()
    finally:
        writer.close()
    await asyncio.wait_for(draining, 10)
    refused = False
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        refused = True
    assert refused, "the listener is still open after the drain"
    return line.decode()


@pytest.mark.parametrize(("name", "run"), runners(), ids=[name for name, _ in runners()])
def test_a_connection_queued_in_the_backlog_when_the_drain_begins_is_served(
    name: str, run: Callable[[Coroutine[Any, Any, str]], str]
) -> None:
    line = run(queued_call_during_drain())
    assert line.startswith("SET VARIABLE CR_ROUTE "), (name, line)
