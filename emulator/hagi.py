"""How Asterisk connects ``AGI()`` to a FastAGI server: ``agi://`` and ``hagi://`` (DNS SRV).

Observed on Asterisk 22.10.1 (``tests/fixtures/asterisk/agi_connect_failures.txt`` for
``agi://``; ``agi_hagi_failover.txt`` and ``agi_hagi_order.txt`` for ``hagi://``, with a DNS
server answering the SRV records), and read in its source (``res/res_agi.c``:
``launch_netscript()``, ``handle_connection()``, ``launch_ha_netscript()``; ``main/srv.c``;
``main/dns.c``):

* ``agi://host[:port][/script]``: every address ``host`` resolves to is tried in turn, each with
  a non-blocking ``connect()`` and at most ``MAX_AGI_CONNECT`` (2 s) to complete it; the first
  that connects is used. None: ``AGISTATUS=FAILURE`` (refused: 1 ms; SYN dropped: 2.0 s). No
  port: 4573.
* ``hagi://name[/script]``: ``_agi._tcp.<name>`` is looked up (SRV) afresh by every ``AGI()``
  and its targets are tried in the order below, each as an ``agi://target:port/script``.
  Asterisk moves to the next target **only when that connect fails** (refused, at once; the 2 s
  timeout; the target's name does not resolve, at once). Once a target accepts,
  ``launch_ha_netscript()`` returns: a controller that accepted and then hangs, closes at once,
  resets, or closes after a command without a route is never failed over (observed:
  ``AGISTATUS=SUCCESS`` with nothing set for the last three, ``HANGUP`` when the dialplan's
  absolute timeout ends the hung one). Every target failed, or the lookup failed (NXDOMAIN, no
  answer: ``AGISTATUS=FAILURE``). A ``hagi://name:port`` (a port given) disables the lookup: it
  is ``agi://name:port``.
* Connects do not look at the channel: the dialplan's ``TIMEOUT(absolute)`` is not checked while
  Asterisk works through the targets (three dropped SYNs: 6 s, past a 5 s bound); the session
  that finally connects gets its environment and then ``HANGUP``, and ``AGI()`` returns
  ``HANGUP`` (the dialplan goes to ``T``).
* The order (``main/srv.c``): answers sorted by priority, lowest first, keeping the DNS answer
  order among equal priorities (``srv_callback()``). If any answer has a weight, each priority
  group is reordered by ``process_weights()``: while the group has a weight, draw ``r`` in
  ``1..sum of the group's weights`` and take the **first** remaining entry whose **own weight**
  is at least ``r`` (not the running sum RFC 2782 describes); if none is, draw again; entries of
  weight 0 come last, in answer order. So weights are not proportions: with weights 60 and 40
  the 60 is always first when it comes first in the answer (observed 60 calls of 60), and 1
  time in 3 when it comes second (observed 16 of 60); with equal weights the answer order alone
  decides (observed 40 of 40 on the first answer).
* A target of ``.`` ("no such service", RFC 2782) does **not** end the lookup as
  ``parse_srv()`` means it to: glibc's ``dn_expand()`` gives ``""`` for the root name, not
  ``"."``, so the record is kept and tried as ``agi://:port``, which does not resolve (an
  ``Unable to locate host ':port'`` warning), and Asterisk moves on to the next target.
* A DNS server that never answers: the lookup fails after the resolver's own timeouts (glibc
  defaults: 2 tries of 5 s = 10 s), in the channel's thread, then ``AGISTATUS=FAILURE``.

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
RESOLVER_GIVES_UP = 10.0  # glibc res_nsearch, defaults timeout:5 attempts:2 (agi_hagi_failover.txt)


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
    """``ast_srv_lookup()`` found nothing: no record (NXDOMAIN, an empty answer, no answer)."""


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
    """The targets in the order ``launch_ha_netscript()`` tries them (``ast_srv_lookup()``). A
    ``.`` target stays in the list (glibc expands it to ``""``): it fails to resolve when tried."""
    if not answers:
        raise SrvLookupFailed("no SRV record")
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
    IP literal resolves to itself; ``localhost`` to 127.0.0.1). ``rand``: ``ast_random()``.
    ``unanswered``: the DNS server never answers, so every SRV lookup fails after
    :data:`RESOLVER_GIVES_UP` seconds of the call's clock."""

    srv: SrvTable = field(default_factory=dict)
    hosts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    rand: Callable[[], int] = field(default=lambda: _random.randint(0, RAND_MAX))
    unanswered: bool = False

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
    url: str,
    resolver: Resolver | None = None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    lookup_gives_up: float = RESOLVER_GIVES_UP,
) -> Connection:
    """Connect as ``launch_script()`` does for ``url``; ``connect_timeout``: real seconds allowed
    per address (``MAX_AGI_CONNECT``), ``lookup_gives_up``: real seconds an unanswered SRV lookup
    takes (:data:`RESOLVER_GIVES_UP`); both scaled when the call's clock runs faster."""
    resolver = resolver or Resolver()
    parsed = parse_url(url)
    found = Connection()
    if parsed is None:
        return found
    if parsed.scheme == "agi" or parsed.port_given:  # strchr(host, ':'): a port disables the lookup
        await _netscript(parsed.host, parsed.port or AGI_PORT, resolver, found, connect_timeout)
        return found
    try:
        if resolver.unanswered:
            await asyncio.sleep(lookup_gives_up)
            raise SrvLookupFailed("the DNS server did not answer")
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
