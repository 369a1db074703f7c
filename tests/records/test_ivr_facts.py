"""Records from the controller's IVR facts, alone and with AMI events as Asterisk sent them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from records.builder import RecordBuilder, caller_hash
from records.facts import (
    SURVEY_KEYS,
    AnnouncementPlayed,
    CallArrived,
    DispositionGiven,
    InvalidKey,
    IvrAbandoned,
    KeyPressed,
    MenuEntered,
    MenuTimeout,
    PaymentHandedOff,
    PaymentStarted,
    RouteDecided,
    SurveyAnswered,
    decision_kind,
    route_decided,
)
from routing.core.decide import Call, CompiledPlan, decide
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE, LiveState, QueueSnapshot, Toggle, Toggles
from routing.plan_file import load_plan
from tests.records.support import CALLER, CARD_LIKE, CENTRE, KEY, all_due, ami_events, builder, epoch_of

EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"
LONDON_OPEN = datetime.fromisoformat("2026-11-24T10:00:00+00:00")
DIAL_FORMS = "dial_pjsip_trunk_forms.txt"
CARD = "4111111111111111"


def call_events(name: str, linkedid: str) -> list[tuple[float, dict[str, str]]]:
    """The events of one call of a transcript, with their Unix receive times."""
    events = ami_events(name)
    epoch = epoch_of(events)
    return [(epoch + e.seconds, e.headers) for e in events if e.headers.get("Linkedid") == linkedid]


def test_a_payment_call_keeps_the_ivr_path_and_no_digits() -> None:
    """Menus, keys, an invalid key, a silence, announcements, the decision and the payment hand-off
    (the provider dialled through the trunk: call 2 of the trunk capture); what the caller types at the
    payment prompt never reaches the record, even when a faulty reporter sends it as keys."""
    linkedid = "1795963257.22"
    ami = call_events(DIAL_FORMS, linkedid)
    t0 = ami[0][0]
    b = builder(grace_s=1.0)
    b.feed_ami(ami[0][1], t0)  # Newchannel of the caller
    facts = [
        CallArrived(linkedid, t0 + 0.01, dialled="+441632960001", caller=CALLER, tenant="harborough"),
        AnnouncementPlayed(linkedid, t0 + 0.02, "harborough/bins-strike", skipped=True),
        MenuEntered(linkedid, t0 + 0.03, "main"),
        InvalidKey(linkedid, t0 + 0.04, "main"),
        MenuTimeout(linkedid, t0 + 0.05, "main"),
        KeyPressed(linkedid, t0 + 0.06, "main", "3"),
        MenuEntered(linkedid, t0 + 0.07, "payments"),
        KeyPressed(linkedid, t0 + 0.08, "payments", "1"),
        RouteDecided(linkedid, t0 + 0.09, "open", "payment council_tax", ("menu payments: key 1",)),
        PaymentStarted(linkedid, t0 + 0.10, "council_tax"),
        *[KeyPressed(linkedid, t0 + 0.11, "payments", digit) for digit in CARD],
        PaymentHandedOff(linkedid, t0 + 0.12, "council_tax", reference_captured=True, handed_off=True),
    ]
    for fact in facts:
        b.feed_ivr(fact)
    for at, headers in ami[1:]:
        b.feed_ami(headers, at)
    [record] = all_due(b, ami[-1][0] + 1.0)
    assert record["tenant"] == "harborough"
    assert record["dialled"] == "+441632960001"
    ivr = record["ivr"]
    assert [(m["menu"], m["keys"]) for m in ivr["menus"]] == [("main", ["3"]), ("payments", ["1"])]
    assert (ivr["invalid"], ivr["timeouts"]) == (1, 1)
    assert ivr["announcements"] == [{"prompt": "harborough/bins-strike", "skipped": True}]
    assert ivr["abandoned"] is False
    assert record["decisions"][0]["kind"] == "open"
    assert record["decisions"][0]["reasons"] == ["menu payments: key 1"]
    assert record["payment"] == {"line": "council_tax", "reference_captured": True, "handed_off": True}
    assert record["hangup"]["by"] == "centre"
    text = str(record)
    assert CARD_LIKE.search(text) is None
    assert "4111" not in text


def test_a_call_that_crosses_to_the_partner_keeps_one_record_with_the_hop() -> None:
    """Overflow to the partner centre, dialled through the trunk (call 4 of the trunk capture): one
    record, the hop answered, handled by the partner; the partner's side hung up first."""
    linkedid = "1795963264.26"
    ami = call_events(DIAL_FORMS, linkedid)
    t0 = ami[0][0]
    b = builder(grace_s=1.0)
    b.feed_ivr(CallArrived(linkedid, t0, dialled="+441632960100", caller=CALLER, tenant="charnwood"))
    b.feed_ivr(
        RouteDecided(
            linkedid,
            t0 + 0.001,
            "overflow",
            "external centre harborough",
            ("queue general (cbc-general): 12 waiting", "-> overflow to external centre harborough"),
            partner_centre="harborough",
        )
    )
    for at, headers in ami:
        b.feed_ami(headers, at)
    [record] = all_due(b, ami[-1][0] + 1.0)
    [hop] = record["hops"]
    assert (hop["centre"], hop["answered"]) == ("harborough", True)
    assert record["centre"] == "harborough"
    assert record["answered"]["by"] == {"centre": "harborough", "id": None, "name": None}
    assert record["decisions"][0]["kind"] == "overflow"
    assert record["hangup"]["by"] == "adviser"  # the partner's side ended the call
    answer = next(h for _, h in ami if h["Event"] == "DialEnd" and h["DialStatus"] == "ANSWER")
    leave = next(h for _, h in ami if h["Event"] == "BridgeLeave" and h["Uniqueid"] == linkedid)
    # from the answer to the caller leaving the bridge, on Asterisk's clock
    assert record["talk_s"] == round(float(leave["Timestamp"]) - float(answer["Timestamp"]), 3)
    assert 1.9 < record["talk_s"] < 2.1


