"""Who gets a FastAGI session: allowed peers, the per-peer cap, the pending budget, and logs
that do not flood. Pure decisions first, then the server over real loopback TCP (127.0.0.0/8
is all loopback on Linux: a client bound to 127.0.0.2 is another peer)."""

from __future__ import annotations

import asyncio
import io
import resource
import time
from ipaddress import ip_network

import pytest

from emulator.agi import CallerScript, EmulatedCall, Press, run_call
from ivr.fastagi import AgiChannel, AgiRequest, FastAgiServer, ServerConfig
from ivr.fastagi.admission import (
    OTHER_PEERS,
    PeerFilter,
    RefusalLog,
    Repeats,
    fd_budget,
    parse_peers,
    peer_allowed,
    turn_away,
)
from ivr.fastagi.connection import AgiConnection
from tests.fastagi.conftest import StartServer, events, expect_line, suite_env
from tests.fastagi.test_connection import FakeTransport

# -- pure decisions -----------------------------------------------------------------------------


def test_parse_peers_takes_addresses_and_networks() -> None:
    assert parse_peers(["127.0.0.1", " 10.1.2.0/24 ", "::1/128", "fd00::/8"]) == (
        ip_network("127.0.0.1/32"),
        ip_network("10.1.2.0/24"),
        ip_network("::1/128"),
        ip_network("fd00::/8"),
    )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (("asterisk.example.org",), "'asterisk.example.org' is not an IP address or CIDR network"),
        (("10.1.2.5/24",), "'10.1.2.5/24' is not an IP address or CIDR network .*host bits set"),
        (("",), "'' is not an IP address"),
        ((), "allowed_peers is empty"),
        ("127.0.0.1", "not one string"),
    ],
)
def test_parse_peers_errors_name_the_entry(entries: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_peers(entries)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("10.1.2.200", True),
        ("10.1.3.1", False),
        ("::1", True),
        ("::2", False),
        ("::ffff:127.0.0.1", True),  # a dual-stack listener reports IPv4 peers this way
        ("::ffff:127.0.0.2", False),
        ("fe80::1%eth0", True),  # link-local with its scope
        ("unknown", False),
        ("", False),
    ],
)
def test_peer_allowed(host: str, allowed: bool) -> None:
    networks = parse_peers(["127.0.0.1/32", "::1/128", "10.1.2.0/24", "fe80::/10"])
    assert peer_allowed(host, networks) is allowed


def test_peer_filter_cache_is_bounded_and_stays_right() -> None:
    peers = PeerFilter(parse_peers(["10.0.0.0/30"]), cache_size=3)
    verdicts = [peers.allows(f"10.0.0.{n}") for n in range(10)] * 2
    assert verdicts == [True] * 4 + [False] * 6 + [True] * 4 + [False] * 6
    assert len(peers._cache) <= 3


def test_turn_away_order() -> None:
    def reason(**changes: object) -> str | None:
        fields: dict[str, object] = {
            "allowed": True,
            "draining": False,
            "sessions": 0,
            "max_sessions": 10,
            "peer_sessions": 0,
            "max_per_peer": 5,
        }
        fields.update(changes)
        return turn_away(**fields)  # type: ignore[arg-type]

    assert reason() is None
    assert reason(peer_sessions=4, sessions=9) is None
    assert reason(allowed=False, draining=True, sessions=10) == "peer-not-allowed"
    assert reason(draining=True, sessions=10) == "draining"
    assert reason(sessions=10, peer_sessions=5) == "session-cap"
    assert reason(peer_sessions=5) == "peer-cap"


def test_refusal_log_first_one_then_a_count_per_interval() -> None:
    refusals = RefusalLog(interval=60)
    logged = [refusals.note("rejected", "peer-not-allowed", "10.0.0.9", now=100 + n) for n in range(5)]
    assert logged == ["10.0.0.9", None, None, None, None]
    assert refusals.note("rejected", "peer-not-allowed", "10.0.0.8", now=105) == "10.0.0.8"
    assert refusals.note("rejected", "peer-cap", "10.0.0.9", now=106) == "10.0.0.9"  # another reason
    assert refusals.flush(now=159.9) == []  # the interval started at the first refusal, t=100
    assert refusals.flush(now=160) == [Repeats("rejected", "peer-not-allowed", "10.0.0.9", 4)]
    assert refusals.flush(now=500) == []
    assert refusals.note("rejected", "peer-not-allowed", "10.0.0.9", now=501) == "10.0.0.9"  # a new interval
    assert refusals.flush_all() == []


