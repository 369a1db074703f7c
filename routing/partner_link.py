"""The capacity snapshot exchange between partner centres: signing, checking, replay rules.

Each centre has its own Redis, so a partner's capacity reaches it over HTTPS: every second the
sending centre's web service POSTs its published :class:`~routing.core.live.QueueSnapshot` to
``/api/v1/partners/{sender}/snapshot`` at each partner (``web/partners.py``), and the partner
stores it under its own ``centre_snapshot(sender)`` key, where its controllers already read it
(``docs/partners.md``).

A partnership shares one secret (a file of mode 600 at both ends, at least 32 characters). A
request carries three headers:

* ``X-Callrouter-Timestamp``: the sender's Unix time (seconds, decimal);
* ``X-Callrouter-Sequence``: an integer that grows with every request of that sender (its
  Unix time in microseconds, or one more than its last if the clock stood still), so a
  restarted sender or a standby taking over continues above the last one seen;
* ``X-Callrouter-Signature``: ``sha256=`` and the hex HMAC-SHA256 of :func:`signed_text`
  (a label, the sending and receiving centres, the timestamp, the sequence and the body).

The receiver refuses a wrong signature, a timestamp more than ``max_skew_s`` (30 s) from its own
clock, and a sequence not greater than the last it accepted from that sender.

Pure apart from :func:`load_secret` (reads the file).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from routing.core.live import QueueSnapshot

TIMESTAMP_HEADER = "X-Callrouter-Timestamp"
SEQUENCE_HEADER = "X-Callrouter-Sequence"
SIGNATURE_HEADER = "X-Callrouter-Signature"
SIGNATURE_SCHEME = "sha256="
MIN_SECRET_CHARS = 32
MAX_SKEW_S = 30.0  # a request whose timestamp is further from the receiver's clock is refused
MAX_BODY_BYTES = 4096  # a snapshot is ~150 bytes; a larger body is refused (413) unread
MAX_SEQUENCE = 2**53  # exact in a Lua number (a double), where the receiver compares them
MAX_COUNT = 100_000  # waiting callers, advisers: anything larger is not a real figure
MAX_WAIT_S = 86_400.0
MAX_NAME_CHARS = 64
_LABEL = b"callrouter partner snapshot v1"


class PartnerKeyError(ValueError):
    """A partnership secret file cannot be used; the message says why (never the secret)."""


class Refused(ValueError):
    """A request that is not accepted: ``status`` (400 or 401) and a reason for the log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PartnerSecret:
    """The shared secret of one partnership (never in ``repr()`` or the logs)."""

    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) < MIN_SECRET_CHARS:
            raise PartnerKeyError(f"the secret is shorter than {MIN_SECRET_CHARS} characters")


def load_secret(path: Path) -> PartnerSecret:
    """The secret in ``path`` (its first line); :class:`PartnerKeyError` if it cannot be read, is
    readable or writable by the group or others, or is too short."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise PartnerKeyError(f"partner key file {path}: not a regular file")
            if mode & 0o077:
                raise PartnerKeyError(
                    f"partner key file {path}: readable or writable by others (mode "
                    f"{stat.S_IMODE(mode):04o}); make it the owner's only: chmod 600 {path}"
                )
            raw = handle.read(4096)
    except OSError as exc:
        raise PartnerKeyError(f"partner key file {path}: {exc.strerror}") from None
    try:
        lines = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise PartnerKeyError(f"partner key file {path}: not text (UTF-8)") from None
    if not lines:
        raise PartnerKeyError(f"partner key file {path}: empty")
    try:
        return PartnerSecret(lines[0].encode("utf-8"))
    except PartnerKeyError as exc:
        raise PartnerKeyError(f"partner key file {path}: {exc}") from None


def signed_text(sender: str, receiver: str, timestamp: str, sequence: str, body: bytes) -> bytes:
    """What the signature covers: nothing in the request changes without breaking it, and a
    request to one partner does not verify at another."""
    head = "\n".join((sender, receiver, timestamp, sequence)).encode("utf-8")
    return _LABEL + b"\n" + head + b"\n" + body


def sign(
    secret: PartnerSecret, body: bytes, *, sender: str, receiver: str, timestamp: str, sequence: str
) -> str:
    mac = hmac.new(secret.value, signed_text(sender, receiver, timestamp, sequence, body), hashlib.sha256)
    return SIGNATURE_SCHEME + mac.hexdigest()


def request_headers(
    secret: PartnerSecret, body: bytes, *, sender: str, receiver: str, now_s: float, sequence: int
) -> dict[str, str]:
    """The headers of one request from ``sender`` to ``receiver``."""
    timestamp, seq = f"{now_s:.6f}", str(sequence)
    return {
        TIMESTAMP_HEADER: timestamp,
        SEQUENCE_HEADER: seq,
        SIGNATURE_HEADER: sign(
            secret, body, sender=sender, receiver=receiver, timestamp=timestamp, sequence=seq
        ),
        "Content-Type": "application/json",
    }


def next_sequence(last: int, now_s: float) -> int:
    """The sender's next sequence: its clock in microseconds, always above the last one."""
    return max(last + 1, int(now_s * 1_000_000))


