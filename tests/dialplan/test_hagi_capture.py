"""``hagi://`` as a real Asterisk 22.10.1 did it, replayed on the emulator (:mod:`emulator.hagi`).

``agi_hagi_failover.txt``: ``AGI(hagi://callrouter.test/route,...)`` run through the project's
``callrouter-agi`` (``TIMEOUT(absolute)=5``, ``AGIEXITONHANGUP=yes``) against SRV answers whose
targets are up, refusing, dropping the SYN, unresolvable, hung, closing, resetting or failing
mid-session; no record, a ``.`` target, a DNS server that never answers; two ``AGI()`` on one
channel. ``agi_hagi_order.txt``: many calls against weighted answers of one priority.

Each case is rebuilt here from the capture (its SRV answer, a peer of the same kind on each
target) and played with :func:`emulator.agi.play_url` on a line whose absolute timeout is armed
as ``callrouter-agi`` arms it: the connects made, their outcomes, ``AGISTATUS``, whether the
route was set, the time ``AGI()`` took, and the bytes each peer received after the environment
must be what the capture shows.
"""

from __future__ import annotations

import ast
import asyncio
import math
import random
import re
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import pytest

from emulator.agi import CallerScript, play_url
from emulator.dialplan import Asterisk, place_call
from emulator.hagi import RAND_MAX, Attempt, Resolver, SrvRecord, try_order
from emulator.line import CallClock, CallerLine
from tests.controller.conftest import HARBOROUGH
from tests.dialplan import transcripts as tr
from tests.dialplan.test_hagi_conformance import black_hole  # the capture's dropped SYN (4711)

FAILOVER = "agi_hagi_failover.txt"
ORDER = "agi_hagi_order.txt"
URL = "hagi://callrouter.test/route"
BOUND = 5.0  # callrouter-agi: Set(TIMEOUT(absolute)=5) before AGI()
SCALE = 0.25  # the call's clock runs four times faster than real time (a 2 s connect: 0.5 s)

# The capture's peers, by the port they listened on (its header names them).
ROLES = {
    4701: "ctl-a",
    4702: "ctl-b",
    4703: "ctl-c",
    4710: "refused",
    4711: "dropped",
    4712: "hung",
    4713: "closes",
    4714: "midfail",
    4715: "reset",
}
_CASE = re.compile(r"^---- case (\w+): ")
_SRV = re.compile(r"^SRV (\d+) (\d+) (\d+) (\S+)$")
_FAILED = (  # res_agi's warning for each failed connect: (its pattern, the emulator's outcome)
    (re.compile(r"failed for url 'agi://([^:/]*):(\d+)/[^']*': Connection refused"), "refused"),
    (re.compile(r"FastAGI connection to 'agi://([^:/]*):(\d+)/[^']*' timed out after MAX_AGI"), "timeout"),
    (re.compile(r"Unable to locate host '([^:']*):(\d+)'"), "unresolved"),
)
_ACCEPTED = re.compile(r"FastAGI connection accepted on port (\d+) \(([\w-]+)\)")
_OUTCOME = re.compile(
    r"UserEvent=HagiOutcome, Step=(\d), AGISTATUS=(\w+), CR_ROUTE=([^,]*), "
    r".*\(callrouter-agi took ([0-9.]+) s\)"
)
_SWAPPED = re.compile(r"between the two AGI\(\): the DNS answer is now (.*)$")


@dataclass
class Step:
    """One ``AGI()`` of a captured case, as the dialplan and the DNS server saw it."""

    agistatus: str = ""
    routed: bool = False
    took: float = 0.0


@dataclass
class Case:
    name: str
    srv: list[SrvRecord] = field(default_factory=list)
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (target role or host, outcome)
    steps: list[Step] = field(default_factory=list)
    srv_queries: int = 0
    swapped: list[SrvRecord] = field(default_factory=list)  # case twice: the second answer
    received: list[list[bytes | None]] = field(default_factory=list)  # per connection, after the env


