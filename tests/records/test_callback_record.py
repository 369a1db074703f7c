"""A queued callback in the original call's contact record: the dialler's request goes the way
of an adviser's late disposition (``records.dispositions``), so the controller that holds the
call makes the next version through its builder, or the archive does; schema-valid, once."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from redis.asyncio import Redis

from records.builder import RecordBuilder
from records.callback import callback_json, with_callback
from records.dispositions import Request, read_status
from records.dispositions import callback_request as dispositions_callback_request
from records.facts import CallbackReported
from records.model import ContactRecord, json_schema
from routing.callbacks import parse_callback
from tests.records.factory import record
from tests.records.support import CENTRE, checked
from tests.records.test_appender import keys
from tests.records.test_dispositions import CALL, applier, archived, ask, controller, versions
from tests.records.test_outbox import T0, Clock, arrive, hang_up
from tests.support.redis_server import RedisServer

ATTEMPTS = [(T0 + 600, T0 + 640, "no-answer", "Adviser 1"), (T0 + 940, T0 + 1300, "answered", "Adviser 2")]
DONE = callback_json(ATTEMPTS, "answered")


def callback_request(call: str, at: float, body: str = DONE) -> Request:
    return Request(
        f"callback-{uuid.uuid4().hex[:8]}", "harborough", call, None, None, None, "dialler", at, callback=body
    )


def test_the_callback_sub_object_is_schema_valid_and_old_records_stay_valid() -> None:
    latest = record(CALL, datetime.fromtimestamp(T0, UTC))
    old = json.loads(latest.model_dump_json())
    del old["callback"]  # a record made before callbacks
    validator = jsonschema.Draft202012Validator(json_schema())
    validator.validate(old)
    made = with_callback(latest, DONE, datetime.fromtimestamp(T0 + 1300, UTC))
    assert made is not None
    validator.validate(json.loads(made.model_dump_json()))
    assert made.version == latest.version + 1
    assert made.callback is not None
    assert [(a.outcome, a.adviser) for a in made.callback.attempts] == [
        ("no-answer", "Adviser 1"),
        ("answered", "Adviser 2"),
    ]
    assert (made.callback.offered, made.callback.accepted, made.callback.outcome) == (True, True, "answered")
    assert with_callback(made, DONE, datetime.fromtimestamp(T0 + 1400, UTC)) is None  # holds it already


@pytest.mark.parametrize(
    "body",
    ['{"attempts": [], "outcome": "maybe"}', '{"extra": 1}', "not json"],
)
def test_a_malformed_callback_is_refused(body: str) -> None:
    builder = RecordBuilder(CENTRE, b"k" * 32)
    with pytest.raises(ValueError, match="CallbackReported"):
        builder.feed_ivr(CallbackReported(CALL, T0, body))


async def test_the_controller_holding_the_call_puts_the_callback_in_its_next_version(
    redis_server: RedisServer,
) -> None:
    k, clock = keys(), Clock()
    async with Redis.from_url(redis_server.url) as redis:
        pump, sink, _ = controller(redis, k, "ctl-a", clock, holding=True)
        arrive(pump, CALL, T0)
        hang_up(pump, CALL, T0 + 5)  # the caller took the callback and hung up
        clock.now = T0 + 5.6
        assert await pump.flush_due() == 1  # version 1: no callback yet
        request = callback_request(CALL, T0 + 20)
        await ask(redis, k, request)
        clock.now = T0 + 20.2
        await pump.flush_due()  # read and applied
        clock.now = T0 + 21
        assert await pump.flush_due() == 1
        found = await versions(redis, k)
        assert [v for v, _ in found] == [1, 2]
        assert found[0][1]["callback"] is None
        held = found[1][1]["callback"]
        assert isinstance(held, dict)
        assert (held["outcome"], [a["outcome"] for a in held["attempts"]]) == (
            "answered",
            ["no-answer", "answered"],
        )
        status = await read_status(redis, CENTRE, request.request_id, k)
        assert status is not None
        assert (status.state, status.version, status.changed) == ("applied", 2, True)
        assert sink.already_in == 0
        for _, payload in found:
            checked(ContactRecord.model_validate_json(json.dumps(payload)))


async def test_a_call_no_controller_holds_gets_the_callback_from_the_archive(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    k, clock = keys(), Clock()
    old = "1795400000.7"
    async with Redis.from_url(redis_server.url) as redis:
        archive = archived(tmp_path / "archive", old, datetime.fromtimestamp(1795400000, UTC))
        pump, _, inbox = controller(redis, k, "ctl-a", clock, holding=True)
        await ask(redis, k, callback_request(old, T0 + 1))
        await pump.flush_due()
        assert inbox.handed == 1
        assert await applier(redis, k, archive, clock).round() == 1
        [(version, payload)] = await versions(redis, k, old)
        assert version == 2
        held = payload["callback"]
        assert isinstance(held, dict)
        assert held["outcome"] == "answered"


@pytest.mark.parametrize(
    ("call_id", "names_a_record"),
    [
        (CALL, True),
        ("9" * 19 + ".1", True),
        ("9" * 20 + ".1", False),
        (CALL + "\n", False),  # the old pattern's '$' let this in
        ("cb-leg", False),
    ],
)
def test_a_callback_names_a_record_by_a_linkedid_within_bounds(call_id: str, names_a_record: bool) -> None:
    """``routing.core.linkedid``: the same shape and bounds as the web service and the hop header."""
    stored = parse_callback(
        "cb-0",
        {"tenant": "harborough", "queue": "council-tax", "number": "+441632960123", "joined_at": str(T0),
         "requested_at": str(T0 + 60), "call_id": call_id, "language": "en", "state": "done"},
    )  # fmt: skip
    assert stored is not None
    request = dispositions_callback_request(stored, "answered", by="dialler", at=T0 + 600)
    assert (request is not None) is names_a_record
    if request is not None:
        assert request.record_id == call_id