def check_request(
    secret: PartnerSecret | None,
    headers: dict[str, str],
    body: bytes,
    *,
    sender: str,
    receiver: str,
    now_s: float,
    max_skew_s: float = MAX_SKEW_S,
) -> int:
    """The request's sequence if its signature and timestamp are good; else :class:`Refused`.

    ``secret`` None: no partnership with ``sender`` (refused like a wrong signature, so a
    prober learns nothing about which centres are partners). The caller still has to check
    that the sequence is above the last one seen (atomically, in Redis)."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    sequence = headers.get(SEQUENCE_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not (timestamp and sequence and given):
        raise Refused(401, "missing signature headers")
    if secret is None:
        raise Refused(401, "bad signature")
    expected = sign(secret, body, sender=sender, receiver=receiver, timestamp=timestamp, sequence=sequence)
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise Refused(401, "bad signature")
    try:
        sent_at = float(timestamp)
        seq = int(sequence)
    except ValueError:
        raise Refused(400, "timestamp or sequence is not a number") from None
    if not math.isfinite(sent_at) or abs(now_s - sent_at) > max_skew_s:
        raise Refused(401, f"timestamp outside +-{max_skew_s:g} s of the receiver's clock")
    if not 0 < seq < MAX_SEQUENCE:
        raise Refused(400, "sequence out of range")
    return seq


def parse_snapshot(body: bytes, now: datetime, max_skew_s: float = MAX_SKEW_S) -> QueueSnapshot:
    """The snapshot in a (verified) body, checked for shape and bounds; else :class:`Refused`."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body must be a JSON object")
    expected = {"queue", "waiting", "longest_wait_s", "logged_in", "available", "observed_at"}
    if set(data) != expected:
        raise Refused(400, f"the body must have exactly the fields {', '.join(sorted(expected))}")
    queue, observed = data["queue"], data["observed_at"]
    if not isinstance(queue, str) or not 0 < len(queue) <= MAX_NAME_CHARS:
        raise Refused(400, f"queue must be a name of 1 to {MAX_NAME_CHARS} characters")
    counts = {name: data[name] for name in ("waiting", "logged_in", "available")}
    for name, value in counts.items():
        if type(value) is not int or not 0 <= value <= MAX_COUNT:
            raise Refused(400, f"{name} must be a whole number from 0 to {MAX_COUNT}")
    wait = data["longest_wait_s"]
    if type(wait) not in (int, float) or not 0 <= wait <= MAX_WAIT_S:
        raise Refused(400, f"longest_wait_s must be a number from 0 to {MAX_WAIT_S:g}")
    if counts["available"] > counts["logged_in"]:
        raise Refused(400, "available must not exceed logged_in")
    try:
        observed_at = datetime.fromisoformat(observed) if isinstance(observed, str) else None
    except ValueError:
        observed_at = None
    if observed_at is None or observed_at.tzinfo is None:
        raise Refused(400, "observed_at must be an ISO-8601 time with its UTC offset")
    if (observed_at - now).total_seconds() > max_skew_s:
        raise Refused(400, "observed_at is in the future")
    return QueueSnapshot(
        queue=queue,
        waiting=counts["waiting"],
        longest_wait_s=float(wait),
        logged_in=counts["logged_in"],
        available=counts["available"],
        observed_at=observed_at,
    )


@dataclass(frozen=True, slots=True)
class PartnerConfig:
    """This centre's side of its partnerships (``docs/partners.md``)."""

    centre: str  # this centre's id, as the partners' plans name it
    secrets: dict[str, PartnerSecret]  # partner id -> the partnership's secret
    urls: dict[str, str]  # partner id -> base URL of its web service
    interval_s: float = 1.0
    timeout_s: float = 0.8
    stale_age_s: float = 30.0
    max_skew_s: float = MAX_SKEW_S
    ca_file: Path | None = None


def load_config(
    centre: str,
    urls: dict[str, str],
    key_dir: Path | None,
    **options: Any,
) -> PartnerConfig | None:
    """The configuration, secrets read from ``key_dir/<partner>.key``; None when ``centre`` is
    empty (no exchange). :class:`PartnerKeyError` when a partner has no usable secret."""
    if not centre:
        return None
    if urls and key_dir is None:
        raise PartnerKeyError("partners.peers is set but partners.key_dir is not")
    if centre in urls:
        raise PartnerKeyError(f"partner {centre} is this centre itself")
    secrets = {name: load_secret(key_dir / f"{name}.key") for name in urls} if key_dir else {}
    return PartnerConfig(centre=centre, secrets=secrets, urls=dict(urls), **options)
