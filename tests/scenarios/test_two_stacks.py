"""Two contact centres, each a complete stack of its own, backing each other up at peak.

The centres and their plans: ``tests/support/partnership.py``. Each centre: its own
redis-server, fake AMI with its queues, ``callrouter serve``, ``callrouter web`` (HTTPS with a
certificate made here, the partner exchange signed with the partnership's secret), ``callrouter
records deliver``, and the emulated Asterisk running the shipped dialplan
(``tests/support/stacks.py``). One fake CRM per council (real aiohttp servers). A call A
overflows arrives at B's Asterisk as the INVITE A's dialplan sent: B's number for Charnwood's
callers, with the partner headers.

(a) a peak at A overflows to B while B publishes a free adviser; (b) B full, then B's web
service stopped, and B's serve stopped: no overflow to B (once its snapshot has aged out);
(c) B's peak overflows to A;
(d) at the partner the caller hears the dialled council's greeting and menu, in its language,
and waits in the queue kept for that council's callers: the same prompts as at home; (e) every
call's records reach the dialled council's CRM once each, schema-valid, the partner's record
naming the record it continues (``hop_from``).

Figures (printed, ``pytest -s``): from A's peak to the first overflowed call, and the age of B's
snapshot in A's Redis around each overflow decision.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from emulator.agi import CallerScript
from emulator.crm import FakeCrm
from emulator.dialplan import CallRecord
from ivr import channel_vars as cv
from ivr.contract import unpack
from records.model import ContactRecord, HopFrom
from tests.ami.helpers import wait_until
from tests.records.conftest import SECRET
from tests.records.support import checked
from tests.support.partnership import (
    CHARNWOOD_LINE,
    PEAK,
    TEAM,
    TO_A,
    TO_B,
    A,
    B,
    charnwood_caller,
    harborough_caller,
    partnership,
)
from tests.support.serve_process import log_events, stop_processes
from tests.support.stacks import STALE_S, Stack, partner_invite, running_stacks, until_snapshot


@dataclass
class Rig:
    a: Stack
    b: Stack
    crm: dict[str, FakeCrm]  # council -> its CRM
    expected: dict[str, set[str]] = field(default_factory=lambda: {A: set(), B: set()})  # council -> ids
    ages: list[float] = field(default_factory=list)  # B's snapshot age at A around overflow decisions

    def expect(self, council: str, *records: CallRecord) -> None:
        self.expected[council].update(r.sessions[0].uniqueid for r in records)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    crms = {council: FakeCrm(SECRET) for council in (A, B)}
    for crm in crms.values():
        await crm.start()
    urls = {council: crm.url for council, crm in crms.items()}
    try:
        async with running_stacks(partnership(tmp_path, urls), tmp_path) as (a, b):
            yield Rig(a, b, crms)
    finally:
        for crm in crms.values():
            await crm.stop()


def branding(record: CallRecord) -> tuple[str, str, str]:
    """The council, prompt set and language the controller set for the call (CR_ROUTE)."""
    route = unpack(record.variables[cv.ROUTE])
    return route[cv.TENANT], route[cv.PROMPTS], route[cv.LANGUAGE]


def prompts(record: CallRecord) -> list[str]:
    return [p for session in record.sessions for p in session.prompts]


async def snapshot_age(centre: Stack, partner: str) -> float:
    snap = await centre.partner_snapshot(partner)
    assert snap is not None
    return (datetime.now(UTC) - snap.observed_at).total_seconds()


async def overflows_within(
    rig: Rig, centre: Stack, council: str, script: Callable[[int], CallerScript], target: str
) -> CallRecord:
    """Calls to ``council``'s line at ``centre`` one after another until one is dialled to
    ``target`` (within 10 s; each call's record expected at ``council``'s CRM); the age of the
    partner's snapshot in ``centre``'s Redis just before that call is kept in ``rig.ages``."""
    started = time.monotonic()
    n = 0
    while True:
        n += 1
        age = await snapshot_age(centre, rig.b.name if centre is rig.a else rig.a.name)
        record = await centre.call(script(n))
        rig.expect(council, record)
        if record.ended == f"dial {target}":
            rig.ages.append(age)
            return record
        assert time.monotonic() - started < 10, f"no overflow within 10 s: {record.summary()}"
        await asyncio.sleep(0.1)


async def stays_within(
    rig: Rig, centre: Stack, council: str, script: Callable[[int], CallerScript], queue: str
) -> CallRecord:
    """Calls to ``council``'s line at ``centre`` one after another until one waits in ``queue``
    at ``centre`` (within 10 s: the controller's copy of the partner's state catches up), and
    then the next two too (each call's record expected at ``council``'s CRM)."""
    started = time.monotonic()
    n = 0
    while True:
        n += 1
        record = await centre.call(script(n))
        rig.expect(council, record)
        if f"queue {queue} (continue)" in record.summary():
            break
        assert time.monotonic() - started < 10, f"still overflowing after 10 s: {record.summary()}"
        await asyncio.sleep(0.1)
    for m in (n + 1, n + 2):
        after = await centre.call(script(m))
        rig.expect(council, after)
        assert f"queue {queue} (continue)" in after.summary(), after.summary()
    return record


async def test_two_centres_back_each_other_up(rig: Rig) -> None:
    a, b = rig.a, rig.b
    # At A one adviser for Charnwood's callers, one for Harborough's; at B two free advisers in
    # its team for Charnwood's callers, nobody in Harborough's own queue (partnership()).
    await until_snapshot(a, B, lambda s: s is not None and s.available == 2, 10)

    # Before the peak: Charnwood's caller is answered at A.
    home = await a.call(charnwood_caller(0))
    assert home.summary() == "route (open) -> menu main -> queue cbc-general (continue) -> answered"
    rig.expect(A, home)

    # (a) The peak: ten callers waiting at A. Calls overflow to B while B has room.
    peak_at = time.monotonic()
    for _ in range(PEAK):
        a.fake.caller_joins("cbc-general")
    sent = await overflows_within(rig, a, A, charnwood_caller, TO_B)
    first_overflow_s = time.monotonic() - peak_at
    headers = dict(partner_invite(sent).headers)
    assert headers[cv.HEADER_TENANT] == A
    assert headers[cv.HEADER_DIALLED] == CHARNWOOD_LINE
    assert headers[cv.HEADER_CENTRE] == A
    assert headers[cv.HEADER_LINKEDID] == sent.sessions[0].uniqueid

    # (d) B answers it in Charnwood's name: greeting, menu, language and the team kept for it.
    there = await b.receive(sent, charnwood_caller(0))
    assert there.summary() == "route (open) -> menu main -> queue hdc-team (continue) -> answered"
    assert branding(there) == branding(home) == (A, "charnwood", "cy")
    assert prompts(there) == prompts(home)  # what the caller hears at B is what A plays
    assert prompts(there)[:2] == ["charnwood/welcome", "charnwood/main-menu"]
    rig.expect(A, there)

    # (b) B full: its team busy. A's next peak caller waits at A.
    for interface in TEAM:
        b.fake.set_member_status(interface, 2, in_call=True)
    await until_snapshot(a, B, lambda s: s is not None and s.available == 0, 10)
    await stays_within(rig, a, A, charnwood_caller, "cbc-general")
    # B free again: overflow again; then B's web service stops: none once its snapshot is gone.
    for interface in TEAM:
        b.fake.set_member_status(interface, 1, in_call=False)
    await until_snapshot(a, B, lambda s: s is not None and s.available == 2, 10)
    again = await overflows_within(rig, a, A, charnwood_caller, TO_B)
    rig.expect(A, await b.receive(again, charnwood_caller(0)))
    await b.stop_web()
    silent_s = await until_snapshot(a, B, lambda s: s is None, STALE_S + 5)
    await stays_within(rig, a, A, charnwood_caller, "cbc-general")

    # (c) B's web service back; B's peak: nobody free in Harborough's queue at B, callers
    # waiting; A has room.
    await b.start_web()
    await until_snapshot(b, A, lambda s: s is not None and s.available >= 1, 10)
    for _ in range(PEAK):
        b.fake.caller_joins("hdc-local")
    back = await overflows_within(rig, b, B, harborough_caller, TO_A)
    at_a = await a.receive(back, harborough_caller(0))
    assert at_a.summary() == (  # Harborough's callers are offered its survey at A
        "route (open) -> menu main -> queue hdc-revenues (continue) -> answered, survey not answered"
    )
    assert at_a.tenant == B
    assert "harborough/welcome" in prompts(at_a)
    rig.expect(B, at_a)

    # B's serve stops (SIGTERM: it drains and flushes its records): B publishes nothing more,
    # so A's copy of B's snapshot ages out and A's peak callers stay at A.
    await until_snapshot(a, B, lambda s: s is not None and s.available == 2, 10)
    stopped_at = time.monotonic()
    stopping = asyncio.create_task(stop_processes([b.serve]))
    await until_snapshot(a, B, lambda s: s is None, STALE_S + 5)
    serve_gone_s = time.monotonic() - stopped_at
    assert await stopping == [], "B's serve did not stop on SIGTERM"
    await stays_within(rig, a, A, charnwood_caller, "cbc-general")
    # A's sender said once that B was unreachable while B's web service was down, and once
    # that it was back (and the same at the start, if A's web service started before B's).
    said = [(e["event"], e["partner"]) for e in log_events(a.folder / "charnwood-web.log")
            if e.get("event") in ("partners.send_failed", "partners.send_resumed")]  # fmt: skip
    assert said[-2:] == [("partners.send_failed", B), ("partners.send_resumed", B)]
    assert said in (said[-2:], said[-2:] * 2)

    # (e) Every call's records at the dialled council's CRM, once each.
    await wait_until(lambda: all(_ids(rig.crm[c]) >= rig.expected[c] for c in (A, B)), timeout_s=30)
    await asyncio.sleep(1.0)  # nothing more comes
    records: dict[str, ContactRecord] = {}
    for council, crm in rig.crm.items():
        assert crm.duplicates == 0, f"{council}: a version delivered twice"
        assert crm.bad_signatures == 0
        keys = [key for key, _, _ in crm.accepted]
        assert len(keys) == len(set(keys))
        for key in keys:
            record = ContactRecord.model_validate_json(json.dumps(crm.events[key]["data"]))
            checked(record)
            assert record.tenant == council, f"{key} of {record.tenant} at {council}'s CRM"
            records[record.id] = record
    for council, calls in rig.expected.items():
        for call in calls:
            assert records[call].tenant == council
    for home_call, partner_call, source, partner, queue in (
        (sent, there, A, B, "hdc-team"),
        (back, at_a, B, A, "hdc-revenues"),
    ):
        here, far = records[home_call.sessions[0].uniqueid], records[partner_call.sessions[0].uniqueid]
        assert far.hop_from == HopFrom(centre=source, id=here.id)
        assert [hop.centre for hop in here.hops] == [partner]
        assert here.hop_from is None
        assert [q.queue for q in far.queues] == [queue]  # answered at the partner, in its queue
        assert far.answered is not None
        assert far.answered.by.centre == partner
        assert far.caller == here.caller  # the partner's record is of the same caller
        assert far.tenant == here.tenant

    print(
        f"\ntwo stacks: A's peak to the first overflowed call {first_overflow_s:.2f} s; "
        f"B's snapshot age at A's decisions {min(rig.ages):.2f}-{max(rig.ages):.2f} s; "
        f"B's web stopped to its snapshot gone at A {silent_s:.2f} s, B's serve stopped "
        f"{serve_gone_s:.2f} s (stale age {STALE_S:g} s)"
    )


def _ids(crm: FakeCrm) -> set[str]:
    return {record_id for _, record_id, _ in crm.accepted}
