"""How Asterisk connects ``AGI()`` to a FastAGI server: ``agi://`` and ``hagi://`` (DNS SRV).

Read from the source of Asterisk 22.10.1 (``res/res_agi.c``: ``launch_netscript()``,
``handle_connection()``, ``launch_ha_netscript()``; ``main/srv.c``; ``main/dns.c``), with the
timings of ``agi_connect_failures.txt`` (refused: ``AGISTATUS=FAILURE`` 1 ms after ``AGI()``
began; SYN dropped: 2.0 s). ``hagi://`` itself was not run on the real Asterisk (it needs DNS SRV
records): everything below about SRV comes from the source alone.

* ``agi://host[:port][/script]``: every address ``host`` resolves to is tried in turn, each with
  a non-blocking ``connect()`` and at most ``MAX_AGI_CONNECT`` (2 s) to complete it; the first
  that connects is used. None: ``AGISTATUS=FAILURE``. No port: 4573.
* ``hagi://name[/script]``: ``_agi._tcp.<name>`` is looked up (SRV) and its targets are tried in
  the order below, each as an ``agi://target:port/script``. Asterisk moves to the next target
  **only when that connect fails** (refused, unreachable, the 2 s timeout, or the name of the
  target does not resolve). Once a target accepts, ``launch_ha_netscript()`` returns: a
  controller that accepted and then hangs, closes or answers ``failure`` is never failed over.
  Every target failed, or the lookup failed: ``AGISTATUS=FAILURE``. A ``hagi://name:port`` (a
  port given) disables the lookup: it is ``agi://name:port``.
* The order (``main/srv.c``): answers sorted by priority, lowest first, keeping the DNS answer
  order among equal priorities (``srv_callback()``). If any answer has a weight, each priority
  group is reordered by ``process_weights()``: while the group has a weight, draw ``r`` in
  ``1..sum of the group's weights`` and take the **first** remaining entry whose **own weight**
  is at least ``r`` (not the running sum RFC 2782 describes); if none is, draw again; entries of
  weight 0 come last, in answer order. So weights are not proportions: with weights 60 and 40
  the 60 is always first when it comes first in the answer, and 1 time in 3 when it comes
  second; with equal weights the answer order alone decides (the first answer is always
  tried first).
* A target of ``.`` ("no such service") makes the whole lookup fail (``parse_srv()`` refuses
  it, ``dns_parse_answer()`` gives up): ``AGISTATUS=FAILURE`` at once.

The emulator takes the SRV answers from an injected table (no real DNS) and names from an
injected hosts table; connects are real TCP connects to loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random as _random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

CONNECT_TIMEOUT = 2.0  # res_agi MAX_AGI_CONNECT (2000 ms), agi_connect_failures.txt
AGI_PORT = 4573  # res_agi AGI_PORT
SRV_PREFIX = "_agi._tcp."  # res_agi SRV_PREFIX
RAND_MAX = 2**31 - 1  # ast_random() is random(): 0..RAND_MAX


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV answer: ``priority weight port target``, as in a zone file."""

    priority: int
    weight: int
    port: int
    target: str


SrvTable = Mapping[str, Sequence[SrvRecord]]
"""Service name (``_agi._tcp.<name>``) -> its SRV answers, in the order DNS returns them."""


class SrvLookupFailed(Exception):
    """``ast_srv_lookup()`` found nothing usable: no record, or a ``.`` target."""


def by_priority(answers: Sequence[SrvRecord]) -> list[SrvRecord]:
    """``srv_callback()``: each answer goes before the first one of a higher priority number,
    so the list is by priority and, within one priority, in answer order."""
    ordered: list[SrvRecord] = []
    for entry in answers:
        at = next((i for i, cur in enumerate(ordered) if cur.priority > entry.priority), len(ordered))
        ordered.insert(at, entry)
    return ordered


def draw(weight_sum: int, rand: Callable[[], int]) -> int:
    """``1 + (unsigned int) ((float) weight_sum * (ast_random() / ((float) RAND_MAX + 1.0)))``."""
    return 1 + int(float(weight_sum) * (rand() / (float(RAND_MAX) + 1.0)))


def process_weights(entries: Sequence[SrvRecord], rand: Callable[[], int]) -> list[SrvRecord]:
    """``process_weights()`` of main/srv.c, as written: per priority group, the first remaining
    entry whose own weight reaches the draw goes next; a draw no entry reaches is drawn again;
    when only weight 0 is left, those follow in order."""
    pending = list(entries)
    result: list[SrvRecord] = []
    while pending:
        priority = pending[0].priority
        group = [entry for entry in pending if entry.priority == priority]
        pending = pending[len(group) :]  # the list is sorted: the group is its head
        while group:
            weight_sum = sum(entry.weight for entry in group)
            if weight_sum == 0:
                result += group
                break
            r = draw(weight_sum, rand)
            chosen = next((entry for entry in group if entry.weight >= r), None)
            if chosen is not None:
                group.remove(chosen)
                result.append(chosen)
    return result


