"""The council's data out of the archive: export (JSON Lines or CSV) and the subject access search.

- An export holds the latest version of each record, complete, caller number included: it is
  the owner's copy of its own data (``docs/reports.md``).
- The CSV has one row per record with the flat columns of :data:`CSV_COLUMNS` (lists joined
  with ``|``); a text value a spreadsheet would run as a formula is written with a leading ``'``.
- :func:`find` compares each record's keyed caller hash with the hash of the number asked for:
  the search needs the deployment's key, not any stored number.

Every export and search is audited by the caller of these functions (``callrouter records``):
:func:`audit_entry_for` gives the entry; :class:`FileAudit` keeps it when there is no Redis.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from records.archive import AUDIT_FILE, Archive
from records.builder import caller_hash
from records.kpi import NO_QUEUE, callback_queue, callback_requested_at, time_to_callback
from records.model import Callback, ContactRecord
from routing.core.callback_order import CALLER_DIALLED
from routing.supervisor import audit_entry

Getter = Callable[[ContactRecord], Any]


def _join(values: Iterable[Any]) -> str:
    return "|".join(str(v) for v in values)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _heard(prompt: str, skipped: bool) -> str:
    return prompt + (" (skipped)" if skipped else "")


def _total_wait(record: ContactRecord) -> float | None:
    waits = [v.wait_s for v in record.queues if v.wait_s is not None]
    return round(sum(waits), 3) if waits else None


def _callback(record: ContactRecord, get: Callable[[Callback], Any]) -> Any:
    return None if record.callback is None else get(record.callback)


def _callback_queue(record: ContactRecord) -> str | None:
    """The queue the callback was offered in, as the report groups it (``records.kpi``)."""
    if record.callback is None:
        return None
    queue = callback_queue(record)
    return None if queue == NO_QUEUE else queue


def _callback_requested_at(record: ContactRecord) -> str | None:
    """When the caller took it (as the report measures the time to the call back from)."""
    taken = record.callback is not None and record.callback.accepted
    return _time(callback_requested_at(record)) if taken else None


def _calls_to_caller(cb: Callback) -> int:
    """The attempts that rang the caller's phone (not ``no-adviser``, nor ``interrupted``)."""
    return sum(a.outcome in CALLER_DIALLED for a in cb.attempts)


def _callback_outcome(cb: Callback) -> str | None:
    """How it ended; ``pending`` for one taken and not ended yet (the report's pending)."""
    return cb.outcome if cb.outcome is not None or not cb.accepted else "pending"


def _callback_adviser(cb: Callback) -> str | None:
    """The adviser of the attempt that reached the caller (the last to have an adviser)."""
    advisers = [a.adviser for a in cb.attempts if a.adviser]
    return advisers[-1] if advisers else None


def _time_to_callback(record: ContactRecord) -> float | None:
    waited = time_to_callback(record)
    return None if waited is None else round(waited, 3)