def test_refusal_log_bounds_the_peers_it_tracks() -> None:
    refusals = RefusalLog(interval=1, max_peers=3)
    logged = [refusals.note("rejected", "peer-not-allowed", f"10.0.0.{n}", now=0) for n in range(100)]
    assert logged == ["10.0.0.0", "10.0.0.1", "10.0.0.2", OTHER_PEERS] + [None] * 96
    assert len(refusals._counts) == 4
    assert refusals.flush_all() == [Repeats("rejected", "peer-not-allowed", OTHER_PEERS, 96)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_pending": 0}, "max_pending must be a whole number of at least 1"),
        ({"max_sessions_per_peer": -1}, "max_sessions_per_peer must be"),
        ({"max_sessions": 2.5}, "max_sessions must be"),
        ({"allowed_peers": ()}, "allowed_peers is empty"),
        ({"allowed_peers": ("localhost",)}, "'localhost' is not an IP address"),
        ({"refusal_log_interval": 0}, "refusal_log_interval must be positive"),
    ],
)
def test_server_config_rejects_bad_limits(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(**changes)  # type: ignore[arg-type]


def test_server_config_takes_a_list_of_peers() -> None:
    config = ServerConfig(allowed_peers=["10.1.2.3", "10.1.3.0/24"])  # type: ignore[arg-type]
    assert config.allowed_peers == ("10.1.2.3", "10.1.3.0/24")
    assert hash(config)


def test_defaults() -> None:
    config = ServerConfig()
    assert config.allowed_peers == ("127.0.0.1/32", "::1/128")
    assert (config.max_sessions, config.max_sessions_per_peer, config.max_pending) == (1000, 1000, 128)
    assert fd_budget(config.max_sessions, config.max_pending) == 1384


# -- the server's accounting, driven through its Protocol callbacks -----------------------------


class PeerTransport(FakeTransport):
    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self.host, 40000) if name == "peername" else default


def connect_from(server: FastAgiServer, host: str) -> tuple[AgiConnection, PeerTransport]:
    loop = asyncio.get_running_loop()
    server._loop = loop
    conn = AgiConnection(server, loop, server.config.env_max_bytes)
    transport = PeerTransport(host)
    conn.connection_made(transport)
    return conn, transport


ENV = suite_env("route")


async def test_refused_peer_is_closed_inside_connection_made() -> None:
    server = FastAgiServer(ServerConfig(port=0, allowed_peers=("127.0.0.1",)))
    entered: list[str] = []

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        entered.append(request.uniqueid)

    conn, transport = connect_from(server, "10.9.9.9")
    # Decided before connection_made returned: told, closed, nothing counted for it.
    assert (bytes(transport.written), transport.closed) == (b"failure\n", True)
    assert (server.counters.refused, server.counters.pending, server.counters.active) == (1, 0, 0)
    conn.data_received(ENV)  # whatever it sends is dropped
    await asyncio.sleep(0)
    assert conn.task is None
    assert entered == []
    conn.connection_lost(None)
    assert server.counters.bad_requests == 0


async def test_oldest_pending_connection_is_evicted() -> None:
    server = FastAgiServer(ServerConfig(port=0, max_pending=2))
    routed: list[str] = []

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        routed.append(request.uniqueid)

    first, first_transport = connect_from(server, "127.0.0.1")
    second, second_transport = connect_from(server, "127.0.0.1")
    assert server.counters.pending == 2
    third, _ = connect_from(server, "127.0.0.1")
    assert (bytes(first_transport.written), first_transport.closed) == (b"failure\n", True)
    assert not second_transport.closed
    assert (server.counters.pending, server.counters.evicted) == (2, 1)
    third.data_received(ENV)  # the newest is a real call: routed at once
    assert third.task is not None
    await third.task
    assert len(routed) == 1
    assert server.counters.pending == 1
    for conn in (first, second, third):
        conn.connection_lost(None)
    assert (server.counters.active, server.counters.pending) == (0, 0)
    assert server.counters.bad_requests == 1  # the second: closed before its block


async def test_per_peer_cap_counts_calls_not_pending_connections() -> None:
    server = FastAgiServer(ServerConfig(port=0, allowed_peers=("127.0.0.0/8",), max_sessions_per_peer=1))
    release = asyncio.Event()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        await release.wait()

    idle = [connect_from(server, "127.0.0.1") for _ in range(5)]  # pending: not calls
    call, _ = connect_from(server, "127.0.0.1")
    call.data_received(ENV)
    assert call.task is not None
    over, over_transport = connect_from(server, "127.0.0.1")  # that peer has its one call
    assert over_transport.written == b"failure\n"
    other, _ = connect_from(server, "127.0.0.2")
    other.data_received(ENV)
    assert other.task is not None  # another peer is not affected
    assert server.counters.rejected == 1
    release.set()
    await asyncio.gather(call.task, other.task)
    for conn in [c for c, _ in idle] + [call, over, other]:
        conn.connection_lost(None)
    assert server._peer_sessions == {}


