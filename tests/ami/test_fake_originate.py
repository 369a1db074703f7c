"""The fake AMI server's Originate against the real one (``ami_originate.txt``, README 2.5).

Each action of the capture is sent byte for byte to the fake, whose far end is scripted as the
capture's ``probe`` dialplan was: 3002 answers, 3003 rings and never answers, 9999 does not
exist. The responses and ``OriginateResponse`` events must carry the same headers, in the same
order, with the same values (a channel's sequence number and Asterisk-made Uniqueids aside),
and come after as long (Timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable

import pytest

from emulator.ami import FakeAmi
from emulator.ami_originate import Legs, OriginatePlay, OriginateRequest
from emulator.ami_wire import BANNER, parse_message, parse_transcript, server_messages
from tests.support.captures import captures_dir

SECRET = "ivrtest-secret"
_SEQUENCE = re.compile(r"-[0-9a-f]{8};")


def capture() -> tuple[dict[str, bytes], dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str]]]]:
    """Per ActionID: the action's bytes, Asterisk's response and its OriginateResponse."""
    lines = parse_transcript((captures_dir() / "ami_originate.txt").read_text(encoding="utf-8"))
    actions: dict[str, bytes] = {}
    current = b""
    for line in lines:
        if line.direction != "C->S":
            continue
        current += line.data
        if line.data == b"\r\n":
            found = re.search(rb"ActionID: (\S+)\r\n", current)
            assert found is not None
            actions[found.group(1).decode()] = current
            current = b""
    responses: dict[str, list[tuple[str, str]]] = {}
    events: dict[str, list[tuple[str, str]]] = {}
    for block in server_messages(lines):
        message = parse_message(block)
        head = dict(message)
        if "ActionID" not in head:
            continue
        if message[0][0] == "Response":
            responses[head["ActionID"]] = message
        elif head.get("Event") == "OriginateResponse":
            events[head["ActionID"]] = message
    return actions, responses, events


async def probe(request: OriginateRequest, _legs: Legs) -> OriginatePlay:
    """The capture's dialplan: ``probe,3002`` answers, ``3003`` rings on, ``9999`` is missing."""
    exten = (request.local or ("", ""))[0]
    return {"3002": OriginatePlay("answer"), "3003": OriginatePlay("noanswer")}.get(
        exten, OriginatePlay("invalid")
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    async with FakeAmi("ivrtest", SECRET) as server:
        server.originator.far_end = probe
        yield server


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def message(self) -> list[tuple[str, str]]:
        return parse_message(await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10))

    async def until(
        self, predicate: Callable[[dict[str, str]], bool]
    ) -> tuple[list[tuple[str, str]], list[list[tuple[str, str]]]]:
        """Messages up to the first for which ``predicate`` holds: (it, those before it)."""
        before: list[list[tuple[str, str]]] = []
        while True:
            message = await self.message()
            if predicate(dict(message)):
                return message, before
            before.append(message)

    def send(self, data: bytes) -> None:
        self.writer.write(data)