CSV_COLUMNS: tuple[tuple[str, Getter], ...] = (
    ("id", lambda r: r.id),
    ("version", lambda r: r.version),
    ("updated_at", lambda r: _time(r.updated_at)),
    ("complete", lambda r: r.complete),
    ("tenant", lambda r: r.tenant),
    ("dialled", lambda r: r.dialled),
    ("arrived_at", lambda r: _time(r.arrived_at)),
    ("centre", lambda r: r.centre),
    ("caller_number", lambda r: r.caller.number),
    ("caller_hash", lambda r: r.caller.hash),
    ("caller_withheld", lambda r: r.caller.withheld),
    ("ivr_menus", lambda r: _join(m.menu for m in r.ivr.menus)),
    ("ivr_keys", lambda r: _join("".join(m.keys) for m in r.ivr.menus)),
    ("ivr_invalid", lambda r: r.ivr.invalid),
    ("ivr_timeouts", lambda r: r.ivr.timeouts),
    ("ivr_announcements", lambda r: _join(_heard(a.prompt, a.skipped) for a in r.ivr.announcements)),
    ("ivr_abandoned", lambda r: r.ivr.abandoned),
    ("ivr_abandoned_in", lambda r: r.ivr.abandoned_in),
    ("language", lambda r: r.language.code if r.language else None),
    ("language_how", lambda r: r.language.how if r.language else None),
    ("decisions", lambda r: _join(d.kind for d in r.decisions)),
    ("destination", lambda r: r.decisions[-1].destination if r.decisions else None),
    ("decision_reasons", lambda r: _join(reason for d in r.decisions for reason in d.reasons)),
    ("queues", lambda r: _join(v.queue for v in r.queues)),
    ("queue_outcomes", lambda r: _join(v.outcome for v in r.queues)),
    ("wait_s", _total_wait),
    ("answered_at", lambda r: _time(r.answered.at) if r.answered else None),
    ("answered_centre", lambda r: r.answered.by.centre if r.answered else None),
    ("adviser", lambda r: r.answered.by.id if r.answered else None),
    ("talk_s", lambda r: r.talk_s),
    ("hold_s", lambda r: r.hold_s),
    ("transfers", lambda r: _join(f"{t.kind}:{t.to}:{t.result}" for t in r.transfers)),
    ("hops", lambda r: _join(f"{h.centre}:{'answered' if h.answered else 'not answered'}" for h in r.hops)),
    ("hop_from", lambda r: r.hop_from.centre if r.hop_from else None),
    ("hangup_at", lambda r: _time(r.hangup.at) if r.hangup else None),
    ("hangup_by", lambda r: r.hangup.by if r.hangup else None),
    ("hangup_cause", lambda r: r.hangup.cause if r.hangup else None),
    ("payment_line", lambda r: r.payment.line if r.payment else None),
    ("payment_reference_captured", lambda r: r.payment.reference_captured if r.payment else None),
    ("payment_handed_off", lambda r: r.payment.handed_off if r.payment else None),
    ("survey", lambda r: r.survey),
    ("disposition", lambda r: r.disposition.kind if r.disposition else None),
    ("disposition_team", lambda r: r.disposition.team if r.disposition else None),
    ("disposition_reason", lambda r: r.disposition.reason if r.disposition else None),
    ("disposition_by", lambda r: r.disposition.by if r.disposition else None),
    ("disposition_at", lambda r: _time(r.disposition.at) if r.disposition else None),
    ("callback_offered", lambda r: _callback(r, lambda cb: cb.offered)),
    ("callback_taken", lambda r: _callback(r, lambda cb: cb.accepted)),
    ("callback_queue", _callback_queue),
    ("callback_number_kind", lambda r: _callback(r, lambda cb: cb.number_kind)),
    ("callback_requested_at", _callback_requested_at),
    ("callback_attempts", lambda r: _callback(r, lambda cb: len(cb.attempts))),
    ("callback_calls_to_caller", lambda r: _callback(r, _calls_to_caller)),
    ("callback_attempt_outcomes", lambda r: _callback(r, lambda cb: _join(a.outcome for a in cb.attempts))),
    ("callback_outcome", lambda r: _callback(r, _callback_outcome)),
    ("callback_adviser", lambda r: _callback(r, _callback_adviser)),
    ("time_to_callback_s", _time_to_callback),
    ("problems", lambda r: _join(r.problems)),
)  # fmt: skip
CSV_HEADER = [name for name, _ in CSV_COLUMNS]
_FORMULA_START = ("=", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A value as CSV text: ``null`` empty, booleans ``true``/``false``, and text that a
    spreadsheet would take as a formula (``=``, ``@``, or ``+``/``-`` not followed by a digit)
    prefixed with ``'``. A number such as ``+441632960123`` stays as it is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    risky = text.startswith(_FORMULA_START) or (
        text[:1] in ("+", "-") and not (len(text) > 1 and text[1].isdigit())
    )
    return "'" + text if risky and text not in ("+", "-") else text


def csv_row(record: ContactRecord) -> list[str]:
    return [csv_cell(get(record)) for _, get in CSV_COLUMNS]


def write_jsonl(records: Iterable[ContactRecord], out: IO[str]) -> Iterator[ContactRecord]:
    """Write each record as one JSON line; yields each record once written (for progress)."""
    for record in records:
        out.write(record.model_dump_json() + "\n")
        yield record


def write_csv(records: Iterable[ContactRecord], out: IO[str]) -> Iterator[ContactRecord]:
    """Write the header and one row per record; yields each record once written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for record in records:
        writer.writerow(csv_row(record))
        yield record


WRITERS = {"jsonl": write_jsonl, "csv": write_csv}


def find(
    archive: Archive, tenant: str, key: bytes, number: str, days: Iterable[date] | None = None
) -> Iterator[ContactRecord]:
    """The latest version of each of ``tenant``'s records whose caller hash is that of ``number``."""
    wanted = caller_hash(key, number)
    for day in archive.days(tenant) if days is None else days:
        for record in archive.latest(tenant, day):
            if record.caller.hash == wanted and record.tenant == tenant:
                yield record


def audit_entry_for(what: str, by: str, at: datetime, **details: Any) -> str:
    """The audit entry, as the supervisors' audit stream holds them (``routing.supervisor``)."""
    return audit_entry(what, by, at, **details)


class FileAudit:
    """Audit entries appended (and fsync'd) to ``audit.jsonl`` in the archive directory: the trail
    when Redis is not configured or not reachable."""

    def __init__(self, root: Path | str) -> None:
        self.path = Path(root) / AUDIT_FILE

    def append(self, entry: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, entry.encode("utf-8") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> list[str]:
        if not self.path.exists():
            return []
        return self.path.read_text(encoding="utf-8").splitlines()
