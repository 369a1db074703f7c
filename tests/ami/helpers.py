"""Shared helpers: capture fixtures, polling, the fake's model as expected state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from emulator.ami_model import QueueModel
from emulator.ami_wire import headers_dict, parse_message, parse_transcript, server_messages

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"


def fixture_text(name: str) -> str:
    """A capture excerpt from tests/fixtures/ami (copied from the reference captures)."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_messages(name: str) -> list[dict[str, str]]:
    """Every Asterisk message of a fixture, as header dicts in wire order."""
    blocks = server_messages(parse_transcript(fixture_text(name)))
    return [headers_dict(parse_message(b)) for b in blocks]


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> float:
    """Poll until ``predicate()``; returns the seconds waited, fails on timeout. The default
    bound is for a loaded machine: it costs nothing when the condition comes at once."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def expected_counts(model: QueueModel) -> dict[str, tuple[int, int, int]]:
    """Queue -> (waiting, logged in, available) as app_queue would count them."""
    out = {}
    for q in model.queues.values():
        logged = [m for m in q.members.values() if m.status not in (4, 5)]
        free = [m for m in logged if m.status in (0, 1) and not m.paused and not m.in_call]
        out[q.name] = (len(q.waiting), len(logged), len(free))
    return out
