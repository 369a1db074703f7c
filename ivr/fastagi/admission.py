"""Who may hold a FastAGI connection: allowed peers, and refusals logged without flooding.

Pure decisions (no I/O, time passed in); :class:`~ivr.fastagi.server.FastAgiServer` applies them
in ``connection_made``, before a connection gets any budget:

* :func:`parse_peers` turns ``ServerConfig.allowed_peers`` (addresses or CIDR networks) into
  networks, with a clear error for a bad entry;
* :class:`PeerFilter` answers "is this peer address allowed?" in O(1) per connection;
* :class:`RefusalLog` decides which refusals are logged: the first of each (event, reason,
  peer) in an interval, the rest counted and reported once when the interval ends, so a flood
  of refused connections never becomes a flood of log lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

PeerNetwork = IPv4Network | IPv6Network

OTHER_PEERS = "other peers"  # the peer named in the log once too many peers were refused in an interval


def parse_peers(entries: Iterable[str]) -> tuple[PeerNetwork, ...]:
    """``("127.0.0.1", "10.1.2.0/24", "::1/128")`` -> networks. Raises :class:`ValueError`
    naming the entry for a host name, a network with host bits set, or an empty list."""
    if isinstance(entries, str):
        raise ValueError("allowed_peers must be a list of addresses or networks, not one string")
    networks: list[PeerNetwork] = []
    for entry in entries:
        text = entry.strip()
        try:
            networks.append(ip_network(text))
        except ValueError as exc:
            raise ValueError(
                f"allowed peer {entry!r} is not an IP address or CIDR network ({exc}); "
                "host names are not accepted"
            ) from None
    if not networks:
        raise ValueError(
            "allowed_peers is empty, so no Asterisk could connect; "
            "to accept any peer say so explicitly: 0.0.0.0/0 and ::/0"
        )
    return tuple(networks)


def peer_allowed(host: str, networks: tuple[PeerNetwork, ...]) -> bool:
    """True if the address ``host`` (as the socket reports it) is inside one of ``networks``.
    An IPv4-mapped IPv6 address (a dual-stack listener) is judged as its IPv4 address."""
    try:
        address = ip_address(host)
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        mapped = address.ipv4_mapped
        return any(mapped in net for net in networks) or any(address in net for net in networks)
    return any(address in net for net in networks)


def turn_away(
    *, allowed: bool, draining: bool, sessions: int, max_sessions: int, peer_sessions: int, max_per_peer: int
) -> str | None:
    """Why a new connection is turned away, or None to admit it (it then waits for its
    environment block in the pending budget, not in the session budget). ``sessions`` and
    ``peer_sessions`` count calls (environment block received), never pending connections."""
    if not allowed:
        return "peer-not-allowed"
    if draining:
        return "draining"
    if sessions >= max_sessions:
        return "session-cap"
    if peer_sessions >= max_per_peer:
        return "peer-cap"
    return None


def fd_budget(max_sessions: int, max_pending: int) -> int:
    """File descriptors the server may need: every session, every pending connection, and a
    margin for connections being closed, the listener, Redis, AMI and log files."""
    return max_sessions + max_pending + 256


class PeerFilter:
    """:func:`peer_allowed` with a cache of verdicts by address.

    Parsing the address costs ~4 us per connection against a ~40 ns dict look-up (measured on
    the benchmark machine); the session path is ~200 us, so the cache is worth its few lines.
    It is bounded: emptied when it holds ``cache_size`` addresses (a scan from many sources)."""

    __slots__ = ("_cache", "cache_size", "networks")

    def __init__(self, networks: tuple[PeerNetwork, ...], cache_size: int = 1024) -> None:
        self.networks = networks
        self.cache_size = cache_size
        self._cache: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        verdict = self._cache.get(host)
        if verdict is None:
            verdict = peer_allowed(host, self.networks)
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[host] = verdict
        return verdict


@dataclass(frozen=True, slots=True)
class Repeats:
    """Refusals not logged one by one: ``count`` more of ``event``/``reason`` from ``peer``
    during the interval that just ended."""

    event: str
    reason: str
    peer: str
    count: int


@dataclass(slots=True)
class RefusalLog:
    """Which refusals to log (see the module docstring). ``max_peers`` bounds the distinct
    (event, reason, peer) keys kept per interval; beyond it peers are counted as
    :data:`OTHER_PEERS`. Every call is O(1) except :meth:`flush`, once per interval."""

    interval: float
    max_peers: int = 256
    _counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _ends: float = 0.0

    def note(self, event: str, reason: str, peer: str, now: float) -> str | None:
        """Count one refusal at ``now``. Returns the peer to log it under if it is the first
        of its kind in this interval (``peer`` or :data:`OTHER_PEERS`), else None."""
        counts = self._counts
        if not counts:
            self._ends = now + self.interval
        key = (event, reason, peer)
        seen = counts.get(key)
        if seen is None and len(counts) >= self.max_peers:
            key = (event, reason, OTHER_PEERS)
            seen = counts.get(key)
        if seen is not None:
            counts[key] = seen + 1
            return None
        counts[key] = 1
        return key[2]

    def flush(self, now: float) -> list[Repeats]:
        """At the end of the interval: what was not logged, and start a new interval."""
        if not self._counts or now < self._ends:
            return []
        repeats = [Repeats(*key, count - 1) for key, count in self._counts.items() if count > 1]
        self._counts.clear()
        return repeats

    def flush_all(self) -> list[Repeats]:
        """Everything not logged yet, whatever the time (the server is stopping)."""
        return self.flush(float("inf"))
