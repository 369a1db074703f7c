"""Benchmark: the AMI stream parser alone (bytes in, messages dispatched), no sockets, no Redis.

Run: ``.venv/bin/python -m benchmarks.ami_parse_bench [--rounds N]``.

Side by side in the same run, on the same bytes: panoramisk 1.4's ``AMIProtocol`` (the
baseline) and callrouter's ``Utf8AmiProtocol``, each counting what it dispatches:

* a flood of captured events (Asterisk 22.10.1) in 64 KiB reads, as a busy socket delivers;
* one long message (a 100 kB ``VarSet``) trickling in reads of 1 and of 100 bytes: a parser
  that scans everything it holds on every read takes time quadratic in the message's size.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from panoramisk.ami_protocol import AMIProtocol

from emulator.ami_wire import parse_transcript, server_messages
from routing.ami.client import Utf8AmiProtocol
from tests.ami.helpers import fixture_text

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class _Count:
    """What the Manager is to a protocol, reduced to counting dispatched events."""

    def __init__(self) -> None:
        self.events = 0

    def dispatch(self, message: Any) -> None:
        self.events += 1

    def connection_lost(self, exc: object) -> None:
        """Not expected here."""


class _Transport(asyncio.Transport):
    def write(self, data: Any) -> None:
        """Nothing is sent."""


def flood(megabytes: int) -> bytes:
    names = ["queue_answered_call.txt", "queue_member_management.txt", "dtmf_events.txt"]
    messages = [m for n in names for m in server_messages(parse_transcript(fixture_text(n)))]
    events = [m for m in messages if m.startswith(b"Event")]
    block = b"".join(events)
    return BANNER + block * (megabytes * 1_000_000 // len(block))


def long_message(chars: int) -> bytes:
    return BANNER + b"Event: VarSet\r\nVariable: X\r\nValue: " + b"x" * chars + b"\r\n\r\nEvent: Y\r\n\r\n"


def parse(factory: Callable[[], AMIProtocol], data: bytes, read: int) -> tuple[float, int]:
    protocol = factory()
    protocol.connection_made(_Transport())
    counter = protocol.factory = _Count()
    protocol.encoding = "utf8"
    started = time.perf_counter()
    for start in range(0, len(data), read):
        protocol.data_received(data[start : start + read])
    return time.perf_counter() - started, counter.events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases = [
        ("flood 20 MB, 64 KiB reads", flood(20), 65536),
        ("100 kB message, 100-byte reads", long_message(100_000), 100),
        ("100 kB message, 1-byte reads", long_message(100_000), 1),
    ]
    parsers: list[tuple[str, Callable[[], AMIProtocol]]] = [
        ("panoramisk AMIProtocol", AMIProtocol),
        ("callrouter Utf8AmiProtocol", Utf8AmiProtocol),
    ]
    for name, data, read in cases:
        for round_no in range(1, args.rounds + 1):
            figures = []
            for label, factory in parsers:
                seconds, events = parse(factory, data, read)
                figures.append(f"{label} {seconds:.3f} s ({events} events)")
            print(f"{name}, round {round_no}: " + " | ".join(figures))


if __name__ == "__main__":
    main()