def test_the_caller_number_and_long_digit_runs_are_masked_outside_the_caller_field() -> None:
    b = builder(grace_s=0.0)
    b.feed_ivr(CallArrived("100.1", 100.0, dialled="+441632960001", caller=CALLER, tenant="harborough"))
    b.feed_ivr(RouteDecided("100.1", 100.1, "open", "queue revenues", (f"caller {CALLER}", f"ref {CARD}")))
    b.feed_ivr(IvrAbandoned("100.1", 101.0, "main"))
    [record] = all_due(b, 101.0)
    assert record["caller"]["number"] == CALLER
    assert record["decisions"][0]["reasons"] == ["caller ********123", "ref [digits removed]"]


def test_a_caller_who_hangs_up_in_the_ivr() -> None:
    """The controller's fact ends the call; its AMI Hangup, within the grace, adds the cause."""
    b = builder(grace_s=2.0)
    b.feed_ivr(CallArrived("200.5", 200.0, dialled="+441632960001", caller="anonymous", tenant="harborough"))
    b.feed_ivr(MenuEntered("200.5", 200.5, "main"))
    b.feed_ivr(IvrAbandoned("200.5", 203.0, "main"))
    assert all_due(b, 204.9) == []
    [record] = all_due(b, 205.0)
    assert record["ivr"]["abandoned"] is True
    assert record["ivr"]["abandoned_in"] == "main"
    assert record["caller"] == {"number": None, "hash": None, "withheld": True}
    assert record["queues"] == []
    assert record["hangup"] is None


def test_survey_scores_and_dispositions_with_the_tenants_avoidable_reasons() -> None:
    reasons = {"harborough": ("chasing-progress", "wrong-number")}
    b = builder(grace_s=0.0, avoidable_reasons=lambda tenant: reasons.get(tenant or "", ()))
    for call_id, reason in (("1.1", "chasing-progress"), ("1.2", "weather")):
        b.feed_ivr(CallArrived(call_id, 10.0, dialled="+441632960001", caller=CALLER, tenant="harborough"))
        b.feed_ivr(SurveyAnswered(call_id, 11.0, SURVEY_KEYS["3"]))
        b.feed_ivr(DispositionGiven(call_id, 12.0, "avoidable", reason=reason, by="PJSIP/agent1"))
        b.feed_ivr(IvrAbandoned(call_id, 13.0, "survey"))
    records = {r["id"]: r for r in all_due(b, 13.0)}
    assert records["1.1"]["survey"] == -1
    assert records["1.1"]["disposition"]["reason"] == "chasing-progress"
    assert records["1.1"]["problems"] == []
    assert records["1.2"]["disposition"]["kind"] == "avoidable"
    assert records["1.2"]["disposition"]["reason"] is None
    assert records["1.2"]["problems"] == ["an avoidable contact reason that is not in the tenant's list"]
    assert [SURVEY_KEYS[k] for k in "123"] == [1, 0, -1]


