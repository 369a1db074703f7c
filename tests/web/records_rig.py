"""The records API under test: an archive of records made by the records tests' factory, the
example plan, and the real app on the web tests' Redis with the records source set."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from records.archive import Archive
from records.model import ContactRecord
from routing.core.plan import Plan
from routing.plan_file import load_plan
from routing.redis_keys import KEYS
from routing.supervisor import audit_tail
from tests.records.factory import record
from tests.records.support import KEY
from tests.support.web import web_test_app
from web.context import Clock
from web.records import FALLBACK, RECORDS, FallbackTiming, RecordsSource

EXAMPLE_PLAN = Path(__file__).parents[2] / "examples" / "plan.yaml"
DAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday (local time = UTC in November)
CALLER = "01632960123"
OTHER_CALLER = "01632960999"


def example_plan() -> Plan:
    loaded = load_plan(EXAMPLE_PLAN)
    assert loaded.plan is not None, loaded.problems
    return loaded.plan


def call_id(arrived: datetime, n: int) -> str:
    """A Linkedid as Asterisk makes it: the channel's creation time, then a sequence number."""
    return f"{int(arrived.timestamp())}.{n}"


def answered(arrived: datetime, wait_s: float = 12.0) -> dict[str, Any]:
    """The fields of a call answered in the harborough revenues queue after ``wait_s``."""
    joined = arrived + timedelta(seconds=20)
    at = joined + timedelta(seconds=wait_s)
    return {
        "queues": [{"queue": "hdc-revenues", "joined_at": joined.isoformat(), "left_at": at.isoformat(),
                    "position": 1, "wait_s": wait_s, "unanswered_rings": 0, "outcome": "answered"}],
        "answered": {"at": at.isoformat(), "queue": "hdc-revenues",
                     "by": {"centre": "charnwood", "id": "PJSIP/agent1", "name": None}},
        "talk_s": 180.0,
    }  # fmt: skip


def abandoned(arrived: datetime, wait_s: float = 40.0) -> dict[str, Any]:
    joined = arrived + timedelta(seconds=20)
    left = joined + timedelta(seconds=wait_s)
    return {
        "queues": [{"queue": "hdc-revenues", "joined_at": joined.isoformat(), "left_at": left.isoformat(),
                    "position": 3, "wait_s": wait_s, "unanswered_rings": 0, "outcome": "abandoned"}],
    }  # fmt: skip


def resolved(at: datetime) -> dict[str, Any]:
    return {"disposition": {"kind": "resolved", "team": None, "reason": None, "by": "PJSIP/agent1",
                            "at": at.isoformat()}}  # fmt: skip


def sample_records(day: datetime = DAY) -> list[ContactRecord]:
    """Six harborough calls over the day (two of them from CALLER) and two charnwood calls."""
    made = []
    for n, (hour, caller, fields) in enumerate(
        [
            (9, CALLER, {**answered(day + timedelta(hours=9)), **resolved(day + timedelta(hours=9, minutes=5))}),  # noqa: E501
            (9, OTHER_CALLER, abandoned(day + timedelta(hours=9, minutes=30))),
            (10, OTHER_CALLER, answered(day + timedelta(hours=10), wait_s=45.0)),
            (11, None, {"ivr": {"menus": [], "invalid": 0, "timeouts": 0, "announcements": [],
                                "abandoned": True, "abandoned_in": "main"}}),
            (14, CALLER, {**answered(day + timedelta(hours=14)), "survey": 1}),
            (16, OTHER_CALLER, answered(day + timedelta(hours=16))),
        ]
    ):  # fmt: skip
        arrived = day + timedelta(hours=hour, minutes=30 if n == 1 else 0)
        made.append(record(call_id(arrived, n + 1), arrived, caller=caller, **fields))
    for n, hour in enumerate((10, 12)):
        arrived = day + timedelta(hours=hour, minutes=7)
        made.append(record(call_id(arrived, 100 + n), arrived, tenant="charnwood", caller=CALLER))
    return made


def records_app(redis: Redis, root: Path, records: Sequence[ContactRecord], clock: Clock) -> web.Application:
    archive = Archive(root)
    archive.append_many(records)
    plan = example_plan()

    async def plan_source() -> Plan:
        return plan

    app = web_test_app(redis, clock=clock)
    app[RECORDS] = RecordsSource(Archive(root), KEY, plan_source)
    # the archive consumer of dispositions: often, and at once when no controller reads them
    app[FALLBACK] = FallbackTiming(every_s=0.05, stuck_s=0.0)
    return app


async def settled(
    client: Any, headers: dict[str, str], location: str, timeout_s: float = 10
) -> dict[str, Any]:
    """A disposition request's status once it is no longer pending."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await client.get(location, headers=headers)
        assert answer.status == 200, await answer.text()
        status: dict[str, Any] = await answer.json()
        if status["status"] != "pending":
            return status
        assert time.monotonic() < deadline, f"still pending: {status}"
        await asyncio.sleep(0.05)


async def audit_entries(redis: Redis) -> list[dict[str, Any]]:
    """The audit stream's entries, newest first, as stored."""
    return await audit_tail(redis, count=50)


async def raw_audit(redis: Redis) -> str:
    """Every byte of the audit stream, for "the number is not in it"."""
    rows = await redis.xrange(KEYS.audit_stream())
    return json.dumps(
        [[k.decode(), {f.decode(): v.decode() for f, v in fields.items()}] for k, fields in rows]
    )
