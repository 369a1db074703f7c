"""How the emulated Asterisk connects ``AGI()``: ``agi://`` failures against the capture, and
``hagi://`` (DNS SRV) as res_agi's ``launch_ha_netscript()`` and main/srv.c do it.

Observed (``agi_connect_failures.txt``, Asterisk 22.10.1): nothing listening gives
``AGISTATUS=FAILURE`` after 0.001 s; a listener whose accept queue is full (the SYN dropped)
gives ``FAILURE`` after 2.001 s (``MAX_AGI_CONNECT``). ``hagi://`` on the real Asterisk, with a
DNS server answering the SRV records, is replayed case by case in ``test_hagi_capture.py``
(``agi_hagi_failover.txt``, ``agi_hagi_order.txt``); the tests below pin the pieces to the
source lines they follow (res/res_agi.c, main/srv.c, main/dns.c at tag 22.10.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import pytest

from emulator.agi import CallerScript, play_url
from emulator.dialplan import Asterisk, place_call
from emulator.hagi import (
    RAND_MAX,
    Attempt,
    Resolver,
    SrvLookupFailed,
    SrvRecord,
    by_priority,
    draw,
    parse_url,
    process_weights,
    try_order,
)
from tests.controller.conftest import HARBOROUGH, Rig
from tests.dialplan import transcripts as tr

CONNECT_FAILURES = "agi_connect_failures.txt"
_TOOK = re.compile(r"AGISTATUS='(\w+)' ROUTE='' \(AGI\(\) took ([0-9.]+) s")


def captured_failures() -> dict[str, tuple[str, float]]:
    """exten -> (AGISTATUS, seconds AGI() took) for the refused (1040) and dropped-SYN (1041)
    cases of the capture."""
    found: dict[str, tuple[str, float]] = {}
    exten = ""
    for line in tr.annotations(CONNECT_FAILURES):
        if line.startswith("---- exten "):
            exten = line.split()[2].rstrip(":")
        match = _TOOK.search(line)
        if match:
            found[exten] = (match[1], float(match[2]))
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def black_hole() -> Iterator[int]:
    """A listener whose accept queue is full, so the next SYN is dropped and ``connect()``
    never completes (how the capture made exten 1041's case)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


class Capture:
    """A FastAGI server that records what it was sent and then does ``behaviour``."""

    def __init__(self, behaviour: str = "route") -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.envs: list[dict[str, str]] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        env: dict[str, str] = {}
        while (line := (await reader.readline()).decode().rstrip("\n")) != "":
            key, _, value = line.partition(": ")
            env[key] = value
        self.envs.append(env)
        if self.behaviour == "failure":
            writer.write(b"failure\n")
        elif self.behaviour == "silent":
            await reader.read()  # never answers (agi_server_silent.txt)
        else:
            writer.write(b"SET VARIABLE CR_ROUTE served\n")
            await writer.drain()
            await reader.readline()
        writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Capture]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        try:
            yield self
        finally:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await asyncio.sleep(0)  # let the handlers see their sockets closed


def srv(*records: SrvRecord, name: str = "callrouter.test") -> Resolver:
    return Resolver(srv={f"_agi._tcp.{name}": records})


def outcomes(attempts: list[Attempt]) -> list[tuple[int, str]]:
    return [(a.port, a.outcome) for a in attempts]


# --- agi://: the capture ------------------------------------------------------------------------


async def test_refused_connect_fails_at_once_as_captured() -> None:
    status, took = captured_failures()["1040"]
    assert (status, took) == ("FAILURE", 0.001)
    attempts: list[Attempt] = []
    started = time.perf_counter()
    session = await play_url(f"agi://127.0.0.1:{free_port()}/route", CallerScript(), attempts=attempts)
    elapsed = time.perf_counter() - started
    assert session is None  # AGISTATUS=FAILURE
    assert [a.outcome for a in attempts] == ["refused"]
    assert elapsed < took + 0.1  # a loopback RST: no wait


async def test_dropped_syn_fails_after_the_2_s_connect_timeout_as_captured() -> None:
    status, took = captured_failures()["1041"]
    assert (status, took) == ("FAILURE", 2.001)
    attempts: list[Attempt] = []
    with black_hole() as port:
        started = time.perf_counter()
        session = await play_url(f"agi://127.0.0.1:{port}/route", CallerScript(), attempts=attempts)
        elapsed = time.perf_counter() - started
    assert session is None
    assert [a.outcome for a in attempts] == ["timeout"]
    assert took - 0.05 <= elapsed <= took + 0.25


# --- hagi://: order of the targets (main/srv.c) ---------------------------------------------------


