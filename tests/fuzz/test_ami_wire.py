"""Property tests of the AMI stream parser fed arbitrary bytes in arbitrary segments.

The stream goes through the real pieces: :class:`Utf8AmiProtocol` wired to panoramisk's
Manager as :meth:`AmiClient.connect` wires it (a Login and a reconcile ``QueueStatus`` are
pending), the consumer's one callback (documented: "Never raises") and the pure conversion
(:func:`to_queue_event`: a malformed event gives None). Nothing touches Redis.

The properties:

* ``data_received`` never raises, whatever the bytes (an exception there makes asyncio drop
  the connection with every event still in the segment);
* the same events come out however the bytes are cut (UTF-8 characters and the
  ``\\r\\n\\r\\n`` separator split anywhere), compared with the bytes in one segment;
* headers handed on are text, as their type says, and conversion never raises;
* the text held for an unfinished message stays under the protocol's cap: a longer message
  closes the connection (the consumer reconnects and reconciles) instead of growing memory."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from redis.asyncio import Redis

from routing.ami.client import RECONCILE_ACTION_PREFIX, AmiClient, Utf8AmiProtocol
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.live.lease import WriterLease
from routing.live.queue_status import QueueStatusPicture
from routing.live.store import QueueStateStore
from tests.ami.helpers import fixture_text
from tests.fastagi.test_connection import FakeTransport
from tests.fuzz.strategies import AWKWARD_BYTES, CUTS, LINE_TEXT, chunked

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
RECONCILE_ID = f"{RECONCILE_ACTION_PREFIX}1"
CAP = 400  # the protocol's message cap in these tests (the real one is far larger)


def _captured_messages() -> list[bytes]:
    from emulator.ami_wire import parse_transcript, server_messages

    names = ["queue_answered_call.txt", "queue_member_management.txt", "queue_status_summary_withdraw.txt"]
    return [m for name in names for m in server_messages(parse_transcript(fixture_text(name)))]


CAPTURED = _captured_messages()
HEADER_NAMES = ["Event", "ActionID", "Response", "Message", "EventList", "ListItems", "Queue"]
HEADER_NAMES += ["Uniqueid", "Interface", "Location", "Status", "Paused", "InCall", "Position", "Count"]
HEADER_NAMES += ["Result", "SubEvent"]
HEADER_NAME = st.one_of(st.sampled_from(HEADER_NAMES), LINE_TEXT)
HEADER_VALUES = ["QueueCallerJoin", "QueueMemberStatus", "QueueEntry", "QueueMember", "QueueParams"]
HEADER_VALUES += ["QueueStatusComplete", "Success", "Error", "Follows", "Shutdown", "DTMFBegin", "start"]
HEADER_VALUES += ["Complete", "council-revenues", "PJSIP/a", RECONCILE_ID, "1", "99999999999", "-1"]
HEADER_VALUE = st.one_of(st.sampled_from(HEADER_VALUES), LINE_TEXT)
MESSAGE = st.one_of(
    st.sampled_from(CAPTURED),
    st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), min_size=1, max_size=8).map(
        lambda headers: "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"
    ),
)
STREAM = st.tuples(
    st.sampled_from([BANNER, b"", b"Asterisk Call Man"]),
    st.lists(st.one_of(MESSAGE, MESSAGE, AWKWARD_BYTES, LINE_TEXT.map(str.encode)), max_size=10),
).map(lambda parts: parts[0] + b"".join(parts[1]))


class AmiStream:
    """One consumer, one protocol, a fake transport; bytes in, what the consumer queued out."""

    async def run(self, segments: list[bytes]) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        settings = AmiSettings(secret="fuzz", queue_maxsize=10_000)
        redis = Redis(host="127.0.0.1", port=9)  # never used: nothing here is awaited
        consumer = AmiConsumer(
            settings, QueueStateStore(redis, "fuzz"), WriterLease(redis, "fuzz"), clock=lambda: 1.0
        )
        # What AmiConsumer.run() sets up before its tasks start.
        consumer._events = asyncio.Queue()
        consumer._reconcile_wanted = asyncio.Event()
        client = consumer._client = AmiClient(settings, logging.getLogger("tests.fuzz.ami"))
        client.on_event(consumer._on_ami_event)
        transport = FakeTransport()
        protocol = Utf8AmiProtocol()
        protocol.max_message_chars = CAP
        protocol.connection_made(transport)
        connected = loop.create_future()
        connected.set_result((transport, protocol))
        client._manager.connection_made(connected)  # sends Login, as connect() does
        client._manager.send_action({"Action": "QueueStatus", "ActionID": RECONCILE_ID}, as_list=True)
        self.max_pending = 0
        try:
            for segment in segments:
                if transport.closed:
                    break  # asyncio delivers nothing after close()
                protocol.data_received(segment)
                self.max_pending = max(self.max_pending, protocol._pending_chars)
            queued = []
            while not consumer._events.empty():
                queued.append(consumer._events.get_nowait())
            self.headers = [item[1] for item in queued if not isinstance(item, QueueStatusPicture)]
            converted = consumer._convert(queued)
            lost = (transport.closed, client.lost.done(), consumer._reconcile_wanted.is_set())
            return (queued, converted, *lost)
        finally:
            client.close()
            await redis.aclose()


def _run(segments: list[bytes]) -> tuple[AmiStream, tuple[Any, ...]]:
    stream = AmiStream()
    return stream, asyncio.run(stream.run(segments))


@given(STREAM, CUTS)
@example(BANNER + b"Event: Hangup\r\nActionID: 1\r\nActionID: 2\r\n\r\n", [])  # repeated ActionID
@example(BANNER + b"Event: QueueCallerJoin\r\nEvent: X\r\nQueue: q\r\nUniqueid: 1\r\n\r\n", [])
@example(BANNER + b"Event: QueueCallerJoin\r\nQueue: q\r\nQueue: r\r\nUniqueid: 1\r\n\r\n", [])
@example(BANNER + b"x" * (2 * CAP), [CAP // 2, CAP, CAP + CAP // 2])  # never a separator
def test_any_stream_in_any_segments_gives_the_same_events(data: bytes, cuts: list[int]) -> None:
    _, whole = _run([data])
    cut_stream, cut = _run(list(chunked(data, cuts)))
    assert cut == whole
    for headers in cut_stream.headers:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()), headers
    assert sum(len(k) + len(v) for h in cut_stream.headers for k, v in h.items()) <= len(data)
    longest_segment = max((len(s) for s in chunked(data, cuts)), default=0)
    # pending: under the cap, or the connection was closed for a message over it
    assert cut_stream.max_pending <= CAP + 3 or cut[2]
    assert cut_stream.max_pending <= CAP + 3 + longest_segment
