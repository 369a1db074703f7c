"""The council's own archive of contact records: every version, per tenant per day.

Layout under the archive directory (``docs/reports.md``)::

    <tenant>/<YYYY-MM-DD>.jsonl       records that arrived that UTC day, one version a line
    <tenant>/<YYYY-MM-DD>.jsonl.gz    the same, compressed once the day is older than the archive age
    audit.jsonl                       exports, searches, archiving and purges, when Redis is not at hand

A record goes in the file of the day it *arrived*, so every version of one call lands in one file
and reading a day gives the latest version of each call without looking anywhere else.

- :meth:`Archive.append` is the delivery worker's always-on internal sink: each line is written
  and ``fsync``'d before it returns; the same ``id`` + ``version`` written twice is stored once
  (across processes too: appends hold an exclusive ``flock`` on the day file and first read what
  others appended since).
- A line torn by a crash mid-write is skipped on reading and ended before the next append.
- :meth:`Archive.compress` gzips the days older than the tenant's archive age (a version that
  arrives for such a day later goes to a new ``.jsonl`` beside it and is merged the next time);
  :meth:`Archive.purge` deletes the days older than its retention. Both return what they did, for
  the audit trail.

Time is always passed in.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from records.model import ContactRecord
from routing.core.linkedid import LINKEDID_PATTERN

NO_TENANT = "_no-tenant"
"""The folder of records with no tenant (a number no council owns)."""
AUDIT_FILE = "audit.jsonl"
_TENANT = re.compile(r"^(?:[a-z][a-z0-9_-]{0,62}|_no-tenant)$")
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$")
# How the archive writes a line (pydantic keeps the model's field order): the key is read from
# the line's start. A restarted worker's first append to a day reads the whole day's keys: with a
# full parse of each line that ran at 10,700 records/s in benchmarks/archive_bench.py, with this
# at 74,000 (docs/performance.md). Any other line is parsed in full.
_KEY_PREFIX = re.compile(
    rb'^\{"schema_version":[0-9]+,"id":"(' + LINKEDID_PATTERN.encode("ascii") + rb')","version":([0-9]+),'
)


class ArchiveError(Exception):
    """A request the archive cannot serve (an unknown tenant name, a bad range)."""


def tenant_folder(tenant: str | None) -> str:
    """The folder of ``tenant``'s records; refuses anything that is not a plan name."""
    name = NO_TENANT if tenant is None else tenant
    if not _TENANT.match(name):
        raise ArchiveError(f"'{name}' is not a tenant name (lower case, digits, - and _)")
    return name


def day_of(record: ContactRecord) -> date:
    """The UTC day a record is filed under: the day the call arrived."""
    return record.arrived_at.astimezone(UTC).date()


@dataclass
class _DayIndex:
    inode: int = -1  # the .jsonl read (a compressor replaces it)
    size: int = 0  # bytes of it read into ``seen``
    seen: set[tuple[str, int]] = field(default_factory=set)


@dataclass(frozen=True)
class DayChange:
    """A day file compressed or purged: which, and how many record versions it held."""

    tenant: str
    day: date
    versions: int


