"""What the dialler makes of AMI reports, against a real redis-server: a forged outcome (the
UserEvent *action*, which has no channel) ends nothing; a refused Originate is not retried in a
loop; a report seen twice changes the callback once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from ivr.controller import PlanHolder
from ivr.dialler import REFUSED_RETRY_S, Dialler
from records.dispositions import Request
from routing.callbacks import attempts_of, claim, load_callback, request_callback
from routing.core.callback import CallbackRequest
from routing.core.live import LiveState, Toggles
from routing.core.plan import CallbackPolicy
from routing.redis_keys import RedisKeys
from routing.replicas import ReplicaWait
from tests.controller.conftest import EXAMPLE
from tests.support.redis_server import RedisServer

COMPILED = PlanHolder.load(EXAMPLE).current


class Asterisk:
    """The AMI side as the dialler sees it: each action answered with ``reply``, kept."""

    def __init__(self, reply: dict[str, str]) -> None:
        self.reply = reply
        self.sent: list[Mapping[str, str]] = []

    async def __call__(self, action: Mapping[str, str]) -> dict[str, str]:
        self.sent.append(action)
        return self.reply


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def dialler(redis: Redis, keys: RedisKeys, asterisk: Asterisk, *, records: bool = False) -> Dialler:
    async def no_waiting(_queue: str) -> dict[str, float]:
        return {}

    def live(_plan: object, _tenant: str, _now: datetime) -> tuple[LiveState, Toggles]:
        return LiveState(), Toggles()

    return Dialler(
        redis,
        holder="ctl-a",
        is_holder=lambda: True,
        send=asterisk,
        plan=lambda: COMPILED,
        live=live,
        waiting=no_waiting,
        clock=lambda: datetime.now(UTC),
        keys=keys,
        records=records,
    )


async def dialling(redis: Redis, keys: RedisKeys) -> str:
    now = time.time()
    req = CallbackRequest("harborough", "revenues", "+441632960123", now - 300, now, "1795600000.42", "en")
    ident = await request_callback(redis, keys, req, CallbackPolicy(), now, asterisk_queue="hdc-revenues")
    await redis.set(keys.ami_writer_lease(), "ctl-a")
    assert await claim(redis, keys, ident, "ctl-a", now) == 1
    return ident


def outcome(ident: str, status: str, uniqueid: str | None) -> dict[str, str]:
    headers = {"Event": "UserEvent", "UserEvent": "CallbackOutcome", "Callback": ident, "Dial": "1",
               "DialStatus": status, "AnsweredTime": "95" if status == "ANSWER" else ""}  # fmt: skip
    return headers if uniqueid is None else {**headers, "Uniqueid": uniqueid}


async def test_only_the_dials_own_leg_can_report_its_outcome(redis: Redis) -> None:
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    ident = await dialling(redis, keys)
    d = dialler(redis, keys, Asterisk({}))
    await d.handle(outcome(ident, "ANSWER", None))  # the UserEvent action: no channel
    await d.handle(outcome(ident, "ANSWER", "1795600001.7"))  # another channel's
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert stored.state == "dialling"
    for _ in range(2):  # seen by two controllers, or twice
        await d.handle(outcome(ident, "ANSWER", f"{ident}-1-1"))
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.outcome, [a.outcome for a in attempts_of(stored)]) == (
        "done", "answered", ["answered"]
    )  # fmt: skip


async def test_a_refused_originate_is_tried_again_a_minute_later_not_at_once(redis: Redis) -> None:
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    ident = await dialling(redis, keys)
    d = dialler(redis, keys, Asterisk({}))
    before = time.time()
    await d.handle(
        {"Event": "OriginateResponse", "ActionID": f"cb:{ident}:1", "Response": "Failure", "Reason": "0"}
    )
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert stored.state == "pending"
    assert stored.next_at >= before + REFUSED_RETRY_S
    assert stored.attempts == 0  # the caller was not called
    assert [a.outcome for a in attempts_of(stored)] == ["no-adviser"]


async def test_no_adviser_within_the_wait_is_due_again_at_once(redis: Redis) -> None:
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    ident = await dialling(redis, keys)
    d = dialler(redis, keys, Asterisk({}))
    await d.handle(
        {"Event": "OriginateResponse", "ActionID": f"cb:{ident}:1", "Response": "Failure", "Reason": "3"}
    )
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert stored.state == "pending"
    assert stored.next_at <= time.time()


async def test_an_originate_error_reply_ends_the_dial_without_calling(redis: Redis) -> None:
    """Asterisk answers ``Response: Error`` (e.g. ``Channel not specified``): nothing rang."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    now = time.time()
    req = CallbackRequest("harborough", "revenues", "+441632960123", now - 300, now, "1795600000.43", "en")
    ident = await request_callback(redis, keys, req, CallbackPolicy(), now, asterisk_queue="hdc-revenues")
    await redis.set(keys.ami_writer_lease(), "ctl-a")
    asterisk = Asterisk({"Response": "Error", "Message": "Originate failed"})
    d = dialler(redis, keys, asterisk)
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (
        await d._dial(
            stored, COMPILED.plan.tenants["harborough"], CallbackPolicy(), position=1, wait_s=60, now=now
        )
        == 0
    )
    assert asterisk.sent[0]["Action"] == "Originate"
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.attempts) == ("pending", 0)
    assert stored.next_at >= now + REFUSED_RETRY_S


async def test_an_ended_callback_goes_to_its_calls_record_once(redis: Redis) -> None:
    """Done: the attempts and the outcome go on the centre's dispositions stream for the call's
    record (``records.dispositions``), once, whoever reports the end and however often."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    ident = await dialling(redis, keys)
    d = dialler(redis, keys, Asterisk({}), records=True)
    await d.handle({"Event": "AgentConnect", "Uniqueid": f"{ident}-1-2", "MemberName": "Adviser 1"})
    for _ in range(2):
        await d.handle(outcome(ident, "ANSWER", f"{ident}-1-1"))
    stream = keys.record_dispositions(COMPILED.plan.centre)
    entries = await redis.xrange(stream)
    assert len(entries) == 1
    request = Request.from_json(entries[0][1][b"q"])
    assert (request.request_id, request.record_id, request.tenant, request.kind) == (
        f"callback-{ident}", "1795600000.42", "harborough", None
    )  # fmt: skip
    assert request.callback is not None
    body = json.loads(request.callback)
    assert body["outcome"] == "answered"
    assert [(a["outcome"], a["adviser"]) for a in body["attempts"]] == [("answered", "Adviser 1")]
    assert "+441632960123" not in request.callback  # the number stays with the callback


async def test_no_dial_when_the_replicas_do_not_confirm_the_claim(redis: Redis) -> None:
    """With replicas asked for (``redis.wait_replicas``) and none confirming, the claim is not
    trusted: no Originate is sent (after a fail-over the claim could be gone and another
    controller dial the same callback)."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    now = time.time()
    req = CallbackRequest("harborough", "revenues", "+441632960123", now - 300, now, "1795600000.44", "en")
    ident = await request_callback(redis, keys, req, CallbackPolicy(), now, asterisk_queue="hdc-revenues")
    await redis.set(keys.ami_writer_lease(), "ctl-a")
    asterisk = Asterisk({"Response": "Success"})
    d = dialler(redis, keys, asterisk)
    d.wait = ReplicaWait(replicas=1, timeout_ms=50)  # this redis-server has no replica
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    tenant = COMPILED.plan.tenants["harborough"]
    assert await d._dial(stored, tenant, CallbackPolicy(), position=1, wait_s=60, now=now) == 0
    assert asterisk.sent == []
