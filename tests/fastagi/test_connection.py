"""AgiConnection (the server's asyncio.Protocol): buffering across TCP segment boundaries.

Driven directly through ``data_received`` with a fake transport, so every split of the byte
stream is exercised deterministically, then once over real loopback TCP."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.fastagi import AgiChannel, AgiHangup, AgiRequest, FastAgiServer, ServerConfig
from ivr.fastagi.connection import AgiConnection
from tests.fastagi.conftest import StartServer, expect_line, raw_peer, suite_env


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0


def parked_server() -> FastAgiServer:
    """A server whose handler never reads: the test reads the connection itself."""
    server = FastAgiServer(ServerConfig(port=0, step_guard=None))

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        await asyncio.Event().wait()

    return server


def connect(server: FastAgiServer, limit: int = 16 * 1024) -> tuple[AgiConnection, FakeTransport]:
    loop = asyncio.get_running_loop()
    server._loop = loop  # as start() would
    conn = AgiConnection(server, loop, limit)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


async def stop(*conns: AgiConnection) -> None:
    """Cancel the parked handlers."""
    tasks = [conn.task for conn in conns if conn.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def feed(conn: AgiConnection, data: bytes, cuts: list[int]) -> None:
    """Deliver ``data`` as segments cut at the given offsets."""
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        conn.data_received(data[start:end])


async def settle(server: FastAgiServer) -> None:
    for _ in range(100):
        if not server.counters.active:
            return
        await asyncio.sleep(0)


ENV = suite_env("route?tenant=t1")
REPLIES = b"200 result=0\nHANGUP\n200 result=4 (timeout)\n200 result=1 (v)\n"


async def _scenario(cuts: list[int]) -> tuple[list[object], bytes, FastAgiServer]:
    server = FastAgiServer(ServerConfig(port=0, step_guard=None))
    seen: list[object] = []

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        seen.append(request.query["tenant"])
        await channel.answer()
        try:
            await channel.get_data("menu", 3000, 1)
        except AgiHangup as exc:  # the HANGUP line came first: the reply is still its own
            seen.append(exc.reply.raw if exc.reply else None)
        seen.append(await channel.get_variable("X"))

    conn, transport = connect(server)
    feed(conn, ENV + REPLIES, cuts)  # everything Asterisk will say, in arbitrary segments
    for _ in range(50):
        await asyncio.sleep(0)
    conn.connection_lost(None)
    await settle(server)
    return seen, bytes(transport.written), server


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(ENV) + len(REPLIES)), max_size=12))
def test_any_segmentation_gives_the_same_session(cuts: list[int]) -> None:
    seen, written, server = asyncio.run(_scenario(cuts))
    assert seen == ["t1", "200 result=4 (timeout)", "v"]
    assert written == b"ANSWER\nGET DATA menu 3000 1\nGET VARIABLE X\n"
    assert (server.counters.completed, server.counters.bad_requests) == (1, 0)


async def test_env_block_one_byte_at_a_time() -> None:
    server = FastAgiServer(ServerConfig(port=0))
    requests: list[AgiRequest] = []

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        requests.append(request)

    conn, _transport = connect(server)
    for index in range(len(ENV)):
        assert not requests
        conn.data_received(ENV[index : index + 1])
    await asyncio.sleep(0)
    assert requests[0].script == "route"
    assert requests[0].uniqueid
    conn.connection_lost(None)


async def test_reply_split_mid_line_and_many_lines_in_one_segment() -> None:
    server = parked_server()
    conn, _transport = connect(server)
    conn.data_received(ENV[:-1])
    conn.data_received(ENV[-1:] + b"200 res")  # block end and the start of a reply together
    assert conn.state == "call"
    reading = asyncio.ensure_future(conn.read_line())
    await asyncio.sleep(0)
    assert not reading.done()
    conn.data_received(b"ult=1 (a b)")
    await asyncio.sleep(0)
    assert not reading.done()  # still no line feed
    conn.data_received(b"\nHANGUP\n200 result=0\n\n520-Usage\n")
    assert await reading == "200 result=1 (a b)"
    assert [await conn.read_line() for _ in range(4)] == ["HANGUP", "200 result=0", "", "520-Usage"]
    conn.data_received("200 résumé\n".encode())
    assert await conn.read_line() == "200 résumé"
    conn.connection_lost(None)
    await stop(conn)


async def test_eof_mid_line_and_reset() -> None:
    server = parked_server()
    conn, _ = connect(server)
    conn.data_received(ENV + b"200 res")
    conn.eof_received()
    with pytest.raises(asyncio.IncompleteReadError) as eof:
        await conn.read_line()
    assert eof.value.partial == b"200 res"

    conn2, _ = connect(server)
    conn2.data_received(ENV)
    reading = asyncio.ensure_future(conn2.read_line())
    await asyncio.sleep(0)
    conn2.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(ConnectionResetError):
        await reading
    await stop(conn, conn2)


async def test_reply_line_over_the_cap_and_flow_control() -> None:
    server = parked_server()
    conn, transport = connect(server, limit=100)
    conn.data_received(b"agi_network_script: route\n\n")
    conn.data_received(b"x" * 150)
    with pytest.raises(asyncio.LimitOverrunError):
        await conn.read_line()
    conn2, transport2 = connect(server, limit=100)
    conn2.data_received(b"agi_network_script: route\n\n")
    conn2.data_received(b"200 result=1\n" * 20)  # 260 bytes unread: stop reading the socket
    assert not transport2.reading
    for _ in range(20):
        assert await conn2.read_line() == "200 result=1"
    assert transport2.reading
    assert transport.reading  # a single long line is an error, not back-pressure
    await stop(conn, conn2)


async def test_watchdog_failure_reaches_a_pending_read() -> None:
    server = parked_server()
    conn, _ = connect(server)
    conn.data_received(ENV)
    reading = asyncio.ensure_future(conn.read_line())
    await asyncio.sleep(0)
    conn.fail_read(TimeoutError("reply timeout"))
    with pytest.raises(TimeoutError):
        await reading
    conn.data_received(b"200 result=1\n")  # too late: the connection stays failed
    with pytest.raises(TimeoutError):
        await conn.read_line()
    await stop(conn)


async def test_env_block_split_across_real_tcp_segments(start_server: StartServer) -> None:
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.set_variable("ROUTE", request.query.get("tenant", ""))
        await channel.set_variable("NEXT", "2")

    env = suite_env("route?tenant=t9")
    reader, writer = await raw_peer(server.port, env[:10])
    for start in range(10, len(env), 97):
        await asyncio.sleep(0.002)
        writer.write(env[start : start + 97])
        await writer.drain()
    assert await expect_line(reader) == b'SET VARIABLE ROUTE "t9"\n'
    writer.write(b"200 res")
    await writer.drain()
    await asyncio.sleep(0.01)
    writer.write(b"ult=1\n")
    assert await expect_line(reader) == b'SET VARIABLE NEXT "2"\n'
    writer.write(b"200 result=1\n")
    assert await expect_line(reader) == b""
    writer.close()


async def test_reset_during_the_block_is_a_bad_request() -> None:
    server = parked_server()
    conn, transport = connect(server)
    conn.data_received(ENV[:30])
    conn.connection_lost(ConnectionResetError("reset by peer"))
    assert server.counters.bad_requests == 1
    assert server.counters.active == 0
    assert transport.written == b""  # nobody to tell


async def test_a_block_ending_at_the_limit_is_accepted_however_it_is_cut() -> None:
    # Found by fuzzing: a block whose "\n\n" starts exactly at the limit was accepted in one
    # segment but refused as oversized when its first "\n" ended the first segment.
    block = b"agi_network_script: route\n\n"
    limit = len(block) - 2
    for cut in range(len(block) + 1):
        server = parked_server()
        conn, transport = connect(server, limit=limit)
        for segment in (block[:cut], block[cut:]):
            if segment:
                conn.data_received(segment)
        assert (conn.state, server.counters.bad_requests, transport.written) == ("call", 0, b""), cut
        await stop(conn)
    server = parked_server()
    conn, transport = connect(server, limit=limit - 1)  # one byte less: refused, cut or not
    conn.data_received(block[:-1])
    conn.data_received(block[-1:])
    assert (server.counters.bad_requests, transport.written) == (1, b"failure\n")
