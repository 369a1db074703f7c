"""Fixtures for the FastAGI tests: a real server on 127.0.0.1, a raw Asterisk peer."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import structlog

from callrouter.logs import configure_logging
from ivr.fastagi import FastAgiServer, ServerConfig
from tests.fastagi.transcripts import load_env

StartServer = Callable[..., Awaitable[FastAgiServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start FastAgiServer instances on a free port; all are drained at teardown."""
    servers: list[FastAgiServer] = []

    async def start(**config: object) -> FastAgiServer:
        # The wire tests here script every command; the step guard has its own tests.
        config.setdefault("step_guard", None)
        server = FastAgiServer(ServerConfig(port=0, **config))  # type: ignore[arg-type]
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.drain(0)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The JSON log lines written while the test runs (level info)."""
    stream = io.StringIO()
    configure_logging(json=True, level="info", stream=stream)
    yield stream
    reset_logging()


def reset_logging() -> None:
    """Undo :func:`configure_logging`: structlog's defaults, the stdlib handler it added."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "callrouter.logs"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def suite_env(route: str = "route") -> bytes:
    """The captured PJSIP environment block with ``route`` as the script."""
    env = load_env("agi_suite_pjsip")
    return env.replace(b"suite?tenant=harborough", route.encode())


async def raw_peer(port: int, env: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A bare socket playing Asterisk by hand: connect and send ``env``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env)
    await writer.drain()
    return reader, writer


async def expect_line(reader: asyncio.StreamReader, wait: float = 2.0) -> bytes:
    async with asyncio.timeout(wait):
        return await reader.readline()
