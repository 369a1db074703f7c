"""structlog configuration: JSON lines, stdlib routed through it, caller numbers masked."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
import structlog
import uvloop

from callrouter.logs import configure_logging
from emulator.agi import CallerScript, Press, run_call
from ivr.fastagi import AgiChannel, AgiRequest, FastAgiServer, ServerConfig
from routing.masking import mask_number
from tests.fastagi.conftest import events


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("01632960123", "********123"),
        ("+441632960123", "**********123"),
        ("2101", "*101"),
        ("999", "999"),
        ("", ""),
        ("anonymous", "anonymous"),
        ("unknown", "unknown"),
        ("********123", "********123"),
        ("***abc", "***abc"),
        ("٠١٦٣٢٩٦٠١٢٣", "********١٢٣"),
        ("call me", "call me"),
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked
    assert mask_number(masked) == masked  # idempotent


def test_values_json_cannot_encode_are_rendered_like_structlog(log_stream: io.StringIO) -> None:
    class Custom:
        def __structlog__(self) -> str:
            return "custom!"

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    structlog.get_logger("test").info("odd", custom=Custom(), opaque=Opaque(), caller=1632960123)
    (event,) = events(log_stream)
    assert (event["custom"], event["opaque"], event["caller"]) == ("custom!", "<opaque>", "*******123")


def test_what_orjson_refuses_is_rendered_by_the_standard_encoder(log_stream: io.StringIO) -> None:
    """orjson renders the lines; an integer beyond 64 bits or a key that is not a string goes
    through the standard encoder instead of losing the event."""
    log = structlog.get_logger("test")
    log.info("big", count=2**70)
    log.info("keys", by_digit={1: "one"})
    log.info("plain", text="né €", ratio=0.5)
    big, keys, plain = events(log_stream)
    assert big["count"] == 2**70
    assert keys["by_digit"] == {"1": "one"}
    assert (plain["text"], plain["ratio"]) == ("né €", 0.5)


def test_events_are_json_with_masked_callers(log_stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(callerid="01632960123", uniqueid="1.2"):
        log.info("call.routed", caller_number="07700900123", agi_callerid="01632960999", queue="q")
    log.debug("hidden")
    logging.getLogger("redis").warning("stdlib %s", "too", extra={"caller": "01632960555"})
    first, second = events(log_stream)
    assert first["event"] == "call.routed"
    assert (first["callerid"], first["caller_number"], first["agi_callerid"]) == (
        "********123",
        "********123",
        "********999",
    )
    assert (first["uniqueid"], first["level"], first["queue"]) == ("1.2", "info", "q")
    assert "timestamp" in first
    assert (second["event"], second["logger"], second["level"]) == ("stdlib too", "redis", "warning")


async def test_session_events_carry_call_context(log_stream: io.StringIO) -> None:
    server = FastAgiServer(ServerConfig(port=0))

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        digits, _ = await channel.get_data("card-number", 5000, 16)
        await channel.set_variable("DIGITS", str(len(digits)))

    await server.start()
    call = await run_call("127.0.0.1", server.port, CallerScript(steps=[Press("4111111111111111")]))
    await server.drain(1)
    assert call.variables == {"DIGITS": "16"}
    by_name = {e["event"]: e for e in events(log_stream)}
    assert "agi.session.start" not in by_name  # debug: the end event carries everything
    end = by_name["agi.session.end"]
    assert end["caller"] == "********123"
    assert end["uniqueid"] == call.uniqueid
    assert (end["channel"], end["route"]) == (call.channel, "route")
    assert (end["outcome"], end["commands"]) == ("completed", 3)  # SET AUTOHANGUP, GET DATA, SET
    assert isinstance(end["duration_ms"], float)
    text = log_stream.getvalue()
    assert "4111111111111111" not in text  # digits typed are never logged
    assert "01632960123" not in text  # nor the full caller number
    assert "agi_threadid" not in text  # nor the environment block


async def test_session_start_is_logged_at_debug(log_stream: io.StringIO) -> None:
    configure_logging(json=True, level="debug", stream=log_stream)
    server = FastAgiServer(ServerConfig(port=0))

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        structlog.get_logger("test").info("call.step")
        await channel.set_variable("ROUTE", "x")

    await server.start()
    calls = [await run_call("127.0.0.1", server.port, CallerScript()) for _ in range(2)]
    await server.drain(1)
    seen = [e for e in events(log_stream) if str(e["event"]).startswith(("agi.session", "call."))]
    assert [e["event"] for e in seen] == ["agi.session.start", "call.step", "agi.session.end"] * 2
    for index, call in enumerate(calls):
        for event in seen[3 * index : 3 * index + 3]:
            assert (event["uniqueid"], event["channel"]) == (call.uniqueid, call.channel)
            assert (event["caller"], event["route"]) == ("********123", "route")
            assert event["level"] == ("debug" if event["event"] == "agi.session.start" else "info")
    assert "uniqueid" not in events(log_stream)[-1]  # nothing bound outside the calls


def test_server_runs_on_uvloop() -> None:
    async def scenario() -> tuple[str | None, dict[str, str]]:
        server = FastAgiServer(ServerConfig(port=0))

        @server.route("route")
        async def route(channel: AgiChannel, request: AgiRequest) -> None:
            await channel.answer()
            await channel.set_variable("LOOP", type(asyncio.get_running_loop()).__module__)

        await server.start()
        call = await run_call("127.0.0.1", server.port, CallerScript())
        await server.drain(1)
        return call.agistatus, call.variables

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        status, variables = runner.run(scenario())
    assert status == "SUCCESS"
    assert variables["LOOP"].startswith("uvloop")