def _role(host: str, port: int) -> str:
    """The capture's target as a role name: ``ctl-a.callrouter.test`` -> ``ctl-a``; a name that
    names no peer (``gone.callrouter.test``, the empty name of a ``.`` target) stays as it is."""
    role = host.split(".", maxsplit=1)[0]
    return role if ROLES.get(port) == role else host


def _record(match: re.Match[str]) -> SrvRecord:
    return SrvRecord(int(match[1]), int(match[2]), int(match[3]), match[4])


class _Reader:
    """Reads ``agi_hagi_failover.txt`` line by line into :class:`Case` s."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.case: Case | None = None
        self.connection: list[bytes | None] | None = None
        self.after_env = False

    def byte_line(self, raw: str) -> None:
        """``<seconds> <dir> <repr>``: what a FastAGI peer read (A->S) or did (S->A)."""
        if self.connection is None:
            return
        _seconds, direction, data = raw.split(maxsplit=2)
        value = ast.literal_eval(data)
        if direction == "A->S" and self.after_env:
            self.connection.append(value or None)  # b'': end of file
        self.after_env = self.after_env or value == b"\n"

    def annotation(self, line: str) -> None:
        if match := _CASE.match(line):
            self.case = self.cases.setdefault(match[1], Case(match[1]))
            self.connection = None
        elif self.case is not None:
            self.case_line(self.case, line)

    def case_line(self, case: Case, line: str) -> None:
        if line.startswith("---- FastAGI connection"):
            self.connection, self.after_env = [], False
            case.received.append(self.connection)
        elif match := _SRV.match(line):
            case.srv.append(_record(match))
        elif "DNS query SRV" in line:
            case.srv_queries += 1
        elif match := _SWAPPED.search(line):
            case.swapped = [_record(m) for m in map(_SRV.match, match[1].split(", ")) if m]
        elif match := _OUTCOME.search(line):
            case.steps.append(Step(match[2], bool(match[3]), float(match[4])))
        elif found := _ACCEPTED.search(line):
            case.attempts.append((found[2], "connected"))
        else:
            for pattern, outcome in _FAILED:
                if found := pattern.search(line):
                    case.attempts.append((_role(found[1], int(found[2])), outcome))


def failover_cases() -> dict[str, Case]:
    """Every case of ``agi_hagi_failover.txt``, from its ``#`` lines and byte lines."""
    reader = _Reader()
    for raw in tr.transcript_path(FAILOVER).read_text().splitlines():
        if raw.startswith("#"):
            reader.annotation(raw[1:].strip())
        else:
            reader.byte_line(raw)
    return reader.cases


CASES = failover_cases()


# --- the peers ------------------------------------------------------------------------------------


class Peer:
    """A FastAGI peer that behaves as the capture's peer of the same role did, and records every
    line it read after the environment block (None: end of file)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.received: list[list[bytes | None]] = []
        self.envs: list[dict[str, str]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got: list[bytes | None] = []
        self.received.append(got)
        try:
            if self.role == "closes":  # accepts, then closes before reading anything
                return
            env: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\n", b""):
                key, _, value = line.decode().rstrip("\n").partition(": ")
                env[key] = value
            self.envs.append(env)
            if self.role == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if self.role == "hung":  # reads everything, never answers
                while line := await reader.readline():
                    got.append(line)
                got.append(None)
                return
            command = b"NOOP\n" if self.role == "midfail" else b'SET VARIABLE CR_ROUTE "served"\n'
            writer.write(command)
            await writer.drain()
            got.append(await reader.readline() or None)
        except ConnectionError:
            got.append(None)
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Peer]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        try:
            yield self
        finally:
            self._server.close()
            await asyncio.sleep(0.01)  # let the handlers finish


@contextmanager
def refusing() -> Iterator[int]:
    """A port nothing listens on (a connect is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    yield port


@dataclass
class Lab:
    """The capture's peers, each on a free port: role -> port, and the FastAGI peers by role."""

    ports: dict[str, int] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)

    def role_of(self, port: int) -> str:
        return next(role for role, own in self.ports.items() if own == port)

    def resolver(self, answer: list[SrvRecord], **options: bool) -> Resolver:
        """The capture's SRV answer with the lab's ports; each role's name resolves to 127.0.0.1
        (the capture's A records); any other name does not."""
        records = [
            SrvRecord(r.priority, r.weight, self.ports.get(ROLES.get(r.port, ""), r.port), r.target)
            for r in answer
        ]
        hosts = {f"{role}.callrouter.test": ["127.0.0.1"] for role in self.ports}
        return Resolver(srv={"_agi._tcp.callrouter.test": records}, hosts=hosts, **options)

    def seen(self, attempts: list[Attempt]) -> list[tuple[str, str]]:
        return [(self.role_of(a.port) if a.outcome != "unresolved" else a.host, a.outcome) for a in attempts]


