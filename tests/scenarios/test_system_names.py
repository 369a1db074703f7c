"""Two centres whose Asterisks set ``systemname`` (asterisk.conf), as two centres that back each
other up should: every channel's Uniqueid, so every call's Linkedid and contact record id, is
``<systemname>-<seconds>.<sequence>``.

The whole stacks of ``tests/scenarios/test_two_stacks.py`` (per centre: redis-server, fake AMI, ``callrouter
serve``, ``callrouter web``, ``callrouter records deliver``, the emulated Asterisk running the
shipped dialplan; one fake CRM per council), with one difference: both Asterisks started at the
same second and count their channels alike, so their ``<seconds>.<sequence>`` collide. A's first
Charnwood call is answered at A, a later one overflows to B (the partner headers carry A's named
Linkedid) and is B's first call: two records of the same council with the same
``<seconds>.<sequence>``, both at Charnwood's CRM, whose idempotency key is ``<id>:<version>``.
Without the names the second would be dropped there as a repeat of the first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from emulator.crm import FakeCrm
from ivr import channel_vars as cv
from records.model import ContactRecord, HopFrom
from routing.core.linkedid import split_linkedid
from tests.ami.helpers import wait_until
from tests.records.conftest import SECRET
from tests.records.support import checked
from tests.scenarios.test_two_stacks import Rig, overflows_within
from tests.support.partnership import PEAK, TO_B, A, B, charnwood_caller, partnership
from tests.support.stacks import partner_invite, running_stacks, until_snapshot

NAMES = {A: "ast1.charnwood.example", B: "harborough-pbx_2"}  # a host name; '-' and '_' in a name


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    crms = {council: FakeCrm(SECRET) for council in (A, B)}
    for crm in crms.values():
        await crm.start()
    urls = {council: crm.url for council, crm in crms.items()}
    specs = [replace(spec, system_name=NAMES[spec.name]) for spec in partnership(tmp_path, urls)]
    try:
        async with running_stacks(specs, tmp_path) as (a, b):
            yield Rig(a, b, crms)
    finally:
        for crm in crms.values():
            await crm.stop()


async def test_two_centres_with_system_names_keep_colliding_calls_apart(rig: Rig) -> None:
    a, b = rig.a, rig.b
    assert a.epoch == b.epoch  # the same start second at both Asterisks
    await until_snapshot(a, B, lambda s: s is not None and s.available == 2, 10)

    home = await a.call(charnwood_caller(0))  # A's first call, answered at A
    assert home.summary() == "route (open) -> menu main -> queue cbc-general (continue) -> answered"
    assert home.sessions[0].uniqueid == f"{NAMES[A]}-{a.epoch}.1"
    rig.expect(A, home)

    for _ in range(PEAK):
        a.fake.caller_joins("cbc-general")  # the fake AMI's own channels carry A's name too
    assert all(
        c.channel.uniqueid.startswith(f"{NAMES[A]}-") for c in a.fake.model.queues["cbc-general"].waiting
    )
    sent = await overflows_within(rig, a, A, charnwood_caller, TO_B)
    assert dict(partner_invite(sent).headers)[cv.HEADER_LINKEDID] == sent.sessions[0].uniqueid
    there = await b.receive(sent, charnwood_caller(0))  # B's first call
    assert there.summary() == "route (open) -> menu main -> queue hdc-team (continue) -> answered"
    assert there.sessions[0].uniqueid == f"{NAMES[B]}-{b.epoch}.1"
    rig.expect(A, there)

    crm = rig.crm[A]  # Charnwood's CRM: both calls are Charnwood's
    await wait_until(lambda: {rid for _, rid, _ in crm.accepted} >= rig.expected[A], timeout_s=30)
    await asyncio.sleep(1.0)  # nothing more comes
    assert crm.duplicates == 0
    records = {
        rid: ContactRecord.model_validate_json(json.dumps(crm.events[key]["data"]))
        for key, rid, _ in crm.accepted
    }
    for record in records.values():
        checked(record)
    mine, theirs = records[home.sessions[0].uniqueid], records[there.sessions[0].uniqueid]
    # the same <seconds>.<sequence>: two keys at the CRM only because of the names
    assert split_linkedid(mine.id)[1:] == split_linkedid(theirs.id)[1:]  # type: ignore[index]
    assert {f"{mine.id}:1", f"{theirs.id}:1"} <= {key for key, _, _ in crm.accepted}
    assert (mine.tenant, theirs.tenant) == (A, A)
    assert mine.answered is not None
    assert theirs.answered is not None
    assert (mine.answered.by.centre, theirs.answered.by.centre) == (A, B)
    far = records[there.sessions[0].uniqueid]
    assert far.hop_from == HopFrom(centre=A, id=sent.sessions[0].uniqueid)
    assert [hop.centre for hop in records[sent.sessions[0].uniqueid].hops] == [B]
