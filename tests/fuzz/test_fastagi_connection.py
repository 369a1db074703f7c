"""Property tests of one FastAGI connection fed arbitrary bytes in arbitrary segments.

What Asterisk (or anything that connects to the port) sends is cut into TCP segments the
server does not choose: a line split anywhere (mid-character too), many lines in one segment.
The properties:

* the session is the same however the bytes are cut (what the handler sees, what is written
  back, the counters), compared with the bytes delivered in one segment;
* a typed channel command ends in a value or one of the documented errors (:class:`AgiError`
  subclasses, :class:`AgiProtocolError`), never anything else, so the handler's own
  clean-up always runs;
* the connection's buffer stays within the limit it was given (plus one segment), however
  the input is cut, and the server reads no further while it is over."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hypothesis import example, given
from hypothesis import strategies as st

from ivr.fastagi import AgiChannel, AgiError, AgiProtocolError, AgiRequest, FastAgiServer, ServerConfig
from ivr.fastagi.connection import AgiConnection
from tests.fastagi.test_connection import FakeTransport
from tests.fuzz.strategies import AWKWARD_BYTES, CUTS, LINE_TEXT, chunked
from tests.fuzz.test_fastagi_protocol import ENV_BLOCK, REPLY_LINE

Command = Callable[[AgiChannel], Awaitable[object]]

COMMANDS: list[Command] = [
    lambda ch: ch.answer(),
    lambda ch: ch.stream_file("menu", "12#"),
    lambda ch: ch.get_data("menu", 100, 3),
    lambda ch: ch.wait_for_digit(100),
    lambda ch: ch.get_variable("CALLERID(num)"),
    lambda ch: ch.exec("Playback", "menu"),
    lambda ch: ch.channel_status(),
    lambda ch: ch.set_variable("CR_ROUTE", "q|revenues"),
    lambda ch: ch.verbose("routing"),
    lambda ch: ch.hangup(),
]

GOOD_LINES = st.lists(st.sampled_from([b"agi_uniqueid: 17.1", b"agi_arg_1: x", b"agi_callerid: 01632960123"]))
GOOD_ENV = GOOD_LINES.map(
    lambda lines: b"agi_network_script: route?tenant=t1\n" + b"".join(line + b"\n" for line in lines) + b"\n"
)
REPLIES = st.lists(
    st.one_of(
        st.sampled_from(["200 result=1", "200 result=49 endpos=100", "HANGUP", "511 Dead", "520-Usage"]),
        st.integers(min_value=-(2**70), max_value=2**70).map("200 result={}".format),
        REPLY_LINE,
    ).map(str.encode),
    max_size=12,
).map(lambda lines: b"".join(line + b"\n" for line in lines))
TAIL = st.lists(st.one_of(AWKWARD_BYTES, LINE_TEXT.map(str.encode)), max_size=3).map(b"".join)


class Session:
    """One connection driven through ``data_received``; records everything observable."""

    def __init__(self, limit: int, commands: list[int]) -> None:
        self.limit = limit
        self.seen: list[object] = []
        self.unexpected: list[str] = []
        self.max_buffer = 0
        self.server = FastAgiServer(ServerConfig(port=0, env_max_bytes=limit))
        self.server.register("route", self._handler)
        self._commands = commands

    async def _handler(self, channel: AgiChannel, request: AgiRequest) -> None:
        self.seen.append(("request", dict(request.env)))
        for index in self._commands:
            try:
                self.seen.append(await COMMANDS[index](channel))
            except (AgiError, AgiProtocolError) as exc:
                self.seen.append((type(exc).__name__, str(exc)))
            except Exception as exc:  # the property: nothing else may come out
                self.unexpected.append(repr(exc))
                raise

    async def run(self, segments: list[bytes]) -> tuple[object, ...]:
        loop = asyncio.get_running_loop()
        self.server._loop = loop  # as start() would
        conn = AgiConnection(self.server, loop, self.limit)
        transport = FakeTransport()
        conn.connection_made(transport)
        for segment in segments:
            for _ in range(20):  # a paused transport delivers nothing until resumed
                if transport.reading or conn.task is None or conn.task.done():
                    break
                await asyncio.sleep(0)
            if not transport.reading or transport.closed:
                break  # nobody reads again (or the server closed): the rest stays in the kernel
            conn.data_received(segment)
            self.max_buffer = max(self.max_buffer, len(conn._buffer))
            await asyncio.sleep(0)
        conn.eof_received()
        for _ in range(200):
            if conn.task is None or conn.task.done():
                break
            await asyncio.sleep(0)
        conn.connection_lost(None)
        if conn.task is not None:
            await asyncio.wait({conn.task}, timeout=1)
        counters = self.server.counters
        return (
            self.seen,
            bytes(transport.written),
            counters.completed,
            counters.failed,
            counters.bad_requests,
            counters.unknown_routes,
        )


def _session(segments: list[bytes], limit: int, commands: list[int]) -> tuple[Session, object]:
    session = Session(limit, commands)
    return session, asyncio.run(session.run(segments))


@given(
    env=st.one_of(GOOD_ENV, ENV_BLOCK),
    replies=REPLIES,
    tail=TAIL,
    cuts=CUTS,
    limit=st.integers(min_value=8, max_value=160),
    commands=st.lists(st.integers(min_value=0, max_value=len(COMMANDS) - 1), max_size=8),
)
@example(  # the block's end exactly at the limit, its first "\n" in the first segment
    env=b"agi_network_script: route\n\n", replies=b"", tail=b"", cuts=[26], limit=25, commands=[]
)
def test_any_segmentation_gives_the_same_session(
    *, env: bytes, replies: bytes, tail: bytes, cuts: list[int], limit: int, commands: list[int]
) -> None:
    data = env + replies + tail
    whole_session, whole = _session([data], limit, commands)
    cut_session, cut = _session(list(chunked(data, cuts)), limit, commands)
    assert cut == whole
    assert not whole_session.unexpected
    assert not cut_session.unexpected
    longest_segment = max((len(s) for s in chunked(data, cuts)), default=0)
    # Reading pauses once over twice the limit: at most one more segment arrives meanwhile, and
    # the segment that ends the environment block may carry the start of the replies.
    assert cut_session.max_buffer <= 2 * limit + 2 * longest_segment


@given(
    replies=REPLIES,
    commands=st.lists(st.integers(min_value=0, max_value=len(COMMANDS) - 1), min_size=1, max_size=10),
)
@example(replies=b"200 result=99999999999\n", commands=[1])  # STREAM FILE: chr() of no character
@example(replies=b"200 result=-99999999999\n", commands=[3])
def test_typed_commands_end_in_a_value_or_a_documented_error(replies: bytes, commands: list[int]) -> None:
    env = b"agi_network_script: route\n\n"
    session, outcome = _session([env + replies], 16 * 1024, commands)
    assert not session.unexpected
    assert outcome[3] == 0  # counters.failed: no handler error
