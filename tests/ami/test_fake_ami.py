"""The fake AMI server answers as the captured Asterisk 22.10.1 does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from emulator.ami import FakeAmi
from emulator.ami_wire import BANNER, event_blocks, headers_dict, parse_message
from tests.ami.helpers import fixture_messages, fixture_text

SECRET = "ivrtest-secret"


OPEN: list[asyncio.StreamWriter] = []


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    async with FakeAmi("ivrtest", SECRET, auth_failure_delay_s=0.05, withdraw_delay_s=0.05) as server:
        yield server
        await close_clients()


async def close_clients() -> None:
    """Close every connection :func:`connect` opened, while the test's loop runs (left to the
    garbage collector, each says "loop is closed" at the end of the run)."""
    for writer in OPEN:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    OPEN.clear()


class RawClient:
    """A bare TCP client that reads whole messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *headers: tuple[str, str]) -> None:
        self.writer.write(("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode())
        await self.writer.drain()

    async def message(self) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 2)


async def connect(fake: FakeAmi) -> RawClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    OPEN.append(writer)
    assert await reader.readline() == BANNER
    return RawClient(reader, writer)


async def login(fake: FakeAmi) -> RawClient:
    client = await connect(fake)
    await client.send(("Action", "Login"), ("Username", "ivrtest"), ("Secret", SECRET), ("ActionID", "q-1"))
    assert (
        await client.message()
        == b"Response: Success\r\nActionID: q-1\r\nMessage: Authentication accepted\r\n\r\n"
    )
    assert (await client.message()).startswith(b"Event: FullyBooted\r\nPrivilege: system,all\r\n")
    return client


def names(message: dict[str, str]) -> list[str]:
    return list(message)


async def test_session_basics_match_the_capture(fake: FakeAmi) -> None:
    captured = fixture_messages("session_basics.txt")
    client = await connect(fake)
    await client.send(("Action", "Ping"), ("ActionID", "c1-1"))
    assert headers_dict(parse_message(await client.message())) == captured[0]  # Permission denied
    await client.send(("Action", "Login"), ("Username", "ivrtest"), ("Secret", "wrong"), ("ActionID", "c1-2"))
    assert headers_dict(parse_message(await client.message())) == captured[1]  # Authentication failed
    assert await client.reader.read() == b""  # then Asterisk closes


async def test_ping_logoff_and_unknown_action(fake: FakeAmi) -> None:
    captured = {m.get("ActionID"): m for m in fixture_messages("session_basics.txt")}
    client = await login(fake)
    await client.send(("Action", "ping"), ("ActionID", "c3-6"))
    pong = headers_dict(parse_message(await client.message()))
    assert names(pong) == names(captured["c3-6"])
    assert pong["Ping"] == "Pong"
    await client.send(("Action", "NoSuchAction"), ("ActionID", "c3-7"))
    assert headers_dict(parse_message(await client.message())) == captured["c3-7"]
    await client.send(("Action", "Logoff"), ("ActionID", "c3-19"))
    assert headers_dict(parse_message(await client.message())) == captured["c3-19"]
    assert await client.reader.read() == b""


async def test_queue_status_has_the_captured_shape(fake: FakeAmi) -> None:
    fake.add_member("council-revenues", "PJSIP/agent1", "Agent One", membership="static", send=False)
    fake.set_member_status("PJSIP/agent1", 6, send=False)
    fake.caller_joins("council-revenues", send=False)
    fake.caller_joins("council-revenues", send=False)
    client = await login(fake)
    await client.send(("Action", "QueueStatus"), ("Queue", "council-revenues"), ("ActionID", "q-2"))
    got = [headers_dict(parse_message(await client.message())) for _ in range(6)]
    want = [m for m in fixture_messages("queue_status_summary_withdraw.txt") if m.get("ActionID") == "q-2"]
    assert [names(m) for m in got] == [names(m) for m in want]
    assert got[0] == want[0]
    assert got[-1] == want[-1]  # QueueStatusComplete, ListItems: 4
    assert [m["Position"] for m in got[3:5]] == ["1", "2"]


async def test_withdraw_replies_and_effect(fake: FakeAmi) -> None:
    captured = {m.get("ActionID"): m for m in fixture_messages("queue_status_summary_withdraw.txt")}
    caller = fake.caller_joins("council-revenues", send=False).channel
    assert caller is not None
    client = await login(fake)
    cases = [
        ("q-7", "council-revenues", caller.name),
        ("q-8", "council-revenues", caller.name),
        ("q-9", "council-revenues", "PJSIP/nobody-00000000"),
        ("q-10", "no-such-queue", caller.name),
    ]
    for action_id, queue, channel in cases:
        await client.send(
            ("Action", "QueueWithdrawCaller"), ("Queue", queue), ("Caller", channel), ("ActionID", action_id)
        )
        assert headers_dict(parse_message(await client.message())) == captured[action_id]
    abandon = headers_dict(parse_message(await client.message()))
    leave = headers_dict(parse_message(await client.message()))
    assert (abandon["Event"], leave["Event"], leave["Count"]) == (
        "QueueCallerAbandon",
        "QueueCallerLeave",
        "0",
    )
    assert fake.model.queues["council-revenues"].waiting == []


async def test_events_keep_the_captured_header_order(fake: FakeAmi) -> None:
    client = await login(fake)
    fake.add_member("council-revenues", "PJSIP/agent1", "Agent One", membership="static", send=False)
    caller = fake.caller_joins("council-revenues").channel
    assert caller is not None
    fake.answer(caller.uniqueid, "PJSIP/agent1")
    fake.complete(caller.uniqueid)
    got = []
    while not got or got[-1]["Event"] != "QueueMemberStatus" or got[-1]["Status"] != "1":
        got.append(headers_dict(parse_message(await client.message())))
    captured = {m["Event"]: m for m in fixture_messages("queue_answered_call.txt")}
    for message in got:
        assert names(message) == names(captured[message["Event"]]), message["Event"]


async def test_replay_sends_capture_blocks_verbatim(fake: FakeAmi) -> None:
    client = await login(fake)
    blocks = event_blocks(fixture_text("queue_timeout.txt"))
    assert await fake.replay(blocks) == len(blocks)
    received = [await client.message() for _ in blocks]
    assert received == blocks
    assert fake.model.queues["council-revenues"].waiting == []  # joined and left


async def test_a_message_sent_in_two_parts_is_not_cut_by_a_reply(fake: FakeAmi) -> None:
    """Asterisk writes each message whole: a reply due while an event goes out in two parts
    (split inside a UTF-8 character) follows the event, it never lands between the parts."""
    client = await login(fake)
    event = fake.caller_joins("council-revenues", name="Zoë Brontë", send=False)
    split = asyncio.create_task(fake.send_split(event.data, event.data.index("ë".encode()) + 1, pause_s=0.3))
    head = await asyncio.wait_for(client.reader.readuntil("Zo\xc3".encode("latin-1")), 2)
    await client.send(("Action", "Ping"), ("ActionID", "between"))
    await split
    assert head + await client.message() == event.data
    pong = headers_dict(parse_message(await client.message()))
    assert (pong["ActionID"], pong["Ping"]) == ("between", "Pong")


async def test_silence_and_drop(fake: FakeAmi) -> None:
    client = await login(fake)
    fake.go_silent()
    await client.send(("Action", "Ping"), ("ActionID", "p"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 0.3)
    fake.resume()
    second = await login(fake)
    assert fake.drop_connections() == 2
    assert await second.reader.read() == b""
