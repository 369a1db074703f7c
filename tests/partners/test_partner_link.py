"""Signing and checking one partner request (pure), and the secret file's rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from routing.core.live import QueueSnapshot
from routing.live.store import snapshot_json
from routing.partner_link import (
    SEQUENCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    PartnerKeyError,
    PartnerSecret,
    Refused,
    check_request,
    load_config,
    load_secret,
    next_sequence,
    parse_snapshot,
    request_headers,
)

SECRET = PartnerSecret(b"0123456789abcdef0123456789abcdef-test-only")
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SNAP = QueueSnapshot("hdc-team", 2, 35.5, 4, 1, NOW - timedelta(seconds=1))
BODY = snapshot_json(SNAP).encode()
Change = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]


def signed(body: bytes = BODY, *, at: float | None = None, sequence: int = 7) -> dict[str, str]:
    now_s = NOW.timestamp() if at is None else at
    return request_headers(
        SECRET, body, sender="harborough", receiver="charnwood", now_s=now_s, sequence=sequence
    )


def check(
    headers: dict[str, str], body: bytes = BODY, secret: PartnerSecret | None = SECRET, **kw: str
) -> int:
    who = {"sender": "harborough", "receiver": "charnwood", **kw}
    return check_request(secret, headers, body, now_s=NOW.timestamp(), **who)


def test_a_signed_request_verifies_and_gives_its_sequence() -> None:
    assert check(signed(sequence=42)) == 42
    assert parse_snapshot(BODY, NOW) == SNAP


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        (lambda h, b: ({**h, SIGNATURE_HEADER: h[SIGNATURE_HEADER][:-1] + "0"}, b), 401, "bad signature"),
        (lambda h, b: (h, b.replace(b'"available":1', b'"available":4')), 401, "bad signature"),
        (lambda h, b: ({**h, SEQUENCE_HEADER: "8"}, b), 401, "bad signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, b), 401, "missing"),
    ],
    ids=["signature", "body", "sequence", "no-timestamp"],
)
def test_any_change_to_a_signed_request_is_refused(change: Change, status: int, reason: str) -> None:
    headers, body = change(signed(), BODY)
    with pytest.raises(Refused) as refused:
        check(headers, body)
    assert refused.value.status == status
    assert reason in refused.value.reason


def test_a_request_for_another_receiver_or_from_another_sender_does_not_verify() -> None:
    with pytest.raises(Refused, match="bad signature"):
        check(signed(), receiver="melton")
    with pytest.raises(Refused, match="bad signature"):
        check(signed(), sender="melton")
    with pytest.raises(Refused, match="bad signature"):
        check(signed(), secret=PartnerSecret(b"another-secret-of-at-least-32-characters"))
    with pytest.raises(Refused, match="bad signature"):
        check(signed(), secret=None)  # no partnership with this sender


@pytest.mark.parametrize("skew_s", [-31.0, 31.0, 3600.0])
def test_a_timestamp_more_than_30_s_from_the_receivers_clock_is_refused(skew_s: float) -> None:
    with pytest.raises(Refused, match="timestamp outside") as refused:
        check(signed(at=NOW.timestamp() + skew_s))
    assert refused.value.status == 401
    assert check(signed(at=NOW.timestamp() + 29.0)) == 7


def test_the_sequence_follows_the_clock_and_always_grows() -> None:
    first = next_sequence(0, 1_795_000_000.0)
    assert first == 1_795_000_000_000_000
    assert next_sequence(first, 1_795_000_000.0) == first + 1  # the clock stood still
    assert next_sequence(first, 1_794_999_999.0) == first + 1  # or went back
    assert next_sequence(first, 1_795_000_001.0) == first + 1_000_000


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (json.dumps({"queue": "q"}).encode(), "exactly the fields"),
        (BODY.replace(b'"waiting":2', b'"waiting":-1'), "waiting must"),
        (BODY.replace(b'"waiting":2', b'"waiting":2.5'), "waiting must"),
        (BODY.replace(b'"waiting":2', b'"waiting":true'), "waiting must"),
        (BODY.replace(b'"logged_in":4', b'"logged_in":1000001'), "logged_in must"),
        (BODY.replace(b'"available":1', b'"available":5'), "must not exceed"),
        (BODY.replace(b'"longest_wait_s":35.5', b'"longest_wait_s":1e9'), "longest_wait_s"),
        (BODY.replace(b'"hdc-team"', b'"' + b"q" * 65 + b'"'), "queue must"),
        (BODY.replace(b"+00:00", b""), "UTC offset"),
        (BODY.replace(b"2026-11-24", b"2027-11-24"), "future"),
    ],
)
def test_a_snapshot_of_the_wrong_shape_or_out_of_bounds_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(Refused, match=reason) as refused:
        parse_snapshot(body, NOW)
    assert refused.value.status == 400


def test_the_secret_file_must_be_the_owners_alone_and_long_enough(tmp_path: Path) -> None:
    path = tmp_path / "harborough.key"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    path.chmod(0o640)
    with pytest.raises(PartnerKeyError, match="chmod 600") as error:
        load_secret(path)
    assert "0123456789abcdef" not in str(error.value)
    path.chmod(0o600)
    assert load_secret(path).value == b"0123456789abcdef0123456789abcdef"
    assert "0123" not in repr(load_secret(path))
    path.write_text("short\n")
    with pytest.raises(PartnerKeyError, match="shorter than 32"):
        load_secret(path)
    with pytest.raises(PartnerKeyError, match="No such file"):
        load_secret(tmp_path / "melton.key")


def test_the_configuration_reads_one_secret_per_partner(tmp_path: Path) -> None:
    (tmp_path / "harborough.key").write_text("x" * 40)
    (tmp_path / "harborough.key").chmod(0o600)
    assert load_config("", {"harborough": "https://h.example"}, tmp_path) is None
    config = load_config("charnwood", {"harborough": "https://h.example"}, tmp_path, interval_s=0.5)
    assert config is not None
    assert config.secrets["harborough"].value == b"x" * 40
    assert config.interval_s == 0.5
    with pytest.raises(PartnerKeyError, match=r"melton\.key"):
        load_config("charnwood", {"melton": "https://m.example"}, tmp_path)
    with pytest.raises(PartnerKeyError, match="key_dir"):
        load_config("charnwood", {"harborough": "https://h.example"}, None)
    with pytest.raises(PartnerKeyError, match="this centre itself"):
        load_config("charnwood", {"charnwood": "https://c.example"}, tmp_path)
