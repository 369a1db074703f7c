"""A call crossing to the partner centre keeps one contact record, with the hop in it.

Two centres, each a real controller (FastAGI on loopback) with its own plan and record builder,
and the emulated Asterisk running the shipped dialplan. Charnwood (centre A) overflows a caller
to Harborough's team (centre B): A's dialplan dials B's number with the partner headers
(``callrouter-headers,partner``); B's call comes in with those headers, its ``callrouter-inbound``
reads them (as the Asterisk 22.10.1 capture ``agi_inbound_partner_headers.txt`` shows it does)
and B's record names A's centre and A's Linkedid in ``hop_from``. A call without the headers has
``hop_from: null``; a malformed header is refused, logged bounded and masked, and never reaches
the record.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callrouter.logs import configure_logging
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import CallRecord, place_call
from emulator.pbx import uri_encode as uri_encoded
from ivr import channel_vars as cv
from ivr.controller import Controller, NoLiveState, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from records.builder import RecordBuilder
from records.model import ContactRecord, HopFrom
from routing.core.decide import CompiledPlan
from routing.core.live import NO_TOGGLES, LiveState, QueueSnapshot, Toggles
from tests.controller.conftest import EXAMPLE, TUESDAY_10AM
from tests.records.support import KEY, checked

CHARNWOOD = "01632960100"  # Charnwood's council number, answered at centre A
PARTNER = "+441632960400"  # Harborough's team (centre B), as A's plan dials it


class Busy:
    """A's live state: nobody logged in to Charnwood's queue, Harborough's team publishing two
    free advisers: the overflow policy sends the caller to the partner centre."""

    def read_now(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        observed = now.astimezone(UTC)
        return (
            LiveState(
                queues={"cbc-general": QueueSnapshot("cbc-general", 1, 0, 0, 0, observed)},
                partners={"harborough": QueueSnapshot("hdc-team", 0, 0, 2, 2, observed)},
            ),
            NO_TOGGLES,
        )

    async def read(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        return self.read_now(plan, tenant, now)

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None:
        return None


@dataclass
class Centre:
    name: str
    controller: Controller
    server: FastAgiServer
    builder: RecordBuilder

    async def call(self, script: CallerScript, headers: list[tuple[str, str]] | None = None) -> CallRecord:
        return await place_call("127.0.0.1", self.server.port, script, headers=headers or [], deadline=10)

    def records(self) -> dict[str, ContactRecord]:
        return {r.id: r for r in self.builder.flush(time.time() + 3600)}


async def start_centre(name: str, plan: Path, live: Busy | None = None) -> Centre:
    builder = RecordBuilder(name, KEY)
    holder = PlanHolder.load(plan)
    controller = Controller(holder, live or NoLiveState(), clock=lambda: TUESDAY_10AM, facts=builder.feed_ivr)
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    await server.start()
    return Centre(name, controller, server, builder)


def as_centre_b(plan_text: str) -> str:
    """Centre B's plan: the same partnership plan from its own side: it is "harborough", and it
    answers its team's number in Charnwood's name."""
    return (
        plan_text.replace("centre: charnwood\n", "centre: harborough\n", 1)
        .replace('numbers: ["01632 960100"]', 'numbers: ["01632 960100", "01632 960400"]')
        .replace('centre: harborough, label: "Harborough customer services team"', "centre: charnwood")
    )


@pytest.fixture
async def centres(tmp_path: Path) -> AsyncIterator[tuple[Centre, Centre]]:
    plan_b = tmp_path / "plan-b.yaml"
    plan_b.write_text(as_centre_b(EXAMPLE.read_text()))
    a = await start_centre("charnwood", EXAMPLE, Busy())
    b = await start_centre("harborough", plan_b)
    try:
        yield a, b
    finally:
        await a.server.drain(0)
        await b.server.drain(0)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(json=True, level="info", stream=stream)
    yield stream
    configure_logging(json=True, level="warning", stream=io.StringIO())


async def test_the_partner_centre_records_where_the_call_came_from(centres: tuple[Centre, Centre]) -> None:
    """A overflows the caller to B: B's record has hop_from = A's centre and A's Linkedid (the
    id of A's record), and A's record has the hop out. Both records pass the schema."""
    a, b = centres
    script = CallerScript(dial=CHARNWOOD, caller="01632960123", steps=[PressAfterPrompt("1")],
                          uniqueid="1795970000.7")  # fmt: skip
    at_a = await a.call(script)
    assert at_a.ended == f"dial {PARTNER}"
    [attempt] = at_a.dials
    assert attempt.invite is not None
    sent = dict(attempt.invite.headers)
    assert sent[cv.HEADER_CENTRE] == "charnwood"
    assert sent[cv.HEADER_LINKEDID] == "1795970000.7"

    # B's Asterisk receives that INVITE: the called number and every header it carried
    at_b = await b.call(
        CallerScript(dial=attempt.invite.user, caller="01632960123", uniqueid="1795980000.3"),
        list(attempt.invite.headers),
    )
    assert at_b.summary().startswith("route (open)")

    [record_a] = a.records().values()
    record_b = b.records()["1795980000.3"]
    assert record_b.hop_from == HopFrom(centre="charnwood", id=record_a.id)
    assert [hop.centre for hop in record_a.hops] == ["harborough"]
    assert record_a.hop_from is None
    assert checked(record_b)["hop_from"] == {"centre": "charnwood", "id": "1795970000.7"}
    checked(record_a)


async def test_ids_of_asterisks_with_a_system_name_cross_too(centres: tuple[Centre, Centre]) -> None:
    """Both Asterisks set ``systemname`` (asterisk.conf): A's Linkedid ``<A's name>-...`` goes
    out in the header, B takes it into ``hop_from``, and B's own record has B's named id. The two
    ids' ``<seconds>.<sequence>`` are the same: the names keep the records apart."""
    a, b = centres
    at_a = await a.call(CallerScript(dial=CHARNWOOD, caller="01632960123", steps=[PressAfterPrompt("1")],
                                     uniqueid="ast-charnwood.example-1795970000.7"))  # fmt: skip
    [attempt] = at_a.dials
    assert attempt.invite is not None
    assert dict(attempt.invite.headers)[cv.HEADER_LINKEDID] == "ast-charnwood.example-1795970000.7"
    at_b = await b.call(
        CallerScript(dial=attempt.invite.user, caller="01632960123", uniqueid="ast_harborough-1795970000.7"),
        list(attempt.invite.headers),
    )
    assert at_b.summary().startswith("route (open)")
    record_b = b.records()["ast_harborough-1795970000.7"]
    sent_id = "ast-charnwood.example-1795970000.7"
    assert checked(record_b)["hop_from"] == {"centre": "charnwood", "id": sent_id}
    assert [hop.centre for hop in a.records()[sent_id].hops] == ["harborough"]


