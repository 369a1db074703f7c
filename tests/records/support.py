"""Read the raw Asterisk 22.10.1 AMI transcripts and check records against the published schema.

The transcripts are ``shared/asterisk/*.txt`` beside the repository (CI checks them out
there). Each data line is ``<seconds> <S->C|C->S> <python bytes repr>``; ``#`` lines are the
recorder's annotations.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from records.builder import RecordBuilder
from records.model import ContactRecord
from tests.support.captures import captures_dir

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "contact-record.schema.json"
KEY = b"test-only caller hash key, 32 b."
CENTRE = "charnwood"
CALLER = "01632960123"  # the number the transcripts' caller presented
CARD_LIKE = re.compile(r"[0-9]{13,19}")
_DATA = re.compile(r"^\s*(\d+\.\d+) (S->C|C->S) (b.*)$")


def transcripts_dir() -> Path:
    """The Asterisk transcripts (``$CALLROUTER_TRANSCRIPTS`` or ``shared/asterisk`` beside the
    repository): one lookup for every test package."""
    return captures_dir()


@dataclass(frozen=True)
class AmiEvent:
    seconds: float  # since the recorder connected
    headers: dict[str, str]

    @property
    def name(self) -> str:
        return self.headers.get("Event", "")


def ami_events(name: str) -> list[AmiEvent]:
    """Every event Asterisk sent in transcript ``name``, in wire order, as header dicts.

    A repeated header (a UserEvent repeating ``Linkedid``) keeps its first value, as the
    values repeated are the same."""
    events: list[AmiEvent] = []
    lines: list[str] = []
    start = 0.0
    for raw in (transcripts_dir() / name).read_text(encoding="utf-8").splitlines():
        match = _DATA.match(raw)
        if raw.startswith("#") or match is None or match[2] != "S->C":
            continue
        data: bytes = ast.literal_eval(match[3])
        if data == b"\r\n":
            if lines and lines[0].startswith("Event: "):
                headers: dict[str, str] = {}
                for line in lines:
                    key, sep, value = line.partition(": ")
                    if sep:
                        headers.setdefault(key, value)
                events.append(AmiEvent(start, headers))
            lines = []
            continue
        if not lines:
            start = float(match[1])
        lines.append(data.decode("utf-8").removesuffix("\r\n"))
    return events


def epoch_of(events: list[AmiEvent]) -> float:
    """Unix time of the recorder's connect: from a Timestamp header, else from the first Linkedid."""
    for event in events:
        if "Timestamp" in event.headers:
            return float(event.headers["Timestamp"]) - event.seconds
    first = next(e for e in events if e.name == "Newchannel")
    return float(first.headers["Linkedid"].split(".")[0]) - first.seconds


def builder(**kwargs: Any) -> RecordBuilder:
    return RecordBuilder(CENTRE, KEY, **kwargs)


def feed(b: RecordBuilder, events: list[AmiEvent], until: float | None = None) -> float:
    """Feed events (up to ``until`` seconds) as received; returns the epoch used."""
    epoch = epoch_of(events)
    for event in events:
        if until is None or event.seconds <= until:
            b.feed_ami(event.headers, epoch + event.seconds)
    return epoch


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


def checked(record: ContactRecord) -> dict[str, Any]:
    """The record as its JSON, after checking it against the published schema and the model."""
    text = record.model_dump_json()
    document: dict[str, Any] = json.loads(text)
    jsonschema.validate(document, schema(), format_checker=jsonschema.FormatChecker())
    assert ContactRecord.model_validate_json(text) == record
    assert CARD_LIKE.search(text) is None, "a card-like digit run in a record"
    if record.caller.number is not None:
        assert text.count(record.caller.number) == 1, "the caller number outside the caller field"
    return document


def all_due(b: RecordBuilder, now: float) -> list[dict[str, Any]]:
    """Every record due at ``now``, checked, as JSON documents."""
    return [checked(r) for r in b.due(now)]