def test_versions_only_increase_and_only_on_a_change() -> None:
    b = builder(grace_s=1.0)
    b.feed_ivr(CallArrived("5.5", 0.0, dialled="+441632960001", caller=CALLER, tenant="harborough"))
    b.feed_ivr(IvrAbandoned("5.5", 1.0, "main"))
    versions = [r["version"] for r in all_due(b, 2.0)]
    b.feed_ivr(DispositionGiven("5.5", 10.0, "complaint"))
    versions += [r["version"] for r in all_due(b, 11.0)]
    b.feed_ivr(DispositionGiven("5.5", 12.0, "complaint"))  # the same again: no new version
    versions += [r["version"] for r in all_due(b, 13.0)]
    b.feed_ivr(DispositionGiven("5.5", 20.0, "back_office", team="council-tax"))
    versions += [r["version"] for r in all_due(b, 21.0)]
    assert versions == [1, 2, 3]


def test_a_call_whose_end_is_never_seen_is_closed_by_the_age_limit_then_forgotten() -> None:
    b = builder(grace_s=1.0, max_call_s=3600.0, keep_s=60.0)
    b.feed_ivr(CallArrived("7.7", 0.0, dialled="+441632960001", caller=CALLER, tenant="harborough"))
    assert all_due(b, 3599.0) == []
    assert all_due(b, 3600.0) == []  # closed now, due after the grace
    [record] = all_due(b, 3601.0)
    assert record["complete"] is False
    assert len(b) == 1
    assert all_due(b, 3661.0) == []
    assert len(b) == 0


def test_a_call_that_is_not_a_contact_makes_no_record() -> None:
    """An adviser's own call (channels only: no tenant, no queue, no IVR fact) is dropped when it ends."""
    b = builder(grace_s=0.0)
    channel = {
        "Channel": "PJSIP/agent1-00000001",
        "Uniqueid": "9.9",
        "Linkedid": "9.9",
        "CallerIDNum": "2101",
    }
    b.feed_ami({"Event": "Newchannel", **channel}, 1.0)
    b.feed_ami({"Event": "Hangup", **channel, "Cause": "16", "Cause-txt": "Normal Clearing"}, 2.0)
    assert all_due(b, 5.0) == []
    assert len(b) == 0


def test_events_of_a_leg_whose_call_was_never_seen_are_ignored() -> None:
    b = builder()
    b.feed_ami({"Event": "Hangup", "Channel": "PJSIP/agent1-2", "Uniqueid": "3.4", "Linkedid": "3.3"}, 1.0)
    b.feed_ami({"Event": "UserEvent", "UserEvent": "CallDisposition", "Disposition": "resolved"}, 1.0)
    assert len(b) == 0


def test_the_caller_hash_is_keyed_and_does_not_depend_on_the_number_format() -> None:
    assert caller_hash(KEY, "01632 960123") == caller_hash(KEY, "+441632960123") == caller_hash(KEY, CALLER)
    assert caller_hash(KEY, CALLER) != caller_hash(KEY[::-1], CALLER)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        RecordBuilder(CENTRE, b"short")


def _example() -> CompiledPlan:
    result = load_plan(EXAMPLE)
    assert result.plan is not None
    return CompiledPlan.compile(result.plan)


