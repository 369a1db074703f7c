"""The queued callback's Originate, emulated, against Asterisk 22.10.1 (``callback_originate.txt``).

Each section's Originate is sent byte for byte (two edits, below) on an AMI session to the fake AMI
server of the callback tests' centre (``tests/callbacks/rig.py``: the emulated PBX running the
shipped ``callrouter-callback-*`` contexts, app_queue's turns, the caller's phone), scripted as the
capture's far ends were. What the dialler and the records rely on is compared with the capture:

* the order of the dial's setup: ``Newchannel`` of ``;1`` then ``;2``, the ``;2`` leg's queue
  events, ``AgentConnect``, ``OriginateResponse`` (after the adviser's answer, before ``;1``
  dials the caller), ``;1``'s ``DialBegin``/``DialEnd`` to the caller, ``CallbackOutcome``;
* ``OriginateResponse``: every header (the Local channel's sequence number aside); a failure
  carries the ``ChannelId`` as Uniqueid, not ``<unknown>``;
* how each channel ends: its ``Hangup`` cause (busy: 17 on every channel; the caller's leg that
  rang unanswered: 0; no adviser: 19 on both legs) and the ``HangupRequest`` causes, and ``;2``'s
  ``Hangup`` after ``OriginateResponse``;
* the Originate sent again while its legs are up (its ``ChannelId`` in use): no channel, a
  Failure with Reason 0 and that ``ChannelId`` as Uniqueid.

Edits to the replayed action: ``CR_CB_QUEUE`` names the centre's queue instead of the lab's, and
the "no adviser" section's ``Timeout`` is 500 ms instead of 5000 (the wait itself is not compared).
Not emulated (left out of the comparison): ``NewCallerid``, ``LocalBridge``, ``VarSet``, the
Originate's own ``DialBegin``/``DialEnd`` of ``;1``, the queue's ``DialBegin``/``DialEnd`` to the
adviser, ``SoftHangupRequest``, and the order of the hangups among themselves.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator.ami_wire import BANNER, parse_message
from routing.redis_keys import RedisKeys
from tests.callbacks.rig import (
    ADVISERS,
    QUEUE,
    SECRET,
    CallbackCentre,
    Phone,
    emulated_centre,
    open_all_hours_plan,
)
from tests.fastagi.transcripts import FIXTURES
from tests.support.redis_server import RedisServer

CAPTURE = FIXTURES / "callback_originate.txt"
CALLER = "+441632960123"
KEY_EVENTS = ("Newchannel", "QueueCallerJoin", "QueueCallerAbandon", "QueueCallerLeave", "AgentConnect")
Event = dict[str, str]


def section(name: str) -> str:
    return next(s for s in CAPTURE.read_text(encoding="utf-8").split("# ---- ") if s.startswith(name))


def data(body: str, direction: str) -> list[bytes]:
    pattern = rf"^\s*\d+\.\d+ {direction} (b'.*')$"
    return [ast.literal_eval(raw) for raw in re.findall(pattern, body, re.MULTILINE)]


def action(body: str) -> bytes:
    """The section's Originate, as sent (its first action)."""
    sent = b"".join(data(body, "C->S"))
    return sent.split(b"\r\n\r\n")[0] + b"\r\n\r\n"


def captured(body: str) -> list[Event]:
    """The events Asterisk sent in the section, in order."""
    blocks = b"".join(data(body, "S->C")).split(b"\r\n\r\n")
    messages = [dict(parse_message(block + b"\r\n\r\n")) for block in blocks if block]
    return [m for m in messages if "Event" in m]


def role(channel: str) -> str:
    """;1, ;2, the caller's leg (pstn) or the adviser's."""
    if channel.startswith("Local/"):
        return channel[-2:]
    return "pstn" if channel.startswith("PJSIP/pstn") else "adviser"


def setup_order(events: list[Event]) -> list[tuple[str, ...]]:
    """The dial's setup as the dialler sees it (see the module doc)."""
    out: list[tuple[str, ...]] = []
    for e in events:
        name, channel = e["Event"], e.get("Channel", "")
        if name in KEY_EVENTS and channel.startswith("Local/"):
            out.append((name, role(channel)))
        elif name in ("DialBegin", "DialEnd") and channel.endswith(";1"):
            out.append((name, role(channel), role(e["DestChannel"]), e.get("DialStatus", "")))
        elif name == "OriginateResponse":
            out.append((name, e["Response"], e["Reason"]))
        elif name == "UserEvent" and e.get("UserEvent") == "CallbackOutcome":
            out.append((name, e["DialStatus"], e["AnsweredTime"]))
    return out


def endings(events: list[Event]) -> Counter[tuple[str, str, str]]:
    """Each channel's HangupRequest (with a Cause) and Hangup causes."""
    return Counter(
        (e["Event"], role(e["Channel"]), e["Cause"])
        for e in events
        if e["Event"] == "Hangup" or (e["Event"] == "HangupRequest" and "Cause" in e)
    )


def response(events: list[Event]) -> list[tuple[str, str]]:
    found = next(e for e in events if e["Event"] == "OriginateResponse")
    return [(k, re.sub(r"-[0-9a-f]{8};", "-N;", v)) for k, v in found.items()]


