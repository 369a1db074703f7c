"""A callback's own channels make no contact record: their Uniqueids (the Originate's
``ChannelId``/``OtherChannelId``, ``<callback id>-<dial>-1``/``-2``) are no Asterisk Linkedid, and
every leg of the dial (the adviser's included) carries the ``-1`` leg's as its Linkedid, so the
record builder reads none of their events. The attempts and outcome are the callback's own."""

from __future__ import annotations

import dataclasses
import time

from emulator.ami_model import QueueModel
from emulator.ami_originate import OriginateRequest, hangups, make_legs, newchannels
from emulator.ami_wire import headers_dict
from ivr.controller import PlanHolder
from ivr.dialler import Dial, originate_action
from records.builder import RecordBuilder
from routing.callbacks import StoredCallback, callback_id
from routing.core.plan import CallbackPolicy
from tests.controller.conftest import EXAMPLE

PLAN = PlanHolder.load(EXAMPLE).current.plan


def stored() -> StoredCallback:
    ident = callback_id("1795600000.42")
    fields = {"dials": "1"}
    return StoredCallback(
        ident, "harborough", "revenues", "hdc-revenues", "+441632960123", 1.0, 2.0,
        "1795600000.42", "en", "dialling", 0, 2.0, "", 2.0, fields,
    )  # fmt: skip


def test_every_event_of_a_callback_dial_is_ignored_by_the_record_builder() -> None:
    action = originate_action(Dial(stored(), 1, 1, 60.0), PLAN.tenants["harborough"], CallbackPolicy())
    request = OriginateRequest(
        channel=action["Channel"],
        channel_id=action["ChannelId"],
        other_channel_id=action["OtherChannelId"],
        context=action["Context"],
        exten=action["Exten"],
    )
    model = QueueModel()
    model.add_member("hdc-revenues", "PJSIP/adviser1", "Adviser 1", time.time(), "static")
    legs = make_legs(request, model.next_uniqueid)
    assert (legs.one.uniqueid, legs.two.linkedid) == (action["ChannelId"], action["ChannelId"])
    agent = dataclasses.replace(
        model.new_channel("PJSIP/adviser1", "Adviser", "2101"), linkedid=legs.one.uniqueid
    )
    now = time.time()
    messages = [
        *newchannels(legs),
        *model.join("hdc-revenues", legs.two, now, position=1),
        *model.answer(legs.two.uniqueid, "PJSIP/adviser1", agent, now),
        *model.complete(legs.two.uniqueid, now),
        *hangups(legs, "16", "Normal Clearing"),
    ]
    builder = RecordBuilder("test-centre", b"k" * 32)
    taken = [builder.feed_ami(headers_dict(m), now) for m in messages]
    assert {m[0][1] for m in messages} >= {"Newchannel", "QueueCallerJoin", "AgentConnect", "Hangup"}
    assert taken == [None] * len(messages)
    assert len(builder) == 0