class Archive:
    """The archive directory ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._index: dict[Path, _DayIndex] = {}
        self.skipped_lines = 0  # torn or unreadable lines met while reading (see the module doc)

    # --- writing ---------------------------------------------------------------------------

    def append(self, record: ContactRecord) -> bool:
        """Store one record version durably; False if this id + version was stored already."""
        return self.append_many([record]) == 1

    def append_many(self, records: Iterable[ContactRecord]) -> int:
        """Store record versions (one ``fsync`` per day file); returns how many were new."""
        by_file: dict[Path, list[ContactRecord]] = {}
        for record in records:
            by_file.setdefault(self._day_path(record.tenant, day_of(record), gz=False), []).append(record)
        return sum(self._append_file(path, batch) for path, batch in by_file.items())

    def _append_file(self, path: Path, records: list[ContactRecord]) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _locked(path, create=True)
        assert fd is not None
        try:
            index = self._catch_up(path, fd)
            lines: list[bytes] = []
            for record in records:
                key = (record.id, record.version)
                if key in index.seen:
                    continue
                index.seen.add(key)
                lines.append(record.model_dump_json().encode("utf-8") + b"\n")
            if lines:
                if index.size and _last_byte(fd, index.size) != b"\n":
                    lines.insert(0, b"\n")  # end a line torn by a crash, so it stays one bad line
                data = b"".join(lines)
                os.write(fd, data)
                os.fsync(fd)
                index.size += len(data)
            return sum(1 for line in lines if line != b"\n")
        finally:
            os.close(fd)  # releases the lock

    def _catch_up(self, path: Path, fd: int) -> _DayIndex:
        """The ids + versions in the day (its gzip and its .jsonl), reading only what is new."""
        index = self._index.get(path)
        stat = os.fstat(fd)
        if index is None or index.inode != stat.st_ino or stat.st_size < index.size:
            index = self._index[path] = _DayIndex(inode=stat.st_ino)
            gz = path.with_name(path.name + ".gz")
            if gz.exists():
                index.seen.update(self._keys(_gz_lines(gz)))
        if stat.st_size > index.size:
            new = os.pread(fd, stat.st_size - index.size, index.size)
            index.seen.update(self._keys(new.splitlines()))
            index.size = stat.st_size
        return index

    # --- reading ---------------------------------------------------------------------------

    def tenants(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _TENANT.match(p.name))

    def days(self, tenant: str | None) -> list[date]:
        """The days ``tenant`` has records for, oldest first."""
        folder = self.root / tenant_folder(tenant)
        if not folder.is_dir():
            return []
        found = {date.fromisoformat(m[1]) for p in folder.iterdir() if (m := _DAY_FILE.match(p.name))}
        return sorted(found)

    def versions(self, tenant: str | None, day: date) -> Iterator[ContactRecord]:
        """Every stored version of the day's records, each once (the gzip first, then the .jsonl)."""
        seen: set[tuple[str, int]] = set()
        gz = self._day_path(tenant, day, gz=True)
        plain = self._day_path(tenant, day, gz=False)
        sources = ([_gz_lines(gz)] if gz.exists() else []) + ([_plain_lines(plain)] if plain.exists() else [])
        for lines in sources:
            for record in self._read_lines(lines):
                if (record.id, record.version) not in seen:
                    seen.add((record.id, record.version))
                    yield record

    def latest(self, tenant: str | None, day: date) -> list[ContactRecord]:
        """The latest version of each record of the day, by arrival time."""
        latest: dict[str, ContactRecord] = {}
        for record in self.versions(tenant, day):
            held = latest.get(record.id)
            if held is None or record.version > held.version:
                latest[record.id] = record
        return sorted(latest.values(), key=lambda r: (r.arrived_at, r.id))

    def records(self, tenant: str | None, start: datetime, end: datetime) -> Iterator[ContactRecord]:
        """The latest version of each of ``tenant``'s records that arrived in ``[start, end)``,
        day by day (memory: one day's records)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ArchiveError("the range needs time zones")
        if end <= start:
            raise ArchiveError(f"the range ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        # ``end`` is excluded: a range ending at midnight UTC does not read the next day's file
        first, last = start.astimezone(UTC).date(), (end - timedelta(microseconds=1)).astimezone(UTC).date()
        for day in self.days(tenant):
            if first <= day <= last:
                for record in self.latest(tenant, day):
                    if start <= record.arrived_at < end and record.tenant == tenant:
                        yield record

    def _keys(self, lines: Iterable[bytes]) -> Iterator[tuple[str, int]]:
        """The id + version of each line: from the line's start, else by reading the record."""
        for line in lines:
            match = _KEY_PREFIX.match(line)
            if match is not None:
                yield match[1].decode("ascii"), int(match[2])
            else:
                yield from ((r.id, r.version) for r in self._read_lines([line]))

    def _read_lines(self, lines: Iterable[bytes]) -> Iterator[ContactRecord]:
        for line in lines:
            if not line.strip():
                continue
            try:
                yield ContactRecord.model_validate_json(line)
            except ValidationError:
                self.skipped_lines += 1

    # --- archive age and retention -----------------------------------------------------------

    def compress(self, tenant: str | None, today: date, archive_after_days: int) -> list[DayChange]:
        """Gzip every day of ``tenant`` older than ``archive_after_days`` (merging a late .jsonl
        into the day's gzip); the .jsonl goes only once the gzip is on disk."""
        cutoff = today - timedelta(days=archive_after_days)
        changes = []
        for day in self.days(tenant):
            plain = self._day_path(tenant, day, gz=False)
            if day >= cutoff or not plain.exists():
                continue
            fd = _locked(plain, create=False)  # appenders wait, then write to a new .jsonl
            if fd is None:
                continue
            try:
                changes.append(self._compress_day(tenant, day, plain))
            finally:
                os.close(fd)
        return changes

    def _compress_day(self, tenant: str | None, day: date, plain: Path) -> DayChange:
        gz = self._day_path(tenant, day, gz=True)
        versions = list(self.versions(tenant, day))
        tmp = gz.with_name(gz.name + ".tmp")
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as packed:
                for record in versions:
                    packed.write(record.model_dump_json().encode("utf-8") + b"\n")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, gz)
        plain.unlink()
        _fsync_dir(gz.parent)
        self._index.pop(plain, None)
        return DayChange(tenant_folder(tenant), day, len(versions))

    def purge(self, tenant: str | None, today: date, retention_days: int) -> list[DayChange]:
        """Delete every day of ``tenant`` older than ``retention_days``."""
        cutoff = today - timedelta(days=retention_days)
        changes = []
        for day in self.days(tenant):
            if day >= cutoff:
                continue
            count = sum(1 for _ in self.versions(tenant, day))
            for gz in (True, False):
                path = self._day_path(tenant, day, gz=gz)
                path.unlink(missing_ok=True)
                self._index.pop(path, None)
            changes.append(DayChange(tenant_folder(tenant), day, count))
        if changes:
            _fsync_dir(self.root / tenant_folder(tenant))
        return changes

    def _day_path(self, tenant: str | None, day: date, *, gz: bool) -> Path:
        return self.root / tenant_folder(tenant) / f"{day.isoformat()}.jsonl{'.gz' if gz else ''}"


def _locked(path: Path, *, create: bool) -> int | None:
    """An fd of ``path`` holding its exclusive lock, and still the file at ``path`` (a compressor
    may have replaced it while we waited); None if it does not exist and ``create`` is false."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0), 0o640)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            if not create:
                os.close(fd)
                return None
        os.close(fd)


def _last_byte(fd: int, size: int) -> bytes:
    return os.pread(fd, 1, size - 1)


def _plain_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from handle


def _gz_lines(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as handle:
        yield from handle


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