def try_order(answers: Sequence[SrvRecord], rand: Callable[[], int]) -> list[SrvRecord]:
    """The targets in the order ``launch_ha_netscript()`` tries them (``ast_srv_lookup()``)."""
    if not answers or any(entry.target.rstrip(".") == "" for entry in answers):
        raise SrvLookupFailed("no usable SRV record")
    ordered = by_priority(answers)
    if any(entry.weight for entry in ordered):
        ordered = process_weights(ordered, rand)
    return ordered


@dataclass(frozen=True, slots=True)
class AgiUrl:
    """An ``AGI()`` URL: ``scheme://host[:port][/script]``."""

    scheme: str  # "agi" or "hagi"
    host: str
    port: int | None
    script: str
    port_given: bool = False  # a ":" after the host: for hagi://, no SRV lookup


def parse_url(url: str) -> AgiUrl | None:
    """Split ``agi://`` / ``hagi://`` like res_agi (the script is everything after the first
    ``/`` following the host); None for anything else (a classic script)."""
    for scheme in ("hagi", "agi"):
        prefix = f"{scheme}://"
        if url[: len(prefix)].lower() == prefix:
            host, _, script = url[len(prefix) :].partition("/")
            name, colon, port = host.rpartition(":") if not host.startswith("[") else _bracketed(host)
            if colon and port.isdigit():
                return AgiUrl(scheme, name, int(port), script, port_given=True)
            return AgiUrl(scheme, host, None, script, port_given=bool(colon))
    return None


def _bracketed(host: str) -> tuple[str, str, str]:
    name, _, rest = host.partition("]")
    return (name[1:], ":", rest[1:]) if rest.startswith(":") else (name[1:], "", "")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One connect Asterisk made: to ``host:port``, how it ended, the real seconds it took."""

    host: str
    port: int
    outcome: str  # connected, refused, timeout, unresolved, error
    seconds: float


@dataclass
class Connection:
    """Where ``AGI()`` got to: the stream pair when a target accepted, and every attempt."""

    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    host: str = ""
    port: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    lookup_failed: bool = False

    @property
    def connected(self) -> bool:
        return self.writer is not None


@dataclass(frozen=True)
class Resolver:
    """The emulated Asterisk's DNS: SRV answers by service name and addresses by host name (an
    IP literal resolves to itself; ``localhost`` to 127.0.0.1). ``rand``: ``ast_random()``."""

    srv: SrvTable = field(default_factory=dict)
    hosts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    rand: Callable[[], int] = field(default=lambda: _random.randint(0, RAND_MAX))

    def addresses(self, host: str) -> list[str]:
        if host in self.hosts:
            return list(self.hosts[host])
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            return ["127.0.0.1"] if host == "localhost" else []

    def targets(self, name: str) -> list[SrvRecord]:
        """``ast_srv_lookup()`` of ``_agi._tcp.<name>``: the targets in the order tried."""
        return try_order(self.srv.get(f"{SRV_PREFIX}{name}", ()), self.rand)


async def connect(
    url: str, resolver: Resolver | None = None, *, connect_timeout: float = CONNECT_TIMEOUT
) -> Connection:
    """Connect as ``launch_script()`` does for ``url``; ``connect_timeout``: real seconds allowed
    per address (``MAX_AGI_CONNECT``, scaled when the call's clock runs faster)."""
    resolver = resolver or Resolver()
    parsed = parse_url(url)
    found = Connection()
    if parsed is None:
        return found
    if parsed.scheme == "agi" or parsed.port_given:  # strchr(host, ':'): a port disables the lookup
        await _netscript(parsed.host, parsed.port or AGI_PORT, resolver, found, connect_timeout)
        return found
    try:
        targets = resolver.targets(parsed.host)
    except SrvLookupFailed:
        found.lookup_failed = True
        return found
    for target in targets:
        if await _netscript(target.target.rstrip("."), target.port, resolver, found, connect_timeout):
            break  # once a target accepted, launch_ha_netscript() returns whatever happens next
    return found


async def _netscript(
    host: str, port: int, resolver: Resolver, found: Connection, connect_timeout: float
) -> bool:
    """``launch_netscript()`` for one host: each of its addresses in turn; True once connected."""
    addresses = resolver.addresses(host)
    if not addresses:
        found.attempts.append(Attempt(host, port, "unresolved", 0.0))
        return False
    for address in addresses:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(address, port or AGI_PORT)
        except TimeoutError:
            found.attempts.append(Attempt(address, port, "timeout", time.perf_counter() - started))
            continue
        except ConnectionRefusedError:
            found.attempts.append(Attempt(address, port, "refused", time.perf_counter() - started))
            continue
        except OSError:
            found.attempts.append(Attempt(address, port, "error", time.perf_counter() - started))
            continue
        found.attempts.append(Attempt(address, port, "connected", time.perf_counter() - started))
        found.reader, found.writer, found.host, found.port = reader, writer, address, port or AGI_PORT
        return True
    return False
