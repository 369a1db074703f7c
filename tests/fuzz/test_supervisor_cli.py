"""Property tests of ``callrouter toggle`` and ``callrouter state`` over arbitrary text.

Documented (``callrouter.supervisor_cli``): a refused toggle prints ``callrouter: refused:
<reason>`` and exits 2; an accepted one is stored (real Redis here) and exits 0. Whatever the
supervisor types as reason, name or expiry, nothing else may happen (no traceback), and what
was accepted is what ``state`` reads back."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import example, given
from hypothesis import strategies as st

from callrouter.cli import main
from routing.redis_keys import KEYS
from routing.supervisor import KINDS
from tests.controller.conftest import EXAMPLE
from tests.fuzz.strategies import LINE_TEXT, fewer_examples
from tests.fuzz.test_supervisor_input import EXPIRY
from tests.support.redis_server import RedisServer

TENANTS = ["charnwood", "harborough", "leicester"]
pytestmark = pytest.mark.usefixtures("toggle_key_env")


@contextlib.contextmanager
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def toggle(redis_url: str, *args: str) -> tuple[int, str, str]:
    with captured() as (out, err):
        code = main(["toggle", "--direct", *args, "--plan", str(EXAMPLE), "--redis", redis_url, "--json"])
    return code, out.getvalue(), err.getvalue()


@given(
    kind=st.sampled_from(KINDS),
    tenant=st.sampled_from(TENANTS),
    on=st.booleans(),
    reason=LINE_TEXT,
    by=LINE_TEXT,
    expires=EXPIRY,
)
@example(kind="emergency", tenant="charnwood", on=True, reason=" flood ", by="sam", expires="2h")
@fewer_examples(0.3)
def test_the_toggle_command_accepts_or_refuses_in_plain_words(
    redis_server: RedisServer, *, kind: str, tenant: str, on: bool, reason: str, by: str, expires: str
) -> None:
    switch = "--on" if on else "--off"
    code, out, err = toggle(
        redis_server.url, kind, tenant, switch, f"--reason={reason}", f"--by={by}", f"--expires={expires}"
    )
    if code == 2:
        assert err.startswith("callrouter: refused: ")
        assert out == ""
        return
    assert code == 0
    stored = json.loads(out)
    assert (stored["kind"], stored["tenant"], stored["on"]) == (kind, tenant, on)


def test_a_terminal_escape_in_a_reason_is_refused(redis_server: RedisServer) -> None:
    reason = "flood\x1b[2J\x1b[31m cleared screen"  # a terminal escape in the reason
    code, out, err = toggle(
        redis_server.url, "emergency", "charnwood", "--on", f"--reason={reason}", "--by=sam", "--expires=1h"
    )
    assert (code, out) == (2, "")
    assert err.startswith("callrouter: refused: ")


def test_state_shows_a_stored_escape_escaped(redis_server: RedisServer) -> None:
    """A toggle written to Redis by something other than callrouter (a raw SET, unsigned) with a
    terminal escape in its reason: ``state`` says the controllers ignore it, and never prints
    its text (nobody with the key wrote it)."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        value = {
            "reason": "flood\x1b[2J cleared",
            "by": "x\x1b[31my",
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }
        client.set(KEYS.toggle("emergency", "charnwood"), json.dumps(value), px=3_600_000)
    finally:
        client.close()
    with captured() as (out, _):
        assert main(["state", "--direct", "--plan", str(EXAMPLE), "--redis", redis_server.url]) == 0
    shown = out.getvalue()
    assert "charnwood: IGNORED emergency toggle in Redis (unsigned: no kid and mac)" in shown
    assert "cleared" not in shown
    assert "x\\x1b[31my" not in shown
    assert not any(ord(c) < 32 and c != "\n" for c in shown)


@pytest.mark.parametrize(
    "raw", ["not json", '{"reason": "r"}', '{"reason":"r","by":"b","expires_at":5}', "[]"]
)
def test_a_value_that_is_no_toggle_is_ignored_not_a_crash(redis_server: RedisServer, raw: str) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set(KEYS.toggle("emergency", "charnwood"), raw, px=3_600_000)
    finally:
        client.close()
    with captured() as (out, _):
        assert main(["state", "--direct", "--plan", str(EXAMPLE), "--redis", redis_server.url]) == 0
    assert "charnwood" in out.getvalue()
