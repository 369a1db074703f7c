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

A third: what holding those 180,000 finished calls costs the garbage collector. The same calls
are folded twice, all of them kept, into the builder as it is (finished calls kept as one
``bytes`` each, :class:`~records.builder.FinishedCalls`) and into one that keeps them as the
builder did before, the call's objects with its last record (:class:`ObjectsKept`), each in a
fresh process; for each: the fold's cost per call, the objects the collector tracks, the time
of a full ``gc.collect()``, and the process's resident memory growth (approximate: it includes
the high-water mark of the 100 calls' events made at a time). The process before the builder
is the floor. Run ``--kept 0`` to skip it.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Iterator

from records.builder import FinishedCalls, RecordBuilder, _Call
from records.facts import CallArrived, KeyPressed, MenuEntered, RouteDecided
from tests.records.support import ami_events, epoch_of

KEY = b"benchmark caller hash key 32 b.."
SOURCE = "ami_queue_answered_call.txt"
Calls = list[tuple[str, float, list[tuple[float, dict[str, str]]]]]


def call_events(count: int, first: int = 0) -> Calls:
    """``count`` copies of the recorded call, each under its own Linkedid, with receive times."""
    events = [e for e in ami_events(SOURCE) if e.headers.get("Linkedid")]
    epoch = epoch_of(events)
    original = events[0].headers["Linkedid"]
    calls = []
    for n in range(first, first + count):
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


def fold(builder: RecordBuilder, calls: Calls) -> tuple[int, int]:
    """Feed ``calls`` (IVR facts and every AMI event) with ``due()`` once a second of call time;
    returns the events fed and the records emitted (each serialised to JSON, as a sink would)."""
    emitted = 0
    fed = 0
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
    return fed, emitted


def run_builder(calls: Calls) -> tuple[float, int, int]:
    builder = RecordBuilder("charnwood", KEY, grace_s=2.0, keep_s=0.0)
    began = time.perf_counter()
    fed, emitted = fold(builder, calls)
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


class ObjectsKept(FinishedCalls):
    """The baseline: finished calls kept as the builder kept them before, each call's objects
    in full with the last record it handed out."""

    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[str, tuple[float, _Call]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def put(self, call: _Call, until: float) -> None:
        self._calls[call.id] = (until, call)

    def take(self, call_id: str) -> _Call | None:
        kept = self._calls.pop(call_id, None)
        return None if kept is None else kept[1]

    def peek(self, call_id: str) -> _Call | None:
        kept = self._calls.get(call_id)
        return None if kept is None else kept[1]

    def expire(self, call_id: str, now: float) -> None:
        kept = self._calls.get(call_id)
        if kept is not None and kept[0] <= now:
            del self._calls[call_id]

    def clear(self) -> None:
        self._calls.clear()


class BuilderKeepingObjects(RecordBuilder):
    def __init__(self, centre: str, caller_hash_key: bytes, *, grace_s: float, keep_s: float) -> None:
        super().__init__(centre, caller_hash_key, grace_s=grace_s, keep_s=keep_s)
        self._finished = ObjectsKept()


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def collections(rounds: int = 5) -> tuple[int, float]:
    """Objects the collector tracks, and the median time of a full collection (seconds)."""
    gc.collect()
    tracked = len(gc.get_objects())
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - began)
    return tracked, statistics.median(times)


def chunks(count: int, size: int = 100) -> Iterator[Calls]:
    for first in range(0, count, size):
        yield call_events(min(size, count - first), first)


KEPT_AS: dict[str, type[RecordBuilder]] = {
    "one bytes each (FinishedCalls)": RecordBuilder,
    "objects, with the last record (before)": BuilderKeepingObjects,
}


def hold(kept_as: str, kept: int) -> tuple[int, float, float, int, float, int]:
    """Fold ``kept`` calls into a builder (``KEPT_AS[kept_as]``) that keeps them all; with all of
    them finished and kept: tracked objects and a full collection of the process before the
    builder, the fold's microseconds per call, tracked objects, full collection, memory growth.
    Run in a process of its own, so that neither variant inherits the other's memory."""
    floor_tracked, floor_collection = collections()
    resident = resident_bytes()
    kind = KEPT_AS[kept_as]
    # kept two hours: the first calls are still there when the last ends (an hour at 50 calls/s)
    builder = kind("charnwood", KEY, grace_s=2.0, keep_s=7200.0)
    seconds = 0.0
    emitted = 0
    last = 0.0
    for calls in chunks(kept):  # made outside the timing (77 header dicts a call), 100 at a time
        began = time.perf_counter()
        emitted += fold(builder, calls)[1]
        seconds += time.perf_counter() - began
        last = calls[-1][1]
        del calls  # only the builder holds anything of them now
    emitted += len(builder.due(last + 60))
    assert emitted == kept == len(builder), (kind.__name__, emitted, len(builder))
    tracked, collection = collections()
    grown = resident_bytes() - resident
    return floor_tracked, floor_collection, seconds / kept * 1e6, tracked, collection, grown


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
    if not args.kept:
        return
    del calls
    print()
    print(f"{args.kept:,} finished calls kept, then gc.collect() (median of 5), each in a fresh process")
    print("| finished calls kept as | fold us per call | tracked objects | full collection ms | memory MB |")
    print("|---|---:|---:|---:|---:|")
    spawn = multiprocessing.get_context("spawn")
    for kept_as in KEPT_AS:
        with spawn.Pool(1) as pool:
            floor, floor_s, fold_us, tracked, collection, grown = pool.apply(hold, (kept_as, args.kept))
        if kept_as == next(iter(KEPT_AS)):
            print(f"| (nothing: the process before the builder) | | {floor:,} | {floor_s * 1000:.1f} | |")
        print(f"| {kept_as} | {fold_us:.1f} | {tracked:,} | {collection * 1000:.1f} | {grown / 2**20:,.0f} |")


if __name__ == "__main__":
    main()