@asynccontextmanager
async def lab() -> AsyncIterator[Lab]:
    found = Lab()
    async with AsyncExitStack() as stack:
        sockets = stack.enter_context(ExitStack())
        for role in ROLES.values():
            if role == "refused":
                found.ports[role] = sockets.enter_context(refusing())
            elif role == "dropped":
                found.ports[role] = sockets.enter_context(black_hole())
            else:
                peer = await stack.enter_async_context(Peer(role).running())
                found.peers[role], found.ports[role] = peer, peer.port
        yield found


async def agi(
    resolver: Resolver, line: CallerLine, attempts: list[Attempt], url: str = URL
) -> tuple[str, bool, float]:
    """One ``AGI()`` as ``callrouter-agi`` runs it: the absolute timeout armed before the lookup
    and the connects. (AGISTATUS, the route was set, seconds of the call's clock it took)."""
    started = line.clock.now()
    line.arm(BOUND)
    session = await play_url(
        url,
        CallerScript(channel_type="Local", agiexitonhangup=True),
        args=["case"],
        resolver=resolver,
        line=line,
        attempts=attempts,
        time_scale=SCALE,
    )
    took = line.clock.now() - started
    line.arm(0)
    if session is None:
        return "FAILURE", False, took
    return session.call.agistatus or "", bool(session.call.variables.get("CR_ROUTE")), took


# --- the failover cases ------------------------------------------------------------------------------

ONE_AGI = sorted(name for name, case in CASES.items() if len(case.steps) == 1)


def test_the_capture_has_every_case() -> None:
    assert set(CASES) == {
        "up", "refused", "dropped", "unresolved", "hung", "closes", "midfail", "reset", "alldown",
        "twodropped", "threedropped", "dotonly", "dotfirst", "norecord", "dnssilent", "twice", "portgiven",
    }  # fmt: skip
    # one lookup per AGI(); unanswered, the resolver asked twice (its 2 tries of 5 s); a port in
    # the URL: none (res_agi: "Specifying a port number disables SRV lookups")
    extra = {name: case.srv_queries - len(case.steps) for name, case in CASES.items()}
    assert {name: n for name, n in extra.items() if n} == {"dnssilent": 1, "portgiven": -1}


@pytest.mark.parametrize("name", ONE_AGI)
async def test_hagi_does_what_the_capture_shows(name: str) -> None:
    case = CASES[name]
    [expected] = case.steps
    async with lab() as rig:
        line = CallerLine(CallClock(SCALE))
        attempts: list[Attempt] = []
        # portgiven: CR_AGI=hagi://127.0.0.1:4701 (ctl-a's port) where the others have the name
        url = f"hagi://127.0.0.1:{rig.ports['ctl-a']}/route" if name == "portgiven" else URL
        agistatus, routed, took = await agi(
            rig.resolver(case.srv, unanswered=name == "dnssilent"), line, attempts, url
        )
        await asyncio.sleep(0.05)  # the peers read what was sent
    assert rig.seen(attempts) == case.attempts
    assert (agistatus, routed) == (expected.agistatus, expected.routed)
    assert expected.took - 0.1 <= took <= expected.took + 0.6, (took, expected.took)
    received = [got for peer in rig.peers.values() for got in peer.received]
    assert received == case.received
    for peer in rig.peers.values():
        for env in peer.envs:  # the URL as given, the script after the name
            assert (env["agi_request"], env["agi_network_script"]) == (url, "route")


