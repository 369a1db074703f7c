"""The panoramisk adapter: UTF-8 across reads, explicit reply shapes, no secret in logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from panoramisk.ami_protocol import AMIProtocol

from emulator.ami import FakeAmi
from routing.ami.client import AmiClient, AmiLoginFailed, Utf8AmiProtocol, plain_headers
from routing.ami.settings import AmiSettings

SECRET = "s3cret-Value-42"
JOIN = (
    "Event: QueueCallerJoin\r\nPrivilege: agent,all\r\nChannel: PJSIP/sipp-0000001d\r\n"
    "CallerIDName: Zoë Brontë\r\nUniqueid: 1795533385.31\r\nQueue: council-revenues\r\n"
    "Position: 1\r\nCount: 1\r\n\r\n"
).encode()


class Collect:
    """A stand-in for panoramisk's Manager as seen by the protocol: records dispatches."""

    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []

    def dispatch(self, message: Any) -> None:
        self.events.append(dict(message.items()))


class NullTransport(asyncio.Transport):
    def write(self, data: Any) -> None:
        """Nothing is sent in these tests."""


def feed(protocol: AMIProtocol, chunks: list[bytes]) -> list[dict[str, str]]:
    protocol.connection_made(NullTransport())
    sink = Collect()
    protocol.factory = sink
    protocol.encoding = "utf8"
    for chunk in chunks:
        protocol.data_received(chunk)
    return sink.events


def split_inside_e_diaeresis() -> list[bytes]:
    data = b"Asterisk Call Manager/11.0.0\r\n" + JOIN
    cut = data.index("ë".encode()) + 1  # between the two bytes of ë
    return [data[:cut], data[cut:]]


async def test_panoramisk_14_loses_a_split_character() -> None:
    (event,) = feed(AMIProtocol(), split_inside_e_diaeresis())
    assert event["CallerIDName"] == "Zo Brontë"  # the defect we work around


async def test_incremental_decoding_keeps_it() -> None:
    (event,) = feed(Utf8AmiProtocol(), split_inside_e_diaeresis())
    assert event["CallerIDName"] == "Zoë Brontë"
    assert event["Queue"] == "council-revenues"


async def test_byte_by_byte_delivery() -> None:
    data = b"Asterisk Call Manager/11.0.0\r\n" + JOIN + JOIN
    events = feed(Utf8AmiProtocol(), [data[i : i + 1] for i in range(len(data))])
    assert [e["CallerIDName"] for e in events] == ["Zoë Brontë", "Zoë Brontë"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    async with FakeAmi("callrouter", SECRET, auth_failure_delay_s=0.05) as server:
        yield server


def settings(fake: FakeAmi, secret: str = SECRET) -> AmiSettings:
    return AmiSettings(port=fake.port, secret=secret, connect_timeout_s=1, login_timeout_s=1)


async def test_play_dtmf_reply_resolves(fake: FakeAmi) -> None:
    channel = fake.caller_joins("q", send=False).channel
    assert channel is not None
    client = AmiClient(settings(fake))
    await client.connect()
    try:
        action = {"Action": "PlayDTMF", "Channel": channel.name, "Digit": "5"}
        (reply,) = await client.send(action, deadline_s=2)
        assert (reply["Response"], reply["Message"]) == ("Success", "DTMF successfully queued")
        action["Channel"] = "PJSIP/nobody"
        (reply,) = await client.send(action, deadline_s=2)
        assert (reply["Response"], reply["Message"]) == ("Error", "Channel not found")
        items = await client.send({"Action": "QueueStatus"}, deadline_s=2, as_list=True)
        assert [m.get("Event", m.get("Response")) for m in items] == [
            "Success",
            "QueueParams",
            "QueueEntry",
            "QueueStatusComplete",
        ]
    finally:
        client.close()


async def test_bad_secret_is_refused_and_never_logged(
    fake: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = AmiClient(settings(fake, secret="wrong-" + SECRET))
    with pytest.raises(AmiLoginFailed, match="Authentication failed"):
        await client.connect()
    good = AmiClient(settings(fake))
    await good.connect()
    await good.send({"Action": "Ping"}, deadline_s=2)
    good.close()
    assert caplog.records, "the client logged at debug level"
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in repr(settings(fake))


async def test_send_on_a_lost_connection_raises(fake: FakeAmi) -> None:
    client = AmiClient(settings(fake))
    await client.connect()
    fake.drop_connections()
    await asyncio.wait_for(client.lost, 2)
    with pytest.raises(ConnectionError):
        await client.send({"Action": "Ping"}, deadline_s=1)
    client.close()


async def test_repeated_headers_neither_drop_the_connection_nor_reach_us_as_lists(fake: FakeAmi) -> None:
    # Found by fuzzing: a repeated Event or ActionID reached panoramisk as a list, which raised
    # inside data_received (asyncio then closed the connection), and a repeated Queue reached
    # the consumer as a list. Asterisk reads the first of a repeated header; so do we.
    client = AmiClient(settings(fake))
    seen: list[dict[str, str]] = []
    client.on_event(lambda manager, message: seen.append(plain_headers(message)))
    await client.connect()
    try:
        fake.broadcast(
            b"Event: Hangup\r\nActionID: a\r\nActionID: b\r\nUniqueid: 1\r\n\r\n"
            b"Event: QueueCallerJoin\r\nEvent: Other\r\nQueue: q1\r\nQueue: q2\r\nUniqueid: 2\r\n\r\n"
        )
        await client.send({"Action": "Ping"}, deadline_s=2)  # still connected, still in step
        assert [(e["Event"], e.get("ActionID"), e.get("Queue")) for e in seen[-2:]] == [
            ("Hangup", "a", None),
            ("QueueCallerJoin", None, "q1"),
        ]
        assert not client.lost.done()
    finally:
        client.close()


async def test_a_message_over_the_cap_closes_the_connection(
    fake: FakeAmi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by fuzzing: text without a message separator was held without limit.
    monkeypatch.setattr(Utf8AmiProtocol, "max_message_chars", 1000)
    client = AmiClient(settings(fake))
    await client.connect()
    try:
        fake.broadcast(b"Event: VarSet\r\nValue: " + b"x" * 900 + b"\r\n\r\n")  # under the cap
        await client.send({"Action": "Ping"}, deadline_s=2)
        fake.broadcast(b"Event: VarSet\r\nValue: " + b"x" * 600)
        fake.broadcast(b"x" * 600)  # no end in sight
        await asyncio.wait_for(client.lost, 2)
        assert "ami.message_oversized" in caplog.text
    finally:
        client.close()


class _Closing(Collect):
    """Collect, and note the loss the protocol reports when it closes."""

    lost = False

    def connection_lost(self, exc: object) -> None:
        self.lost = True


class _ClosableTransport(NullTransport):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_nothing_is_read_after_the_connection_closes() -> None:
    # Found by fuzzing: after a Shutdown event closed the connection, the rest of the same read
    # was still dispatched, so what arrived depended on how the bytes were cut into reads.
    protocol = Utf8AmiProtocol()
    transport = _ClosableTransport()
    protocol.connection_made(transport)
    sink = protocol.factory = _Closing()
    protocol.data_received(b"Asterisk Call Manager/11.0.0\r\nEvent: Shutdown\r\n\r\n" + JOIN)
    assert (sink.lost, transport.closed) == (True, True)
    assert [e["Event"] for e in sink.events] == ["Shutdown"]