async def test_a_call_without_the_headers_has_no_hop(centres: tuple[Centre, Centre]) -> None:
    _, b = centres
    at_b = await b.call(CallerScript(dial=PARTNER, caller="01632960123", uniqueid="1795980000.4"))
    assert at_b.summary().startswith("route (open)")
    record = b.records()["1795980000.4"]
    assert record.hop_from is None
    assert checked(record)["hop_from"] is None


HOSTILE_LINKEDID = '1795970000.7,"evil|x\\n' + "4929123456781234" * 8  # a card-like run, 150 chars


@pytest.mark.parametrize(
    ("headers", "expected", "refused"),
    [
        # the Linkedid is refused, the centre (a known partner) is kept
        ([(cv.HEADER_CENTRE, "charnwood"), (cv.HEADER_LINKEDID, HOSTILE_LINKEDID)],
         HopFrom(centre="charnwood", id=None), [(cv.HEADER_LINKEDID, "too_long")]),
        ([(cv.HEADER_CENTRE, "charnwood"), (cv.HEADER_LINKEDID, "1795970000.7;drop")],
         HopFrom(centre="charnwood", id=None), [(cv.HEADER_LINKEDID, "malformed")]),
        # a system name is letters, digits, '.', '-' and '_' (routing.core.linkedid)
        ([(cv.HEADER_CENTRE, "charnwood"), (cv.HEADER_LINKEDID, "ast 1-1795970000.7")],
         HopFrom(centre="charnwood", id=None), [(cv.HEADER_LINKEDID, "malformed")]),
        ([(cv.HEADER_CENTRE, "charnwood"), (cv.HEADER_LINKEDID, "../x-1795970000.7")],
         HopFrom(centre="charnwood", id=None), [(cv.HEADER_LINKEDID, "malformed")]),
        ([(cv.HEADER_CENTRE, "charnwood"), (cv.HEADER_LINKEDID, "a" * 90 + "-1795970000.7")],
         HopFrom(centre="charnwood", id=None), [(cv.HEADER_LINKEDID, "too_long")]),
        # no hop without a known partner centre
        ([(cv.HEADER_CENTRE, 'charnwood",x'), (cv.HEADER_LINKEDID, "1795970000.7")],
         None, [(cv.HEADER_CENTRE, "malformed")]),
        ([(cv.HEADER_CENTRE, "elsewhere"), (cv.HEADER_LINKEDID, "1795970000.7")],
         None, [(cv.HEADER_CENTRE, "unknown_centre")]),
        ([(cv.HEADER_CENTRE, "harborough"), (cv.HEADER_LINKEDID, "1795970000.7")],
         None, [(cv.HEADER_CENTRE, "own_centre")]),
        ([(cv.HEADER_LINKEDID, "1795970000.7")], None, [(cv.HEADER_CENTRE, "missing")]),
    ],
    ids=["long-linkedid", "bad-linkedid", "named-space", "named-path", "named-long", "bad-centre",
         "unknown-centre", "own-centre", "no-centre"],
)  # fmt: skip
async def test_a_malformed_header_is_refused_and_logged_masked(
    centres: tuple[Centre, Centre],
    log_lines: io.StringIO,
    headers: list[tuple[str, str]],
    expected: HopFrom | None,
    refused: list[tuple[str, str]],
) -> None:
    """The call is routed as any other; each refused value gets one warning with its reason,
    length and a short masked sample, never the value itself."""
    _, b = centres
    at_b = await b.call(CallerScript(dial=PARTNER, caller="01632960123", uniqueid="1795980000.5"), headers)
    assert at_b.summary().startswith("route (open)")
    record = b.records()["1795980000.5"]
    assert record.hop_from == expected
    checked(record)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.strip()]
    warnings = [line for line in lines if line["event"] == "call.hop_header_refused"]
    assert [(w["header"], w["reason"]) for w in warnings] == refused
    text = log_lines.getvalue()
    assert "49291234" not in text  # no digits of the card-like run, no long value
    assert "56781234" not in text
    assert all(len(w["sample"]) <= 24 and not re.search(r"[0-9]{4}", w["sample"]) for w in warnings)
    assert [w["length"] for w in warnings] == [len(uri_encoded(dict(headers).get(h, ""))) for h, _ in refused]