async def test_every_agi_looks_the_name_up_again() -> None:
    """Case twice: the DNS answer changed between two ``AGI()`` of one channel; the second
    went to the new first target (no cache in Asterisk)."""
    case = CASES["twice"]
    assert case.swapped
    assert case.srv_queries == 2
    async with lab() as rig:
        line = CallerLine(CallClock(SCALE))
        first: list[Attempt] = []
        second: list[Attempt] = []
        srv = rig.resolver(case.srv).srv
        table = {"_agi._tcp.callrouter.test": list(srv["_agi._tcp.callrouter.test"])}
        resolver = Resolver(srv=table, hosts=rig.resolver([]).hosts)
        results = [await agi(resolver, line, first)]
        table["_agi._tcp.callrouter.test"] = list(rig.resolver(case.swapped).srv["_agi._tcp.callrouter.test"])
        results.append(await agi(resolver, line, second))
    assert rig.seen(first) + rig.seen(second) == case.attempts
    expected = [(step.agistatus, step.routed) for step in case.steps]
    assert [(status, routed) for status, routed, _ in results] == expected


@pytest.mark.parametrize("name", ["hung", "closes", "alldown", "threedropped", "dnssilent"])
async def test_the_shipped_dialplan_takes_the_fail_static_path_when_the_capture_did(name: str) -> None:
    """The whole call through ``dialplans/callrouter.conf`` (its ``callrouter-agi`` is what the
    capture ran): the route ``AGI()`` ends as captured and the call reaches the fail-static path
    when the capture's ``AGI()`` returned (on the call's clock, at a quarter of real time)."""
    case = CASES[name]
    [expected] = case.steps
    assert not expected.routed
    async with lab() as rig:
        asterisk = Asterisk(
            agi_url="hagi://callrouter.test",
            resolver=rig.resolver(case.srv, unanswered=name == "dnssilent"),
        )
        record = await place_call(
            "127.0.0.1", 1, CallerScript(dial=HARBOROUGH), asterisk=asterisk, time_scale=SCALE
        )
    assert rig.seen(record.connects[0]) == case.attempts
    assert record.ended == "fail-static route"
    assert record.fallback_at is not None
    assert expected.took - 0.1 <= record.fallback_at <= expected.took + 0.6, (
        record.fallback_at,
        expected.took,
    )


# --- the order of the targets ------------------------------------------------------------------------

_ORDER_CASE = re.compile(r"^---- case (\w+): .*; (\d+) calls")
_CALL = re.compile(r"^call (\d+): answer (\S+): connected to ([\w-]+) \(connections (\d+), SRV queries (\d+)")


def order_calls() -> dict[str, list[tuple[tuple[tuple[str, int], ...], str]]]:
    """case -> [(the call's SRV answer as (role, weight) in answer order, the role it reached)]."""
    found: dict[str, list[tuple[tuple[tuple[str, int], ...], str]]] = {}
    name = ""
    for line in tr.annotations(ORDER):
        if match := _ORDER_CASE.match(line):
            name = match[1]
            found[name] = []
        elif match := _CALL.match(line):
            assert (match[4], match[5]) == ("1", "1")  # one connect, one lookup per call
            entries = (entry.partition("/") for entry in match[2].split(","))
            answer = tuple((role, int(weight)) for role, _, weight in entries)
            found[name].append((answer, match[3]))
    return found


