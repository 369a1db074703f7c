"""What the dialler makes of AMI reports, against a real redis-server: a forged outcome (the
UserEvent *action*, which has no channel) ends nothing; a refused Originate is not retried in a
loop; a report seen twice changes the callback once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from ivr.controller import PlanHolder
from ivr.dialler import REFUSED_RETRY_S, Dialler, DiallerSettings, end_backoff
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


async def _reported(d: Dialler, events: list[tuple[dict[str, str], float]]) -> None:
    """The events through the AMI tap (with their receive times), then what it kept, applied."""
    for headers, received in events:
        d.on_message(headers, received)
    while not d.inbox.empty():
        await d.handle(*d.inbox.get_nowait())


def _answer_then_outcome(
    ident: str, dial: int, ring_s: float, talk_s: float, *, stamped: bool
) -> list[tuple[dict[str, str], float]]:
    """The ;1 leg's DialEnd ANSWER after ``ring_s`` of ringing, then its CallbackOutcome after
    ``talk_s`` (ANSWEREDTIME counting both, as on Asterisk: callback_originate.txt). Stamped: the
    events carry Asterisk's Timestamp and arrive together (the receive times say nothing)."""
    leg, adviser_at, at = f"{ident}-{dial}-1", 1_795_600_000.25, time.time()
    answered, ended = adviser_at + ring_s, adviser_at + ring_s + talk_s
    dial_end = {"Event": "DialEnd", "Uniqueid": leg, "DestChannel": "PJSIP/pstn-00000001",
                "DialStatus": "ANSWER"}  # fmt: skip
    user = {"Event": "UserEvent", "UserEvent": "CallbackOutcome", "Uniqueid": leg, "Callback": ident,
            "Dial": str(dial), "DialStatus": "ANSWER", "AnsweredTime": str(int(ring_s + talk_s))}  # fmt: skip
    if stamped:
        dial_end["Timestamp"], user["Timestamp"] = f"{answered:.6f}", f"{ended:.6f}"
        return [(dial_end, at), (user, at)]
    return [(dial_end, answered), (user, ended)]


@pytest.mark.parametrize("stamped", [True, False], ids=["timestamp", "receive-time"])
async def test_the_talk_is_timed_from_the_callers_answer(redis: Redis, stamped: bool) -> None:
    """A voicemail that picks up after 35 s of ringing and plays 5 s of greeting: ANSWEREDTIME
    says 40 (it counts from the adviser's answer) but the caller's side talked 5 s, a short
    answer, retried. Then Jane answers after 2 s and talks 60 s: answered."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    ident = await dialling(redis, keys)
    d = dialler(redis, keys, Asterisk({}))
    await _reported(d, _answer_then_outcome(ident, 1, ring_s=35, talk_s=5, stamped=stamped))
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, [a.outcome for a in attempts_of(stored)]) == ("pending", ["short-answer"])
    assert await claim(redis, keys, ident, "ctl-a", time.time() + 3600) == 2
    await _reported(d, _answer_then_outcome(ident, 2, ring_s=2, talk_s=60, stamped=stamped))
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.outcome) == ("done", "answered")
    assert [a.outcome for a in attempts_of(stored)] == ["short-answer", "answered"]
    assert not d._answered  # each answer went with its outcome


async def test_without_the_callers_answer_seen_answeredtime_decides(redis: Redis) -> None:
    """A controller that connected after the caller answered saw no DialEnd: ANSWEREDTIME (4 s,
    a short answer) is all there is. A DialEnd of another dial's leg or of the adviser leg
    (``-2``) or not answered times nothing."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    ident = await dialling(redis, keys)
    d = dialler(redis, keys, Asterisk({}))
    now = time.time()
    others = [
        {"Event": "DialEnd", "Uniqueid": f"{ident}-7-1", "DialStatus": "ANSWER"},
        {"Event": "DialEnd", "Uniqueid": f"{ident}-1-2", "DialStatus": "ANSWER"},
        {"Event": "DialEnd", "Uniqueid": f"{ident}-1-1", "DialStatus": "NOANSWER"},
    ]
    late = {**outcome(ident, "ANSWER", f"{ident}-1-1"), "AnsweredTime": "4"}
    await _reported(d, [*((e, now - 60) for e in others), (late, now)])
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert [a.outcome for a in attempts_of(stored)] == ["short-answer"]
    assert list(d._answered) == [f"{ident}-7-1"]


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


async def test_an_end_the_replicas_do_not_confirm_is_held_and_sent_again_until_they_do(redis: Redis) -> None:
    """The caller answered, but no replica confirms the end (this redis-server has none): the end
    is held, not dropped; sent again with a bounded backoff however long that lasts; the dial,
    long past the time a lost dial is given, is not ended as ``interrupted`` (which would dial the
    caller again); the record waits. Once replicas confirm (here: none asked for any more) the
    end is confirmed, the callback is done after one attempt and its record asked for once."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    ident = await dialling(redis, keys)
    asterisk = Asterisk({"Response": "Success"})
    d = dialler(redis, keys, asterisk, records=True)
    d.settings = DiallerSettings(adviser_wait_s=0.01, lost_after_s=0.01, talk_bound_s=0.01,
                                 end_retry_first_s=0.01, end_retry_max_s=0.04)  # fmt: skip
    d.wait = ReplicaWait(replicas=1, timeout_ms=20)
    await d.handle({"Event": "AgentConnect", "Uniqueid": f"{ident}-1-2", "MemberName": "Adviser 1"})
    await d.handle(outcome(ident, "ANSWER", f"{ident}-1-1"))
    assert d.holds_end(ident, 1)
    stream = keys.record_dispositions(COMPILED.plan.centre)
    for _ in range(12):  # ten tries and more, the backoff long reached its bound
        await asyncio.sleep(0.05)
        assert await d.retry_ends() == 0
        assert await d.sweep() == 0  # not lost, not dialled again
        assert d.holds_end(ident, 1)
    assert d._ends[(ident, 1)].tries > 10
    assert asterisk.sent == []
    assert await redis.xlen(stream) == 0  # not confirmed: not yet in the record
    d.wait = ReplicaWait()  # the replicas confirm again
    await asyncio.sleep(0.05)
    assert await d.retry_ends() == 1
    assert not d.holds_end(ident, 1)
    stored = await load_callback(redis, keys, ident)
    assert stored is not None
    assert (stored.state, stored.outcome, stored.attempts) == ("done", "answered", 1)
    assert [a.outcome for a in attempts_of(stored)] == ["answered"]
    assert await redis.xlen(stream) == 1
    assert await d.sweep() == 0
    assert asterisk.sent == []


def test_the_backoff_doubles_up_to_its_bound() -> None:
    settings = DiallerSettings(end_retry_first_s=0.5, end_retry_max_s=5.0)
    assert [end_backoff(n, settings) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert end_backoff(10_000, settings) == 5.0