@contextlib.asynccontextmanager
async def session(fake: FakeAmi) -> AsyncIterator[Session]:
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        assert await reader.readline() == BANNER
        client = Session(reader, writer)
        client.send(b"Action: Login\r\nUsername: ivrtest\r\nSecret: ivrtest-secret\r\nActionID: o-1\r\n\r\n")
        await client.until(lambda m: m.get("Event") == "FullyBooted")
        yield client
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def normal(message: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Without what Asterisk numbers itself (a Local channel's sequence, its own Uniqueids)."""
    out = []
    for key, raw in message:
        value = _SEQUENCE.sub("-N;", raw)
        if key in ("Uniqueid", "Linkedid") and re.fullmatch(r"\d+\.\d+", value):
            value = "<asterisk>"
        out.append((key, value))
    return out


async def test_every_originate_reply_and_response_matches_the_capture(fake: FakeAmi) -> None:
    actions, responses, events = capture()
    assert set(actions) >= {"o-2", "o-3", "o-4", "o-5", "o-6", "o-7", "o-8", "o-9"}
    async with session(fake) as client:
        for action_id in ("o-2", "o-4", "o-5", "o-7", "o-8", "o-9"):  # the quick ones
            client.send(actions[action_id])
            reply, _ = await client.until(lambda m, a=action_id: "Response" in m and m.get("ActionID") == a)
            assert reply == responses[action_id], action_id
            if action_id in events:
                event, _ = await client.until(
                    lambda m, a=action_id: m.get("Event") == "OriginateResponse" and m.get("ActionID") == a
                )
                assert normal(event) == normal(events[action_id]), action_id


async def test_no_answer_fails_after_the_timeout_sync_and_async(fake: FakeAmi) -> None:
    """Timeout 3000 rings for 3 s: sync ``Originate failed``; async Failure, Reason 3,
    the dial string as Channel and ``Uniqueid: <unknown>``."""
    actions, responses, events = capture()
    async with session(fake) as sync, session(fake) as asynchronous:
        started = time.monotonic()
        sync.send(actions["o-3"])
        asynchronous.send(actions["o-6"])
        queued, _ = await asynchronous.until(lambda m: m.get("ActionID") == "o-6")
        assert queued == responses["o-6"]
        assert time.monotonic() - started < 1.0  # async: queued at once
        reply, _ = await sync.until(lambda m: m.get("ActionID") == "o-3")
        assert reply == responses["o-3"]
        event, _ = await asynchronous.until(lambda m: m.get("Event") == "OriginateResponse")
        assert 2.9 < time.monotonic() - started < 4.0
        assert event == events["o-6"]


async def test_channel_ids_name_the_local_legs(fake: FakeAmi) -> None:
    """``ChannelId``/``OtherChannelId``: the ;1 and ;2 Uniqueids; both legs' Linkedid is ;1's."""
    actions, _, events = capture()
    async with session(fake) as client:
        client.send(actions["o-5"])
        _, before = await client.until(lambda m: m.get("Event") == "OriginateResponse")
    legs = [dict(m) for m in before if dict(m).get("Event") == "Newchannel"]
    assert [(m["Channel"][-2:], m["Uniqueid"], m["Linkedid"]) for m in legs] == [
        (";1", "harborough-cb-0001", "harborough-cb-0001"),
        (";2", "harborough-cb-0002", "harborough-cb-0001"),
    ]
    assert dict(events["o-5"])["Uniqueid"] == "harborough-cb-0001"


async def test_a_synchronous_originate_holds_the_sessions_events_until_its_reply(fake: FakeAmi) -> None:
    """README 2.2: no event reaches the session before the synchronous reply."""
    actions, _, _ = capture()
    async with session(fake) as client:
        client.send(actions["o-3"])
        reply, before = await client.until(lambda m: m.get("ActionID") == "o-3")
        assert before == []
        assert dict(reply)["Message"] == "Originate failed"
        newchannel = await client.message()
        assert dict(newchannel)["Event"] == "Newchannel"


async def test_busy_is_reason_5_and_the_call_outlives_the_session(fake: FakeAmi) -> None:
    """A busy far end: Failure, Reason 5 (AST_CONTROL_BUSY). The call goes on when the session
    that asked drops: OriginateResponse goes to every session (it is an event)."""

    async def busy(_request: OriginateRequest, _legs: Legs) -> OriginatePlay:
        return OriginatePlay("busy", after_s=0.3)

    fake.originator.far_end = busy
    async with session(fake) as watcher:
        async with session(fake) as asker:
            asker.send(
                b"Action: Originate\r\nChannel: Local/1@x\r\nExten: s\r\nContext: c\r\n"
                b"Async: true\r\nActionID: b-1\r\n\r\n"
            )
            await asker.until(lambda m: m.get("ActionID") == "b-1")
        event, _ = await watcher.until(lambda m: m.get("Event") == "OriginateResponse")
    assert dict(event) == {
        "Event": "OriginateResponse",
        "Privilege": "call,all",
        "ActionID": "b-1",
        "Response": "Failure",
        "Channel": "Local/1@x",
        "Context": "c",
        "Exten": "s",
        "Reason": "5",
        "Uniqueid": "<unknown>",
        "CallerIDNum": "<unknown>",
        "CallerIDName": "<unknown>",
    }