def test_answers_are_sorted_by_priority_keeping_the_answer_order_within_one() -> None:
    """srv_callback(): insert before the first entry with a higher priority number."""
    a, b, c, d = (
        SrvRecord(20, 0, 1, "a"),
        SrvRecord(10, 0, 2, "b"),
        SrvRecord(20, 0, 3, "c"),
        SrvRecord(10, 0, 4, "d"),
    )
    assert by_priority([a, b, c, d]) == [b, d, a, c]
    assert try_order([a, b, c, d], lambda: 0) == [b, d, a, c]  # no weight: process_weights() not run


def test_the_draw_is_asterisks_float_arithmetic() -> None:
    """``1 + (unsigned int)((float) sum * (ast_random() / ((float) RAND_MAX + 1.0)))``: 1..sum."""
    assert draw(100, lambda: 0) == 1
    assert draw(100, lambda: RAND_MAX) == 100
    assert draw(100, lambda: (RAND_MAX + 1) // 2) == 51


def rand_for(r: int, weight_sum: int) -> int:
    """An ``ast_random()`` value that makes the draw ``r`` for ``weight_sum``."""
    value = (r - 1) * (RAND_MAX + 1) // weight_sum + 1
    assert draw(weight_sum, lambda: value) == r
    return value


def sequence(values: list[int]) -> Callable[[], int]:
    """``ast_random()`` giving ``values``, then 0 (a draw of 1: the last entry left is drawn too)."""
    it = iter(values)
    return lambda: next(it, 0)


def test_weights_compare_each_entrys_own_weight_with_the_draw() -> None:
    """process_weights(): the first entry whose *own* weight is >= the draw (not the running sum
    RFC 2782 describes); a draw no entry reaches is drawn again."""
    light, heavy = SrvRecord(10, 40, 1, "light"), SrvRecord(10, 60, 2, "heavy")
    # heavy listed first: every draw 1..60 picks it, 61..100 are drawn again: always first
    for r in (1, 40, 60):
        assert process_weights([heavy, light], sequence([rand_for(r, 100)])) == [heavy, light]
    assert process_weights(
        [heavy, light], sequence([rand_for(61, 100), rand_for(100, 100), rand_for(7, 100)])
    ) == [
        heavy,
        light,
    ]
    # light listed first: 1..40 picks light, 41..60 heavy, 61..100 again
    assert process_weights([light, heavy], sequence([rand_for(40, 100)])) == [light, heavy]
    assert process_weights([light, heavy], sequence([rand_for(41, 100), rand_for(1, 40)])) == [heavy, light]
    assert process_weights([light, heavy], sequence([rand_for(99, 100), rand_for(60, 100)])) == [heavy, light]


def test_weight_zero_comes_last_and_each_priority_is_weighed_alone() -> None:
    zero, some = SrvRecord(10, 0, 1, "zero"), SrvRecord(10, 5, 2, "some")
    later, later2 = SrvRecord(20, 0, 3, "later"), SrvRecord(20, 0, 4, "later2")
    draws = sequence([rand_for(5, 5)])  # one draw for the first group; the rest have weight 0
    assert try_order([zero, later, some, later2], draws) == [some, zero, later, later2]


def test_equal_weights_always_try_the_first_answer_first() -> None:
    """With equal weights every draw is reached by the first entry: the DNS answer order alone
    decides (a resolver that rotates its answers spreads the calls, one that does not, doesn't)."""
    first, second = SrvRecord(10, 50, 1, "first"), SrvRecord(10, 50, 2, "second")
    rng = random.Random(7)
    orders = {
        tuple(r.target for r in try_order([first, second], lambda: rng.randint(0, RAND_MAX)))
        for _ in range(200)
    }
    assert orders == {("first", "second")}


def test_shares_over_many_calls_follow_the_source_not_rfc_2782() -> None:
    """Weights 60/40 in both answer orders (a rotating resolver): the 60 goes first in
    (1 + 1/3) / 2 = 2/3 of calls by this code (RFC 2782 would give 60 %)."""
    rng = random.Random(11)
    heavy, light = SrvRecord(10, 60, 1, "heavy"), SrvRecord(10, 40, 2, "light")
    firsts = [
        try_order(answers, lambda: rng.randint(0, RAND_MAX))[0].target
        for n in range(6000)
        for answers in ([[heavy, light], [light, heavy]][n % 2],)
    ]
    share = firsts.count("heavy") / len(firsts)
    assert 0.64 < share < 0.69, share


def test_no_record_fails_the_lookup_but_a_dot_target_is_kept() -> None:
    """parse_srv() refuses a target of ".", but glibc's dn_expand() gives "" for the root name,
    so the record is kept and fails to resolve when tried (agi_hagi_failover.txt, dotfirst)."""
    with pytest.raises(SrvLookupFailed, match="no SRV record"):
        try_order([], lambda: 0)
    dot, later = SrvRecord(10, 0, 4573, "."), SrvRecord(20, 0, 4574, "ctl.callrouter.test.")
    assert try_order([later, dot], lambda: 0) == [dot, later]


def test_urls_split_as_res_agi_splits_them() -> None:
    parsed = parse_url("hagi://callrouter.test/route?tenant=harborough")
    assert parsed is not None
    assert (parsed.host, parsed.script, parsed.port_given) == (
        "callrouter.test",
        "route?tenant=harborough",
        False,
    )
    parsed = parse_url("hagi://callrouter.test:notaport/route")  # strchr(host, ':'): no SRV lookup
    assert parsed is not None
    assert parsed.port_given
    parsed = parse_url("hagi://callrouter.test/menu")
    assert parsed is not None
    assert (parsed.scheme, parsed.host, parsed.port, parsed.script) == (
        "hagi",
        "callrouter.test",
        None,
        "menu",
    )
    parsed = parse_url("agi://127.0.0.1:4573/route")
    assert parsed is not None
    assert (parsed.host, parsed.port, parsed.script) == ("127.0.0.1", 4573, "route")
    assert parse_url("/opt/callrouter/.venv/bin/callrouter-agi-fallback") is None


# --- hagi://: what is failed over (launch_ha_netscript()) ----------------------------------------


async def test_next_target_when_the_first_refuses() -> None:
    async with Capture().running() as second:
        down = free_port()
        resolver = srv(SrvRecord(10, 0, down, "127.0.0.1"), SrvRecord(20, 0, second.port, "127.0.0.1"))
        attempts: list[Attempt] = []
        started = time.perf_counter()
        session = await play_url(
            "hagi://callrouter.test/route", CallerScript(), resolver=resolver, attempts=attempts
        )
        elapsed = time.perf_counter() - started
    assert session is not None
    assert session.call.agistatus == "SUCCESS"
    assert session.call.variables["CR_ROUTE"] == "served"
    assert outcomes(attempts) == [(down, "refused"), (second.port, "connected")]
    assert elapsed < 1.5  # no connect timeout (2 s) waited for the refusal, even on a loaded machine
    # the environment: agi_request is the URL given to AGI(); the script is the part after the name
    [env] = second.envs
    assert (env["agi_request"], env["agi_network_script"]) == ("hagi://callrouter.test/route", "route")


async def test_next_target_after_2_s_when_the_first_drops_the_syn() -> None:
    async with Capture().running() as second:
        with black_hole() as hole:
            resolver = srv(SrvRecord(10, 0, hole, "127.0.0.1"), SrvRecord(20, 0, second.port, "127.0.0.1"))
            attempts: list[Attempt] = []
            session = await play_url(
                "hagi://callrouter.test/route", CallerScript(), resolver=resolver, attempts=attempts
            )
    assert session is not None
    assert session.call.variables["CR_ROUTE"] == "served"
    assert outcomes(attempts) == [(hole, "timeout"), (second.port, "connected")]
    assert 1.95 <= attempts[0].seconds <= 2.25  # MAX_AGI_CONNECT per target


async def test_an_unresolvable_target_is_skipped() -> None:
    async with Capture().running() as second:
        resolver = srv(
            SrvRecord(10, 0, 4573, "gone.callrouter.test."), SrvRecord(20, 0, second.port, "127.0.0.1")
        )
        attempts: list[Attempt] = []
        session = await play_url(
            "hagi://callrouter.test/route", CallerScript(), resolver=resolver, attempts=attempts
        )
    assert session is not None
    assert outcomes(attempts) == [(4573, "unresolved"), (second.port, "connected")]


@pytest.mark.parametrize(
    ("behaviour", "agistatus"),
    [("silent", None), ("failure", "FAILURE")],
)
async def test_a_target_that_accepted_is_never_failed_over(behaviour: str, agistatus: str | None) -> None:
    """Once connected, launch_ha_netscript() returns: a controller that then hangs (Asterisk waits;
    the dialplan's TIMEOUT(absolute) ends it) or answers ``failure`` is not retried elsewhere."""
    async with Capture(behaviour).running() as first, Capture().running() as second:
        resolver = srv(SrvRecord(10, 0, first.port, "127.0.0.1"), SrvRecord(20, 0, second.port, "127.0.0.1"))
        attempts: list[Attempt] = []
        session = await play_url(
            "hagi://callrouter.test/route", CallerScript(), resolver=resolver, attempts=attempts, deadline=0.5
        )
    assert session is not None
    assert session.call.agistatus == agistatus
    assert outcomes(attempts) == [(first.port, "connected")]
    assert (first.connections, second.connections) == (1, 0)


async def test_every_target_down_or_no_record_is_failure() -> None:
    down1, down2 = free_port(), free_port()
    resolver = srv(SrvRecord(10, 0, down1, "127.0.0.1"), SrvRecord(10, 0, down2, "127.0.0.1"))
    attempts: list[Attempt] = []
    assert (
        await play_url("hagi://callrouter.test/route", CallerScript(), resolver=resolver, attempts=attempts)
        is None
    )
    assert outcomes(attempts) == [(down1, "refused"), (down2, "refused")]
    attempts.clear()
    assert (
        await play_url("hagi://other.test/route", CallerScript(), resolver=resolver, attempts=attempts)
        is None
    )
    assert attempts == []  # SRV lookup failed: nothing tried


async def test_a_port_in_a_hagi_url_disables_the_lookup() -> None:
    """``hagi://host:port``: "Specifying a port number disables SRV lookups": agi://host:port."""
    async with Capture().running() as server:
        attempts: list[Attempt] = []
        session = await play_url(
            f"hagi://127.0.0.1:{server.port}/route", CallerScript(), resolver=srv(), attempts=attempts
        )
    assert session is not None
    assert outcomes(attempts) == [(server.port, "connected")]


# --- the shipped dialplan with CR_AGI=hagi:// -----------------------------------------------------


async def test_the_dialplan_routes_through_hagi_past_a_controller_that_is_down(rig: Rig) -> None:
    down = free_port()
    resolver = srv(SrvRecord(10, 0, down, "127.0.0.1"), SrvRecord(20, 0, rig.server.port, "localhost"))
    asterisk = Asterisk(agi_url="hagi://callrouter.test", resolver=resolver)
    record = await place_call("127.0.0.1", 1, CallerScript(dial=HARBOROUGH), asterisk=asterisk)
    assert record.summary().startswith("route (")
    assert "fail-static" not in record.summary()
    assert outcomes(record.connects[0]) == [(down, "refused"), (rig.server.port, "connected")]
    assert record.sessions[0].variables.get("CR_ROUTE")


async def test_the_dialplan_takes_the_fail_static_path_when_every_target_is_down() -> None:
    resolver = srv(SrvRecord(10, 0, free_port(), "127.0.0.1"), SrvRecord(20, 0, free_port(), "127.0.0.1"))
    asterisk = Asterisk(agi_url="hagi://callrouter.test", resolver=resolver)
    record = await place_call("127.0.0.1", 1, CallerScript(dial=HARBOROUGH), asterisk=asterisk)
    assert record.ended == "fail-static route"
    assert [a.outcome for a in record.connects[0]] == ["refused", "refused"]


@pytest.mark.parametrize(("dropped", "routed"), [(2, True), (3, False)])
async def test_each_target_that_drops_the_syn_costs_2_s_of_the_5_s_bound(
    rig: Rig, dropped: int, routed: bool
) -> None:
    """callrouter-agi arms TIMEOUT(absolute)=5 before AGI(); connects do not look at the channel
    (``handle_connection()`` polls the socket only), so after two dropped targets (4 s) a healthy
    controller still routes the call, after three (6 s) the timer has fired: once connected,
    ``run_agi()`` finds the channel hung up and AGIEXITONHANGUP ends AGI(); T: fail-static.
    Run at a quarter of real time (each 2 s connect timeout takes 0.5 s): the 1 s margins either
    side of the 5 s bound are 0.25 s of real time, more than a loaded machine's lateness."""
    with contextlib.ExitStack() as stack:
        holes = [stack.enter_context(black_hole()) for _ in range(dropped)]
        records = [SrvRecord(10 * (n + 1), 0, port, "127.0.0.1") for n, port in enumerate(holes)]
        resolver = srv(*records, SrvRecord(100, 0, rig.server.port, "127.0.0.1"))
        asterisk = Asterisk(agi_url="hagi://callrouter.test", resolver=resolver)
        record = await place_call(
            "127.0.0.1", 1, CallerScript(dial=HARBOROUGH), asterisk=asterisk, time_scale=0.25
        )
    assert [a.outcome for a in record.connects[0]] == ["timeout"] * dropped + ["connected"]
    if routed:
        assert record.summary().startswith("route (")
        assert record.fallback_at is None
    else:
        assert record.sessions[0].timed_out
        assert record.ended == "fail-static route"
        assert record.fallback_at is not None
        # the call's clock: 3 x 2 s; never early, up to 0.25 s of real time late on a loaded machine
        assert 6.0 - 0.3 <= record.fallback_at <= 6.0 + 1.0, record.fallback_at
