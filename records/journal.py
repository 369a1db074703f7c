"""The controller's fact journal: what its record builder was fed, on local disk, until the
records it makes are in the records stream.

A controller folds a call's IVR facts and AMI events in memory; its record is appended to the
stream about half a second after the caller hangs up. A controller killed (SIGKILL, a crash)
in that half second, or while the stream is unreachable, would lose those records with its
memory. So :class:`FactJournal` writes every fact and every AMI event the builder takes as
one JSON line to an append-only file (``os.write`` on a descriptor opened ``O_APPEND``, the
lines of one turn of the event loop in one call, at the end of that turn: before the
controller next waits for Asterisk). Once ``write`` returns, the lines are in the kernel's page
cache: they survive the process being killed, however hard. It does **not**
survive the machine losing power or the kernel crashing (no ``fsync``: that would cost a disk
flush per fact on the call path); see ``docs/contact-records.md``.

The journal is a series of *segments* (``journal-<n>.jsonl``, a new one every
:data:`SEGMENT_S`). Each segment knows the calls it has lines of; a segment other than the
current one is deleted once none of its calls is *pending* (held by the builder, or by the
pump until the stream takes its record): what it covers is in the stream, or was emitted by
another controller. The first line of each segment names the controller instance that wrote
it (its claims on calls are taken over on replay).

On start, ``serve`` reads every segment left (:func:`read_journal`), feeds the lines to a
fresh builder, and the pump appends the records due: the stream takes each (id, version)
once, so a record the killed controller had appended already is not appended again.

The lines hold complete caller numbers (as the AMI events and facts do): files are 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, get_args

from records import facts as rf

log = logging.getLogger("records.journal")

SEGMENT_S = 10.0
"""A new segment this often (the old ones go once their calls are in the stream)."""

_FACTS: dict[str, type[Any]] = {cls.__name__: cls for cls in get_args(rf.IvrFact)}
_VALUES = {cls: attrgetter(*(f.name for f in dataclasses.fields(cls))) for cls in _FACTS.values()}
_TUPLES = {
    cls.__name__: frozenset(i for i, f in enumerate(dataclasses.fields(cls)) if f.name == "reasons")
    for cls in _FACTS.values()
}  # fields that are tuples (JSON gives lists)
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def fact_line(fact: rf.IvrFact) -> list[Any]:
    """A fact as a JSON-ready list: its type's name, then its fields in order. Positional, not
    ``dataclasses.asdict``: 5 us a fact instead of 28 (benchmarks/route_bench.py)."""
    return [type(fact).__name__, *_VALUES[type(fact)](fact)]


def fact_of(line: Any) -> rf.IvrFact:
    """The fact of :func:`fact_line` (ValueError for one that is not)."""
    if not isinstance(line, list) or not line:
        raise ValueError(f"not a fact: {str(line)[:100]}")
    name, values = str(line[0]), line[1:]
    cls = _FACTS.get(name)
    if cls is None:
        raise ValueError(f"not a fact: {name[:40]}")
    tuples = _TUPLES[name]
    try:
        fact: rf.IvrFact = cls(*(tuple(v) if i in tuples else v for i, v in enumerate(values)))
    except TypeError as exc:
        raise ValueError(f"not a fact: {exc}") from exc
    return fact


@dataclass
class Replayed:
    """What :func:`read_journal` found: the entries in order, and who wrote them."""

    facts: list[rf.IvrFact | tuple[dict[str, str], float]] = field(default_factory=list)
    instances: set[str] = field(default_factory=set)
    segments: list[Path] = field(default_factory=list)
    bad_lines: int = 0


def segments_in(folder: Path) -> list[Path]:
    """The journal's segments, oldest first."""
    return sorted(folder.glob("journal-*.jsonl"))


def read_journal(folder: Path) -> Replayed:
    """Every entry of the segments in ``folder``, in the order they were written.

    A line cut short (the process killed inside ``write`` cannot do this, a full disk can) or
    not understood is counted and skipped: the rest of the journal is still read."""
    found = Replayed()
    for path in segments_in(folder):
        found.segments.append(path)
        for raw in path.read_bytes().splitlines():
            try:
                line = json.loads(raw)
                if isinstance(line, list):
                    found.facts.append(fact_of(line))
                elif "i" in line:
                    found.instances.add(str(line["i"]))
                elif "e" in line:
                    event = {str(k): str(v) for k, v in dict(line["e"]).items()}
                    found.facts.append((event, float(line["t"])))
                else:
                    raise ValueError("not a journal line")
            except (ValueError, TypeError, KeyError, AttributeError):
                found.bad_lines += 1
    if found.bad_lines:
        log.warning("records.journal_bad_lines lines=%d", found.bad_lines)
    return found