def test_the_kind_of_a_decision_from_the_engine() -> None:
    """open / closed / holiday / emergency / overflow, from real decisions of the example plan."""
    plan = _example()
    at = LONDON_OPEN
    good_friday = datetime.fromisoformat("2026-04-03T10:00:00+01:00")
    evening = datetime.fromisoformat("2026-11-24T18:30:00+00:00")
    emergency = Toggles(
        emergency={"harborough": Toggle(reason="flood", by="sam", expires_at=at + timedelta(hours=1))}
    )
    busy = LiveState(
        queues={"cbc-general": QueueSnapshot("cbc-general", 12, 30, 4, 0, at)},
        partners={"harborough": QueueSnapshot("harborough", 0, 0, 4, 2, at)},
    )
    kinds = [
        decision_kind(decide(Call("01632 960001"), plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, at)),
        decision_kind(decide(Call("01632 960001"), plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, evening)),
        decision_kind(decide(Call("01632 960001"), plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, good_friday)),
        decision_kind(decide(Call("01632 960001"), plan, UNKNOWN_LIVE_STATE, emergency, at)),
        decision_kind(decide(Call("01632 960100", digits=("1",)), plan, busy, NO_TOGGLES, at)),
        decision_kind(decide(Call("01632 000000"), plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, at)),
    ]
    assert kinds == ["open", "closed", "holiday", "emergency", "overflow", "unknown_number"]
    overflow = decide(Call("01632 960100", digits=("1",)), plan, busy, NO_TOGGLES, at)
    fact = route_decided("1.1", 1.0, overflow, "external centre harborough")
    assert (fact.kind, fact.partner_centre) == ("overflow", "harborough")
    assert fact.reasons == overflow.reasons


def test_a_call_another_centre_sent_here_says_so() -> None:
    """At the partner centre, the hop in is marked so that the contact is counted once."""
    b = builder(grace_s=0.0)
    arrived = CallArrived(
        "8.1", 1.0, "+441632960001", CALLER, "harborough", from_centre="charnwood", from_call="1795963264.26"
    )
    b.feed_ivr(arrived)
    b.feed_ivr(IvrAbandoned("8.1", 2.0, "main"))
    [record] = all_due(b, 2.0)
    assert record["hop_from"] == {"centre": "charnwood", "id": "1795963264.26"}


def test_asterisk_clock_ahead_of_ours_does_not_delay_a_record() -> None:
    """Times in the record are Asterisk's (Timestamp); the grace runs on the builder's clock."""
    events = ami_events("ami_hold_reinvite.txt")
    epoch = epoch_of(events)
    b = builder(grace_s=2.0)
    for event in events:
        ahead = dict(event.headers)
        if "Timestamp" in ahead:
            ahead["Timestamp"] = str(float(ahead["Timestamp"]) + 600.0)
        b.feed_ami(ahead, epoch + event.seconds)
    [record] = all_due(b, epoch + events[-1].seconds + 2.0)
    assert record["hold_s"] == 4.008


def test_bad_input_is_refused_or_bounded_and_loses_the_call_nothing() -> None:
    """Malformed facts are refused before they touch a call; odd AMI values are bounded; the record
    still validates."""
    b = builder(grace_s=0.0)
    with pytest.raises(ValueError, match="score is 1, 0 or -1"):
        b.feed_ivr(SurveyAnswered("4.4", 1.0, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown kind"):
        b.feed_ivr(RouteDecided("4.4", 1.0, "sunny", "queue x", ()))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Linkedid"):
        b.feed_ivr(MenuEntered("not-a-linkedid", 1.0, "main"))
    with pytest.raises(ValueError, match="finite"):
        b.feed_ivr(MenuEntered("4.4", float("nan"), "main"))
    assert len(b) == 0
    channel = {"Channel": "PJSIP/sipp-1", "Uniqueid": "4.4", "Linkedid": "4.4"}
    long_number = CALLER + " ext" * 200
    b.feed_ami({"Event": "Newchannel", **channel, "CallerIDNum": long_number, "Timestamp": "inf"}, 1.0)
    b.feed_ami({"Event": "QueueCallerJoin", **channel, "Queue": "q" * 1000, "Position": "-3"}, 2.0)
    b.feed_ami({"Event": "QueueCallerAbandon", **channel, "HoldTime": "-7"}, 3.0)
    b.feed_ami({"Event": "Hangup", **channel, "Cause": "x"}, 4.0)
    b.feed_ami({"Event": "Hangup", "Channel": "y", "Uniqueid": "z", "Linkedid": "z"}, 4.0)
    [record] = all_due(b, 4.0)
    assert len(record["caller"]["number"]) == 40
    assert record["queues"][0]["position"] is None
    assert record["queues"][0]["wait_s"] == 0.0
    assert len(record["queues"][0]["queue"]) == 200
    assert record["hangup"]["cause"] == 0
