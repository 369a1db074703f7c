"""FastAgiServer over real loopback TCP: routing, limits, bad peers, drain, failures."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from emulator.agi import CallerScript, EmulatedCall, Press, run_call
from ivr.fastagi import AgiChannel, AgiHangup, AgiRequest, FastAgiServer, ServerConfig, serve_until_signal
from tests.fastagi.conftest import StartServer, expect_line, raw_peer, suite_env


async def set_route(channel: AgiChannel, request: AgiRequest) -> None:
    """A small multi-step handler: answer, menu, then the result variables."""
    await channel.answer()
    digits, _ = await channel.get_data("menu", 3000, 1)
    await channel.set_variable("ROUTE", f"{request.query.get('tenant', '')}-{digits}")
    await channel.set_variable("ARGS", ",".join(request.args))


async def settle(server: FastAgiServer, sessions: int) -> None:
    for _ in range(200):
        counters = server.counters
        if counters.started + counters.unknown_routes >= sessions and not counters.active:
            return
        await asyncio.sleep(0.01)


async def test_routes_by_path_with_query_and_args(start_server: StartServer) -> None:
    server = await start_server()
    server.register("route", set_route)
    call = await run_call(
        "127.0.0.1", server.port, CallerScript(steps=[Press("2")]),
        route="route", query={"tenant": "harborough"}, args=["menu-main", "x"],
    )  # fmt: skip
    assert call.variables == {"ROUTE": "harborough-2", "ARGS": "menu-main,x"}
    assert call.agistatus == "SUCCESS"
    await settle(server, 1)
    assert (server.counters.started, server.counters.completed) == (1, 1)


async def test_unknown_route_gets_failure(start_server: StartServer) -> None:
    server = await start_server()
    server.register("route", set_route)
    call = await run_call("127.0.0.1", server.port, CallerScript(), route="nope", query="route=x")
    assert (call.agistatus, call.outcome, call.commands) == ("FAILURE", "failure-line", ["failure"])
    await settle(server, 1)
    assert (server.counters.unknown_routes, server.counters.started) == (1, 0)


def test_registry_rejects_duplicates_and_sync_functions() -> None:
    server = FastAgiServer()
    server.register("route", set_route)
    with pytest.raises(ValueError, match="already registered"):
        server.route("/route")(set_route)

    def not_async(channel: AgiChannel, request: AgiRequest) -> None:
        return None

    with pytest.raises(TypeError, match="async"):
        server.register("sync", not_async)  # type: ignore[arg-type]
    assert server.routes == ("route",)


async def test_handler_exception_is_contained(start_server: StartServer) -> None:
    server = await start_server()
    server.register("route", set_route)

    @server.route("broken")
    async def broken(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.set_variable("STEP", "one")
        raise RuntimeError("bug in a handler")

    bad = await run_call("127.0.0.1", server.port, CallerScript(), route="broken")
    good = await run_call("127.0.0.1", server.port, CallerScript(), route="route")
    assert (bad.agistatus, bad.variables) == ("FAILURE", {"STEP": "one"})
    assert good.agistatus == "SUCCESS"
    await settle(server, 2)
    assert (server.counters.failed, server.counters.completed) == (1, 1)


async def test_per_call_deadline(start_server: StartServer) -> None:
    server = await start_server(call_timeout=0.2)

    @server.route("route")
    async def slow(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.answer()
        await asyncio.sleep(10)

    started = time.perf_counter()
    call = await run_call("127.0.0.1", server.port, CallerScript())
    assert call.agistatus == "FAILURE"
    assert time.perf_counter() - started < 2
    await settle(server, 1)
    assert server.counters.failed == 1


async def test_session_cap_rejects_fast(start_server: StartServer) -> None:
    server = await start_server(max_sessions=2)
    release = asyncio.Event()
    entered = asyncio.Semaphore(0)

    @server.route("route")
    async def held(channel: AgiChannel, request: AgiRequest) -> None:
        entered.release()
        await release.wait()
        await channel.set_variable("ROUTE", "held")

    held_calls = [asyncio.create_task(run_call("127.0.0.1", server.port, CallerScript())) for _ in range(2)]
    await entered.acquire()
    await entered.acquire()
    started = time.perf_counter()
    rejected = await run_call("127.0.0.1", server.port, CallerScript())
    # at once, not held until a session frees (never, here); the bound allows a loaded machine
    assert time.perf_counter() - started < 2.0
    assert (rejected.agistatus, rejected.outcome) == ("FAILURE", "failure-line")
    release.set()
    for call in await asyncio.gather(*held_calls):
        assert (call.agistatus, call.variables) == ("SUCCESS", {"ROUTE": "held"})
    assert server.counters.rejected == 1


async def test_cancellation_is_not_swallowed(start_server: StartServer) -> None:
    server = await start_server()
    tasks: list[asyncio.Task[object]] = []
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    @server.route("route")
    async def forever(channel: AgiChannel, request: AgiRequest) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    call_task = asyncio.create_task(run_call("127.0.0.1", server.port, CallerScript()))
    await entered.wait()
    await server.drain(0.05)
    call = await call_task
    assert cancelled.is_set()
    assert tasks[0].cancelled()  # the session task ended cancelled, not "completed"
    assert call.agistatus == "FAILURE"  # cut short by the drain: the dialplan falls back
    assert server.counters.cancelled == 1


async def test_sigterm_drains_calls_in_progress_and_refuses_new_ones() -> None:
    server = FastAgiServer(ServerConfig(port=0))
    in_step = asyncio.Event()

    @server.route("route")
    async def step(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.answer()
        in_step.set()
        await asyncio.sleep(0.3)  # the step in progress when SIGTERM arrives
        await channel.set_variable("ROUTE", "finished")

    await server.start()
    serving = asyncio.create_task(serve_until_signal(server, drain_timeout=5))
    port = server.port
    in_flight = asyncio.create_task(run_call("127.0.0.1", port, CallerScript()))
    await in_step.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.05)
    refused = await run_call("127.0.0.1", port, CallerScript())
    assert (refused.agistatus, refused.outcome) == ("FAILURE", "connect-failed")
    call = await in_flight
    await asyncio.wait_for(serving, 5)
    assert (call.agistatus, call.variables) == ("SUCCESS", {"ROUTE": "finished"})
    assert not server.serving


async def _ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def _bad_peers(port: int) -> None:
    opened: list[asyncio.StreamWriter] = []
    for payload in (
        b"",
        b"agi_network: yes\nagi_netw",
        b"GET / HTTP/1.1\r\n\r\n",
        b"hello\n\n",
        b"x" * 40000,
    ):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        opened.append(writer)
    opened[0].close()  # bare TCP connect and close (a health check)
    opened[1].close()  # EOF in the middle of the block
    await asyncio.sleep(0.5)  # the rest stay open: the garbage and oversized ones are closed by the server
    for writer in opened[2:]:
        writer.close()


async def test_bad_peers_do_not_disturb_other_calls(start_server: StartServer) -> None:
    server = await start_server(env_timeout=0.3)
    server.register("route", set_route)
    gaps: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(gaps, stop))
    slowloris = await raw_peer(server.port, b"agi_network: yes\n")  # never finishes its block
    bad = asyncio.create_task(_bad_peers(server.port))
    calls: list[EmulatedCall] = await asyncio.gather(
        *(run_call("127.0.0.1", server.port, CallerScript(steps=[Press("1")])) for _ in range(30))
    )
    await bad
    assert await expect_line(slowloris[0]) == b"failure\n"  # the slow peer is told, then closed
    slowloris[1].close()
    stop.set()
    await ticker
    assert [c.agistatus for c in calls] == ["SUCCESS"] * 30
    assert all(c.variables["ROUTE"] == "-1" for c in calls)
    assert max(gaps) < 0.25  # the loop never stalled
    await settle(server, 30)
    assert server.counters.bad_requests == 6
    assert server.counters.completed == 30


async def test_raw_peer_sees_commands_end_in_lf(start_server: StartServer) -> None:
    server = await start_server()
    server.register("route", set_route)
    reader, writer = await raw_peer(server.port, suite_env("route?tenant=t1"))
    assert await expect_line(reader) == b"ANSWER\n"
    writer.write(b"200 result=0\n")
    assert await expect_line(reader) == b"GET DATA menu 3000 1\n"
    writer.write(b"200 result= (timeout)\n")
    assert await expect_line(reader) == b'SET VARIABLE ROUTE "t1-"\n'
    writer.close()


async def test_handler_timeout_error_is_a_failure_not_the_deadline(start_server: StartServer) -> None:
    server = await start_server(call_timeout=5)

    @server.route("route")
    async def times_out(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.answer()
        async with asyncio.timeout(0.01):  # the handler's own timeout, not the call deadline
            await asyncio.sleep(1)

    call = await run_call("127.0.0.1", server.port, CallerScript())
    assert call.agistatus == "FAILURE"
    await settle(server, 1)
    assert (server.counters.failed, server.counters.cancelled) == (1, 0)


async def test_deadline_then_drain_still_cancels(start_server: StartServer) -> None:
    """A handler that outlives its deadline by swallowing the first cancellation is still cut
    by a drain: the deadline never hides a cancellation it did not make."""
    server = await start_server(call_timeout=0.05)
    entered = asyncio.Event()
    finished: list[str] = []

    @server.route("route")
    async def stubborn(channel: AgiChannel, request: AgiRequest) -> None:
        entered.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            finished.append("deadline swallowed")
        await asyncio.sleep(5)

    call_task = asyncio.create_task(run_call("127.0.0.1", server.port, CallerScript()))
    await entered.wait()
    await asyncio.sleep(0.2)
    await server.drain(0.05)
    call = await call_task
    assert finished == ["deadline swallowed"]
    assert call.agistatus == "FAILURE"
    assert server.counters.cancelled == 1


async def test_drain_waits_for_a_block_in_flight_then_cuts_the_silent_ones(start_server: StartServer) -> None:
    """Connections accepted before a drain and still sending their block are served if the block
    completes within the grace period; the ones still silent at its end get ``failure``."""
    server = await start_server()
    server.register("route", set_route)
    late_reader, late_writer = await raw_peer(server.port, suite_env()[:40])
    silent_reader, silent_writer = await raw_peer(server.port, suite_env()[:40])
    await asyncio.sleep(0.05)
    draining = asyncio.create_task(server.drain(0.5))
    await asyncio.sleep(0.05)
    late_writer.write(suite_env()[40:])  # the block completes during the drain: routed
    assert await expect_line(late_reader) == b"ANSWER\n"
    late_writer.write(b"200 result=0\n")
    assert await expect_line(late_reader) == b"GET DATA menu 3000 1\n"
    late_writer.write(b"200 result=4\n200 result=1\n200 result=1\n")
    assert await expect_line(late_reader) == b'SET VARIABLE ROUTE "-4"\n'
    assert await expect_line(silent_reader) == b"failure\n"  # cut at the end of the grace period
    await asyncio.wait_for(draining, 2)
    for writer in (late_writer, silent_writer):
        writer.close()
    assert server.counters.completed == 1
    assert server.counters.active == 0


async def test_peer_gone_right_after_its_block_is_a_hangup(start_server: StartServer) -> None:
    server = await start_server()
    reasons: list[str] = []

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        await asyncio.sleep(0.05)  # Asterisk is gone by now
        try:
            await channel.answer()
        except AgiHangup as exc:
            reasons.append(exc.reason)
            raise

    _reader, writer = await raw_peer(server.port, suite_env())
    writer.close()
    await settle(server, 1)
    await asyncio.sleep(0.1)
    assert [reason.split(":")[0] for reason in reasons] == ["connection lost"]
    assert server.counters.hung_up == 1