class JournalInUse(RuntimeError):
    """Another live controller holds the journal's folder."""


class FactJournal:
    """Append-only segments of the builder's input (see the module doc). Not thread-safe: the
    controller's event loop writes it."""

    def __init__(
        self,
        folder: str | Path,
        instance: str,
        *,
        segment_s: float = SEGMENT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # one controller per folder: another one's segments would be replayed and deleted here
        # (the kernel releases the lock when the holder dies, however it dies)
        self._lock = os.open(self.folder / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock)
            raise JournalInUse(f"the fact journal {self.folder} is in use by another controller") from exc
        self.instance, self.segment_s, self.clock = instance, segment_s, clock
        existing = segments_in(self.folder)
        self._number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 1
        self._old: dict[Path, set[str]] = {key: set() for key in existing}  # replayed: forgotten below
        self._calls: set[str] = set()
        self._fd = -1
        self._pending: list[str] = []
        self._scheduled = False
        self._path = self.folder / "none"
        self._opened_at = 0.0
        self.written = 0
        self.failed = 0
        self._open()

    def replayed(self, call_ids: Iterable[str]) -> None:
        """The segments that existed at start cover ``call_ids`` (the calls fed from them)."""
        ids = set(call_ids)
        for path in self._old:
            self._old[path] = ids

    # --- in: the call path and the AMI tap (one write each) -------------------------------

    def fact(self, fact: rf.IvrFact) -> None:
        self._add(fact.call_id, _encode(fact_line(fact)))

    def ami(self, call_id: str, event: Mapping[str, str], received_at: float) -> None:
        self._add(call_id, _encode({"e": dict(event), "t": received_at}))

    def _add(self, call_id: str, line: str) -> None:
        """Queue the line; the lines of one turn of the event loop go in one ``write`` at its
        end (a call's route reports 3 to 5 facts in one go). Without a running loop: at once."""
        self._calls.add(call_id)
        self._pending.append(line)
        if self._scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
            self._scheduled = True
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        """Write the queued lines (one ``os.write``: in the page cache when it returns)."""
        self._scheduled = False
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        data = ("\n".join(lines) + "\n").encode()
        try:
            os.write(self._fd, data)  # O_APPEND
        except OSError as exc:  # a full disk: the records are still built, only unprotected
            self.failed += len(lines)
            log.error("records.journal_write_failed %s failed=%d", type(exc).__name__, self.failed)
            return
        self.written += len(lines)

    # --- out: the pump's round -------------------------------------------------------------

    def tidy(self, pending: Callable[[str], bool]) -> int:
        """Start a new segment when the current one is old enough; delete every older segment
        none of whose calls is ``pending`` any more. Returns how many were deleted."""
        if self.clock() - self._opened_at >= self.segment_s and self._calls:
            self.flush()
            self._old[self._path] = self._calls
            self._calls = set()
            os.close(self._fd)
            self._open()
        gone = 0
        for path, calls in list(self._old.items()):
            if any(pending(c) for c in calls):
                continue
            with _quiet():
                path.unlink()
            del self._old[path]
            gone += 1
        return gone

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1
        if self._lock >= 0:
            os.close(self._lock)  # releases the lock
            self._lock = -1

    def remove_all(self) -> None:
        """After a clean shutdown that handed every record over: nothing left to replay."""
        self.close()
        for path in [*self._old, self._path]:
            with _quiet():
                path.unlink()
        self._old.clear()

    @property
    def segments(self) -> int:
        return len(self._old) + 1

    def _open(self) -> None:
        self._path = self.folder / f"journal-{self._number:012d}.jsonl"
        self._number += 1
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._opened_at = self.clock()
        os.write(self._fd, json.dumps({"i": self.instance}).encode() + b"\n")


def _quiet() -> contextlib.suppress:
    """Ignore a file already gone."""
    return contextlib.suppress(FileNotFoundError)