# -- over real TCP ------------------------------------------------------------------------------


async def set_route(channel: AgiChannel, request: AgiRequest) -> None:
    await channel.answer()
    digits, _ = await channel.get_data("menu", 3000, 1)
    await channel.set_variable("ROUTE", f"routed-{digits}")


async def open_from(
    host: str, port: int, data: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def read_to_eof(reader: asyncio.StreamReader, wait: float = 2.0) -> bytes:
    async with asyncio.timeout(wait):
        return await reader.read()


async def test_not_allowed_peer_is_refused_at_connect(start_server: StartServer) -> None:
    server = await start_server(allowed_peers=("127.0.0.1/32",), env_timeout=30)
    server.register("route", set_route)
    started = time.perf_counter()
    silent = await open_from("127.0.0.2", server.port)  # says nothing: refused at connect
    assert await read_to_eof(silent[0]) == b"failure\n"
    assert time.perf_counter() - started < 1  # not the 30 s block deadline
    talker = await open_from("127.0.0.2", server.port, ENV)  # a full block changes nothing
    assert await read_to_eof(talker[0]) == b"failure\n"
    call = await run_call("127.0.0.1", server.port, CallerScript(steps=[Press("3")]))
    assert call.variables == {"ROUTE": "routed-3"}
    counters = server.counters
    assert (counters.refused, counters.started, counters.bad_requests) == (2, 1, 0)
    for _, writer in (silent, talker):
        writer.close()


async def test_ipv6_loopback_is_allowed_by_default(start_server: StartServer) -> None:
    try:
        server = await start_server(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server.register("route", set_route)
    call = await run_call("::1", server.port, CallerScript(steps=[Press("6")]))
    assert call.variables == {"ROUTE": "routed-6"}
    ipv4_only = await start_server(host="::1", allowed_peers=("127.0.0.1/32",))
    reader, writer = await asyncio.open_connection("::1", ipv4_only.port)
    assert await read_to_eof(reader) == b"failure\n"
    writer.close()
    assert (server.counters.completed, ipv4_only.counters.refused) == (1, 1)


async def test_refusals_are_logged_once_per_peer_per_interval(
    start_server: StartServer, log_stream: io.StringIO
) -> None:
    server = await start_server(allowed_peers=("127.0.0.1/32",), refusal_log_interval=0.3, env_timeout=1)
    peers = [await open_from("127.0.0.2", server.port) for _ in range(50)]
    for reader, _ in peers:
        assert await read_to_eof(reader) == b"failure\n"
    refusals = [e for e in events(log_stream) if e["event"] == "agi.connection.rejected"]
    assert [(e["reason"], e["peer"], e.get("repeats")) for e in refusals] == [
        ("peer-not-allowed", "127.0.0.2", None)
    ]
    for _ in range(40):  # the watchdog reports the rest when the interval ends
        refusals = [e for e in events(log_stream) if e["event"] == "agi.connection.rejected"]
        if len(refusals) > 1:
            break
        await asyncio.sleep(0.05)
    assert [(e["peer"], e.get("repeats")) for e in refusals] == [("127.0.0.2", None), ("127.0.0.2", 49)]
    assert server.counters.refused == 50
    for _, writer in peers:
        writer.close()


async def test_per_peer_cap_over_tcp(start_server: StartServer) -> None:
    server = await start_server(allowed_peers=("127.0.0.0/8",), max_sessions_per_peer=2)
    release = asyncio.Event()
    entered = asyncio.Semaphore(0)

    @server.route("route")
    async def held(channel: AgiChannel, request: AgiRequest) -> None:
        entered.release()
        await release.wait()
        await channel.set_variable("ROUTE", "held")

    held_calls = [asyncio.create_task(run_call("127.0.0.1", server.port, CallerScript())) for _ in range(2)]
    for _ in range(2):
        await entered.acquire()
    over = await run_call("127.0.0.1", server.port, CallerScript())
    assert (over.agistatus, over.outcome) == ("FAILURE", "failure-line")
    reader, writer = await open_from("127.0.0.2", server.port, ENV)  # another Asterisk
    await entered.acquire()
    release.set()
    assert await expect_line(reader) == b'SET VARIABLE ROUTE "held"\n'
    writer.close()
    for call in await asyncio.gather(*held_calls):
        assert call.variables == {"ROUTE": "held"}
    assert server.counters.rejected == 1


async def test_pending_connections_never_use_the_session_budget(start_server: StartServer) -> None:
    server = await start_server(max_sessions=2, max_pending=4, env_timeout=30)
    release = asyncio.Event()
    entered = asyncio.Semaphore(0)

    @server.route("route")
    async def held(channel: AgiChannel, request: AgiRequest) -> None:
        entered.release()
        await release.wait()
        await channel.set_variable("ROUTE", "held")

    idle = [await open_from("127.0.0.1", server.port, b"agi_network: yes\n") for _ in range(4)]
    held_calls = [asyncio.create_task(run_call("127.0.0.1", server.port, CallerScript())) for _ in range(2)]
    for _ in range(2):
        await entered.acquire()  # both calls run although the pending budget was full
    assert await read_to_eof(idle[0][0]) == b"failure\n"  # the oldest idle ones made room
    assert await read_to_eof(idle[1][0]) == b"failure\n"
    over = await run_call("127.0.0.1", server.port, CallerScript())  # the session cap still holds
    assert (over.agistatus, over.outcome) == ("FAILURE", "failure-line")
    release.set()
    for call in await asyncio.gather(*held_calls):
        assert call.variables == {"ROUTE": "held"}
    counters = server.counters
    assert (counters.rejected, counters.completed) == (1, 2)
    assert counters.evicted >= 2
    for _, writer in idle:
        writer.close()


async def test_start_raises_the_open_files_limit_to_the_budget(start_server: StartServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = fd_budget(4000, 128)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"hard open-files limit {hard} is below {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1500, hard))
    try:
        await start_server(max_sessions=4000)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (needed, hard)
        await start_server(max_sessions=10)  # never lowered
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (needed, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


IDLE = 2000  # the incident: 2,000 idle connections to the FastAGI port
CALLS = 43  # ... while 43 real calls came in


def _descriptors_for(idle: int) -> int:
    """Open files this test needs: both ends of each idle socket, plus churn, calls, margin."""
    return 2 * idle + idle // 2 + 1024


def _idle_count() -> int:
    """Raise the soft open-files limit for the test if it is too low; if the hard limit is too
    low as well, run with fewer idle sockets (the defence is the same, the count is reported)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = _descriptors_for(IDLE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    idle = IDLE
    while _descriptors_for(idle) > soft:
        idle -= 100
    return idle


async def _churn(port: int, count: int, held: list[asyncio.StreamWriter]) -> None:
    """An attacker that keeps opening idle connections while the calls run."""
    for _ in range(count):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        held.append(writer)
        await asyncio.sleep(0)


async def test_idle_sockets_never_crowd_out_real_calls(
    start_server: StartServer, log_stream: io.StringIO
) -> None:
    idle_count = _idle_count()
    assert idle_count >= 1000, f"only {idle_count} idle sockets fit in the open-files limit"
    server = await start_server()  # the defaults: 1,000 sessions, 128 pending, 5 s block deadline
    server.register("route", set_route)
    held: list[asyncio.StreamWriter] = []
    for start in range(0, idle_count, 250):
        opened = await asyncio.gather(
            *(
                # half say nothing, half start a block and stall (slowloris)
                open_from("127.0.0.1", server.port, b"" if n % 2 else b"agi_network: yes\n")
                for n in range(start, min(start + 250, idle_count))
            )
        )
        held.extend(writer for _, writer in opened)
    await asyncio.sleep(0.1)
    counters = server.counters
    assert counters.pending <= 128  # the server holds no more idle sockets than its budget
    assert counters.evicted >= idle_count - 128
    churners = [asyncio.create_task(_churn(server.port, idle_count // 8, held)) for _ in range(4)]
    calls: list[EmulatedCall] = await asyncio.gather(
        *(run_call("127.0.0.1", server.port, CallerScript(steps=[Press(str(n % 10))])) for n in range(CALLS))
    )
    await asyncio.gather(*churners)
    assert [(c.agistatus, c.variables.get("ROUTE")) for c in calls] == [
        ("SUCCESS", f"routed-{n % 10}") for n in range(CALLS)
    ]
    counters = server.counters
    assert (counters.started, counters.completed, counters.rejected) == (CALLS, CALLS, 0)
    assert counters.evicted >= idle_count + idle_count // 2 - 128
    # One log line for all those evictions (the interval is a minute), not one per socket.
    evictions = [e for e in events(log_stream) if e["event"] == "agi.connection.evicted"]
    assert [(e["reason"], e["peer"]) for e in evictions] == [("pending-full", "127.0.0.1")]
    for writer in held:
        writer.close()