def first_shares(answer: tuple[tuple[str, int], ...], draws: int = 20000) -> dict[str, float]:
    """How often the emulator's order puts each target first for this answer (one priority)."""
    rng = random.Random(2782)
    records = [SrvRecord(10, weight, n, role) for n, (role, weight) in enumerate(answer)]
    counts: dict[str, int] = {}
    for _ in range(draws):
        first = try_order(records, lambda: rng.randint(0, RAND_MAX))[0].target
        counts[first] = counts.get(first, 0) + 1
    return {role: counts.get(role, 0) / draws for role, _ in answer}


ORDER_CASES = order_calls()


def test_the_order_capture_has_every_case() -> None:
    assert set(ORDER_CASES) == {
        "equal", "equalrotating", "sixtyfirst", "fortyfirst", "zerofirst", "nowweights", "threeequal",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(ORDER_CASES))
def test_which_target_goes_first_matches_the_capture(name: str) -> None:
    """Per distinct answer: a target the emulator always (never) puts first was first in every
    (no) captured call; otherwise the captured count is within 4 standard deviations of the
    emulator's share (for fortyfirst: 44 of 60 calls to the 40, the emulator's 2/3; RFC 2782's
    40 % would be 5 standard deviations away)."""
    by_answer: dict[tuple[tuple[str, int], ...], list[str]] = {}
    for answer, reached in ORDER_CASES[name]:
        by_answer.setdefault(answer, []).append(reached)
    for answer, reached in by_answer.items():
        shares = first_shares(answer)
        for role, share in shares.items():
            count, calls = reached.count(role), len(reached)
            if share in (0.0, 1.0):
                assert count == share * calls, (answer, role, count, calls)
            else:
                spread = 4 * math.sqrt(calls * share * (1 - share))
                assert abs(count - calls * share) <= spread, (answer, role, count, calls, share)


@pytest.mark.parametrize("name", ["sixtyfirst", "fortyfirst"])
def test_the_captured_shares_are_not_rfc_2782s(name: str) -> None:
    """RFC 2782 gives each record weight/sum of the first places; the capture is more than 4
    standard deviations away from that (60 of 60 against 60 %; 141 of 200 against 40 %)."""
    calls = ORDER_CASES[name]
    [answer] = {answer for answer, _ in calls}
    role, weight = answer[0]
    share = weight / sum(w for _, w in answer)
    count = sum(1 for _, reached in calls if reached == role)
    assert abs(count - len(calls) * share) > 4 * math.sqrt(len(calls) * share * (1 - share))


# --- a rotating DNS server: dnsmasq --------------------------------------------------------------

DNSMASQ = "agi_hagi_dnsmasq.txt"
_ANSWER = re.compile(r"^dnsmasq answer: (.*)$")
_REACHED = re.compile(r"^call \d+: connected to ([\w-]+) \(connections 1,")


def test_a_rotating_dns_server_gives_what_the_emulator_gives_for_its_answers() -> None:
    """dnsmasq rotates the whole answer, the priority-20 record too, so with two priority-10
    records of equal weight one of them was first in two answers of three: the calls went
    ctl-b, ctl-b, ctl-a, ... (20 and 10 of 30). The emulator's order, fed dnsmasq's answers in
    their cycle, reaches the same controller for every call (at one phase of the cycle)."""
    lines = tr.annotations(DNSMASQ)
    cycle: list[list[SrvRecord]] = []
    for line in lines:
        if match := _ANSWER.match(line):
            entries = [entry.split() for entry in match[1].split(", ")]
            answer = [SrvRecord(int(p), int(w), int(port), ROLES[int(port)]) for p, w, port in entries]
            if answer in cycle:
                break
            cycle.append(answer)
    reached = [match[1] for match in map(_REACHED.match, lines) if match]
    assert len(cycle) == 3
    assert len(reached) == 30
    firsts = [try_order(answer, lambda: 0)[0].target for answer in cycle]
    phases = [
        phase
        for phase in range(len(cycle))
        if reached == [firsts[(phase + n) % len(cycle)] for n in range(len(reached))]
    ]
    assert len(phases) == 1
    assert (reached.count("ctl-a"), reached.count("ctl-b")) == (10, 20)