def two_hangs_up_after_the_response(events: list[Event]) -> bool:
    hangup = next(i for i, e in enumerate(events) if e["Event"] == "Hangup" and role(e["Channel"]) == ";2")
    return hangup > next(i for i, e in enumerate(events) if e["Event"] == "OriginateResponse")


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")


@contextlib.asynccontextmanager
async def session(rig: CallbackCentre) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.fake.port)
    try:
        assert await reader.readline() == BANNER
        writer.write(f"Action: Login\r\nUsername: callrouter\r\nSecret: {SECRET}\r\n\r\n".encode())
        while b"FullyBooted" not in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10):
            pass
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def emulate(
    redis_server: RedisServer, keys: RedisKeys, tmp_path: Path, body: str, phone: Phone | None
) -> list[Event]:
    """Replay the section's Originate; ``phone``: the caller's (None: no adviser frees up)."""
    sent = action(body).replace(b"CR_CB_QUEUE=council-cbq", f"CR_CB_QUEUE={QUEUE}".encode())
    sent = sent.replace(b"CR_CB_QUEUE=council-cb,", f"CR_CB_QUEUE={QUEUE},".encode())
    sent = sent.replace(b"Timeout: 5000\r\n", b"Timeout: 500\r\n")
    events: list[Event] = []
    async with emulated_centre(redis_server.url, keys, open_all_hours_plan(tmp_path)) as rig:
        if phone is not None:
            rig.phones[CALLER] = [phone]
            rig.free_adviser(ADVISERS[0])
        async with session(rig) as (reader, writer):
            writer.write(sent)
            end = time.monotonic() + 10
            while time.monotonic() < end:
                message = dict(parse_message(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)))
                if "Event" in message:
                    events.append(message)
                gone = {role(e["Channel"]) for e in events if e["Event"] == "Hangup"}
                if {";1", ";2"} <= gone and (phone is None or {"pstn", "adviser"} <= gone):
                    break
    return events


SECTIONS = [
    ("answered", Phone("ANSWER", talk_s=3, ring_s=1.0)),
    ("caller no answer", Phone("NOANSWER", ring_s=10.0)),
    ("caller busy", Phone("BUSY")),
    ("no adviser", None),
]


@pytest.mark.parametrize(("name", "phone"), SECTIONS, ids=[s[0] for s in SECTIONS])
async def test_the_callback_dial_as_captured(
    redis_server: RedisServer, keys: RedisKeys, tmp_path: Path, name: str, phone: Phone | None
) -> None:
    body = section(name)
    want = captured(body)
    got = await emulate(redis_server, keys, tmp_path, body, phone)
    assert setup_order(got) == setup_order(want)
    assert response(got) == response(want)
    assert endings(got) == endings(want)
    assert two_hangs_up_after_the_response(got)
    assert two_hangs_up_after_the_response(want)


def test_what_the_capture_says() -> None:
    """The facts above, read from the capture itself."""
    busy = captured(section("caller busy"))
    assert {cause for (event, _, cause) in endings(busy) if event == "Hangup"} == {"17"}
    failed = dict(response(captured(section("no adviser"))))
    assert (failed["Response"], failed["Reason"], failed["Uniqueid"]) == (
        "Failure",
        "3",
        "cb-0123456789abcdef0123-4-1",  # the ChannelId asked for, not <unknown>
    )
    answered = setup_order(captured(section("answered")))
    response_at = next(i for i, e in enumerate(answered) if e[0] == "OriginateResponse")
    assert answered[response_at - 1] == ("AgentConnect", ";2")
    assert answered[response_at + 1] == ("DialBegin", ";1", "pstn", "")


async def test_a_channelid_still_in_use_fails_at_once(
    redis_server: RedisServer, keys: RedisKeys, tmp_path: Path
) -> None:
    """The dial's Originate sent again while its legs are up (the first waits for an adviser):
    no channel, OriginateResponse Failure, Reason 0, Uniqueid the ChannelId, as captured."""
    body = section("a ChannelId still in use")
    want = response(captured(body))
    sent = action(body).replace(b"CR_CB_QUEUE=council-cbq", f"CR_CB_QUEUE={QUEUE}".encode())
    events: list[Event] = []

    async def until(name: str, reader: asyncio.StreamReader) -> None:
        while not any(e.get("Event") == name for e in events):
            events.append(dict(parse_message(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10))))

    async with (
        emulated_centre(redis_server.url, keys, open_all_hours_plan(tmp_path)) as rig,
        session(rig) as (reader, writer),
    ):
        writer.write(sent)  # every adviser busy: its ;2 leg waits in the queue
        await until("QueueCallerJoin", reader)
        writer.write(sent)
        await until("OriginateResponse", reader)
    assert response([e for e in events if "Event" in e]) == want
    assert dict(want)["Uniqueid"] == "cb-0123456789abcdef0123-1-1"
    assert [e.get("Event") for e in events].count("Newchannel") == 2  # the first dial's legs only
    assert rig.fake.originator.log == [
        "ERROR channel.c: Channel Unique ID 'cb-0123456789abcdef0123-1-1' already in use"
    ]
