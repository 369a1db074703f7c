"""Benchmark: the contact-record builder, AMI events in, records out, on one core.

Run: ``.venv/bin/python -m benchmarks.records_bench [--calls N]`` (needs the Asterisk
transcripts in ``shared/asterisk`` beside the repository). Every call replays the AMI events
of the recorded answered queue call (``ami_queue_answered_call.txt``, all of its events,
including the ones the builder ignores) under its own Linkedid, with IVR facts for the
arrival, a menu, a key and the decision; then ``due()`` hands out the records.

Side by side in the same run, a baseline does what any record builder must do at least:
file each event under its Linkedid (here: the last time of each kind of event) and serialise
one JSON document per call.

A second figure: the cost of one ``due()`` call while the builder keeps an hour of finished
calls for late dispositions (``keep_s``), e.g. 180,000 at 50 calls/s.
"""

from __future__ import annotations

import argparse
import json
import time

from records.builder import RecordBuilder
from records.facts import CallArrived, KeyPressed, MenuEntered, RouteDecided
from tests.records.support import ami_events, epoch_of

KEY = b"benchmark caller hash key 32 b.."
SOURCE = "ami_queue_answered_call.txt"
Calls = list[tuple[str, float, list[tuple[float, dict[str, str]]]]]


def call_events(count: int) -> Calls:
    """``count`` copies of the recorded call, each under its own Linkedid, with receive times."""
    events = [e for e in ami_events(SOURCE) if e.headers.get("Linkedid")]
    epoch = epoch_of(events)
    original = events[0].headers["Linkedid"]
    calls = []
    for n in range(count):
        linkedid = f"{1_800_000_000 + n}.{n}"
        start = epoch + n * 0.02  # 50 calls/s
        copies = []
        for event in events:
            headers = dict(event.headers)
            headers["Linkedid"] = linkedid
            if headers.get("Uniqueid") == original:
                headers["Uniqueid"] = linkedid
            elif "Uniqueid" in headers:
                headers["Uniqueid"] = f"{linkedid}1"
            copies.append((start + event.seconds, headers))
        calls.append((linkedid, start, copies))
    return calls


def run_builder(calls: Calls) -> tuple[float, int, int]:
    builder = RecordBuilder("charnwood", KEY, grace_s=2.0, keep_s=0.0)
    emitted = 0
    fed = 0
    began = time.perf_counter()
    for linkedid, start, events in calls:
        builder.feed_ivr(CallArrived(linkedid, start, "+441632960001", "01632960123", "harborough"))
        builder.feed_ivr(MenuEntered(linkedid, start + 0.1, "main"))
        builder.feed_ivr(KeyPressed(linkedid, start + 0.2, "main", "1"))
        builder.feed_ivr(RouteDecided(linkedid, start + 0.3, "open", "queue revenues", ("open",)))
        for at, headers in events:
            builder.feed_ami(headers, at)
            fed += 1
        if int(start * 50) % 50 == 0:  # due() once a second of call time
            emitted += sum(len(r.model_dump_json()) > 0 for r in builder.due(start))
    emitted += sum(len(r.model_dump_json()) > 0 for r in builder.due(calls[-1][1] + 3600))
    return time.perf_counter() - began, fed, emitted


def run_baseline(calls: Calls) -> tuple[float, int, int]:
    """A lean fold: per Linkedid, when each kind of event last came; one JSON document per call."""
    grouped: dict[str, dict[str, float]] = {}
    emitted = 0
    fed = 0
    began = time.perf_counter()
    for linkedid, _start, events in calls:
        for at, headers in events:
            grouped.setdefault(headers["Linkedid"], {})[headers["Event"]] = at
            fed += 1
        emitted += len(json.dumps({"id": linkedid, "seen": grouped.pop(linkedid)})) > 0
    return time.perf_counter() - began, fed, emitted


def due_scan(kept: int) -> float:
    """Seconds for one due() while ``kept`` finished calls wait for late changes."""
    builder = RecordBuilder("charnwood", KEY, grace_s=2.0, keep_s=3600.0)
    for n in range(kept):
        call_id = f"{n}.{n}"
        builder.feed_ivr(CallArrived(call_id, 0.0, "+441632960001", "01632960123", "harborough"))
        builder.feed_ami({"Event": "Hangup", "Channel": "x", "Uniqueid": call_id, "Linkedid": call_id}, 1.0)
    builder.due(10.0)  # the first versions go out
    began = time.perf_counter()
    builder.due(11.0)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--kept", type=int, default=180_000)
    args = parser.parse_args()
    calls = call_events(args.calls)
    per_call = len(calls[0][2])
    print(f"{args.calls:,} calls x {per_call} AMI events each ({SOURCE})")
    print("| fold | calls/s | AMI events/s | us per call |")
    print("|---|---:|---:|---:|")
    for name, run in (
        ("baseline: last time of each event kind + json.dumps", run_baseline),
        ("RecordBuilder", run_builder),
    ):
        seconds, fed, emitted = run(calls)
        assert emitted == args.calls, (name, emitted)
        print(f"| {name} | {emitted / seconds:,.0f} | {fed / seconds:,.0f} | {seconds / emitted * 1e6:.1f} |")
    print(f"due() with {args.kept:,} finished calls kept: {due_scan(args.kept) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
