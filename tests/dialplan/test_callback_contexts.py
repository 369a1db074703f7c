"""The queued-callback contexts of ``dialplans/callrouter.conf`` run by the emulated PBX, against
what Asterisk 22.10.1 did (``dial_pjsip_trunk_forms.txt``; README 6.1 and 2.5):

* the caller is dialled as ``PJSIP/<number>@<trunk>`` (the form that works), presenting the
  council's name and number (``CR_CB_CLI``) in From, not the adviser's extension that the ;1 leg
  carries once the adviser answered (``callback_originate.txt``);
* ``ANSWEREDTIME`` is empty until an answered call ends, then its whole seconds: the capture
  sets it to ``2`` after the trunk's 2 s call and leaves it empty when the dial failed;
* ``CallbackOutcome`` reports DIALSTATUS and ANSWEREDTIME to the dialler; a bad trunk setting
  or number is refused (CHANUNAVAIL) as ``callrouter-outbound`` does;
* on the ``;1`` leg (up since the adviser answered) ANSWEREDTIME counts the caller's ringing too,
  and the talk is the time from its ``DialEnd`` ANSWER to ``CallbackOutcome``
  (``callback_originate.txt``): the emulator plays both at once, on the leg's own clock;
* the adviser leg joins the callback's queue at the position the dialler gives (Queue()'s 9th
  argument, ``apps/app_queue.c``: ``queuename,options,URL,announceoverride,timeout,AGI,gosub,
  rule,position``)."""

from __future__ import annotations

import ast
import re

import pytest

from emulator.ami import FakeAmi
from emulator.ami_wire import Message
from emulator.centre import CallCentre
from emulator.dialplan import DIALPLANS, GLOBALS
from emulator.extensions import Dialplan
from emulator.pbx import Channel, Invite, Pbx, Pjsip
from ivr.dialler import talk_seconds
from routing.core.callback_order import dial_outcome
from tests.dialplan import transcripts as tr

CONF = Dialplan.parse((DIALPLANS / "callrouter.conf").read_text(encoding="utf-8"))
COUNCIL = ("Harborough District Council", "01632960001")


class Events:
    """The PBX's AMI side, kept: user events as (name, headers)."""

    def __init__(self) -> None:
        self.user_events: list[tuple[str, dict[str, str]]] = []

    def channel_created(self, channel: Channel) -> None:
        return None

    def user_event(self, channel: Channel, data: str) -> None:
        name, *body = data.split(",")
        headers = dict(item.split(": ", 1) if ": " in item else (item, "") for item in body)
        self.user_events.append((name, headers))

    def dialled(self, caller: Channel, leg: Channel, dial_string: str, status: str) -> None:
        return None

    def hung_up(self, channel: Channel, cause: int, *, requested: bool) -> None:
        return None


def answeredtime_values() -> list[str]:
    """Every ``VarSet ANSWEREDTIME`` value of the capture, in order."""
    text = tr.transcript_path(tr.TRUNK_FORMS).read_text(encoding="utf-8")
    data = [ast.literal_eval(m.group(1)) for m in re.finditer(r"S->C (b'.*')$", text, re.MULTILINE)]
    values = []
    for i, line in enumerate(data):
        if line == b"Variable: ANSWEREDTIME\r\n":
            values.append(data[i + 1].decode().removeprefix("Value: ").rstrip("\r\n"))
    return values


def test_the_capture_sets_answeredtime_empty_then_the_seconds_talked() -> None:
    """Four dials: the failed form leaves it empty; each answered 2 s call: empty, then 2."""
    assert answeredtime_values() == ["", "", "2", "", "2", "", "2"]


async def run_caller(
    status: str, *, trunk: str = "pstn", number: str = "+441632960123"
) -> tuple[Pbx, Events]:
    events = Events()
    pbx = Pbx(
        CONF,
        {**GLOBALS, "CR_TRUNK": trunk},
        pjsip=Pjsip({"pstn": "sip:127.0.0.1:5090"}),
        far_end=lambda _invite: status,
        events=events,
    )
    # as on Asterisk once the adviser answered: ;1's caller id is the adviser's (its connected
    # line, callback_originate.txt), and CR_CB_CLI carries the council's name and number
    one = pbx.new_channel(
        "Local/s@callrouter-callback-adviser-00000001;1", caller_name="Adviser Two", caller_num="2102"
    )
    for name, value in {
        "CR_CB_ID": "cb-0123456789abcdef0123",
        "CR_CB_DIAL": "2",
        "CR_CB_NUMBER": number,
        "CR_CB_RING_S": "30",
        "CR_CB_CLI": f'"{COUNCIL[0]}" <{COUNCIL[1]}>',
    }.items():
        one.set(name, value)
    await pbx.run(one, "callrouter-callback-caller", "s")
    return pbx, events


@pytest.mark.parametrize(("status", "answered"), [("ANSWER", "2"), ("NOANSWER", ""), ("BUSY", "")])
async def test_the_caller_is_dialled_on_the_trunk_with_the_councils_number_and_the_outcome_reported(
    status: str, answered: str
) -> None:
    pbx, events = await run_caller(status)
    (dial,) = pbx.dials
    assert (dial.data, dial.dial_string) == ("PJSIP/+441632960123@pstn", "+441632960123@pstn")
    assert dial.invite is not None
    assert dial.invite.request_uri == "sip:+441632960123@127.0.0.1:5090"  # as the capture's INVITE
    assert dial.invite.from_ == f'"{COUNCIL[0]}" <sip:{COUNCIL[1]}@127.0.0.1>'
    assert events.user_events == [
        (
            "CallbackOutcome",
            {
                "Callback": "cb-0123456789abcdef0123",
                "Dial": "2",
                "DialStatus": status,
                "AnsweredTime": answered,
            },
        )
    ]


@pytest.mark.parametrize(
    ("trunk", "number"), [("pstn/x", "+441632960123"), ("pstn", "0800;x"), ("", "+441632960123")]
)
async def test_a_bad_trunk_or_number_is_refused_and_reported(trunk: str, number: str) -> None:
    pbx, events = await run_caller("ANSWER", trunk=trunk, number=number)
    assert pbx.dials == []
    assert events.user_events[0][1]["DialStatus"] == "CHANUNAVAIL"
    assert any(line.startswith("ERROR") or "callrouter:" in line for line in pbx.log)


async def test_the_adviser_leg_joins_the_queue_at_the_position_given() -> None:
    seen: list[tuple[str, str]] = []

    def observe(_pbx: Pbx, channel: Channel, app: str, data: str) -> None:
        seen.append((app, data))

    pbx = Pbx(CONF, GLOBALS, observer=observe, queue_outcome=lambda _q, _v: "CONTINUE")
    two = pbx.new_channel(
        "Local/s@callrouter-callback-adviser-00000001;2", caller_name=COUNCIL[0], caller_num=COUNCIL[1]
    )
    for name, value in {"CR_CB_QUEUE": "hdc-revenues", "CR_CB_POSITION": "2"}.items():
        two.set(name, value)
    await pbx.run(two, "callrouter-callback-adviser", "s")
    assert two.caller_name == "Callback"  # what the adviser's phone shows
    queue = next(data for app, data in seen if app.lower() == "queue")
    assert queue == "hdc-revenues,,,,,,,,2"
    assert queue.split(",")[8] == "2"  # the 9th argument: position


async def test_from_carries_the_calling_channels_caller_id_as_in_the_capture() -> None:
    """The capture's From is the calling channel's CALLERID (``"Jane Resident"
    <sip:01632960123@127.0.0.1>;tag=...``): the emulated INVITE of the same call is the same, so
    a callback's From is the council's name and number the Originate set."""
    (first, *_rest) = tr.invites(tr.TRUNK_FORMS)
    captured = (first.header("From") or "").split(";tag=")[0]
    pbx = Pbx(CONF, GLOBALS, pjsip=Pjsip({"pstn": "sip:127.0.0.1:5090"}))
    caller = pbx.new_channel("PJSIP/sipp-00000001", caller_name="Jane Resident", caller_num="01632960123")
    await pbx._dial(caller, "PJSIP/+441632960999@pstn,10")
    invite = pbx.dials[0].invite
    assert isinstance(invite, Invite)
    assert invite.from_ == captured
    assert invite.request_uri == first.request_uri


def test_the_capture_shows_the_adviser_in_from_unless_callerid_is_set_again() -> None:
    """``callback_originate.txt``: with the Originate's CallerID alone, the caller's INVITE came
    From the adviser who answered; the candidate fix (CALLERID(all) set on ;1 before Dial(),
    as ``callrouter-callback-caller`` now does) presented the council."""
    text = tr.transcript_path("callback_originate.txt").read_text(encoding="utf-8")
    sections = text.split("# ---- ")
    answered = next(s for s in sections if s.startswith("answered"))
    fixed = next(s for s in sections if s.startswith("candidate fix, answered"))
    caller_from = re.compile(r"SIP caller \(pstn sipp UAS\)\s+From: (.*?);tag=")
    assert caller_from.findall(answered)[0].startswith('"Adviser')
    assert caller_from.findall(fixed) == [f'"{COUNCIL[0]}" <sip:{COUNCIL[1]}@127.0.0.1>']
    assert "exten => s,1,Set(CALLERID(all)=${CR_CB_CLI})" in fixed


def captured_events(section: str) -> list[tuple[float, dict[str, str]]]:
    """The events Asterisk sent in one section of ``callback_originate.txt``: (time, headers)."""
    text = tr.transcript_path("callback_originate.txt").read_text(encoding="utf-8")
    body = next(s for s in text.split("# ---- ") if s.startswith(section))
    events: list[tuple[float, dict[str, str]]] = []
    block: dict[str, str] = {}
    for at, raw in re.findall(r"^\s*(\d+\.\d+) S->C (b'.*')$", body, re.MULTILINE):
        line = ast.literal_eval(raw).decode().rstrip("\r\n")
        if line:
            key, _, value = line.partition(": ")
            block.setdefault(key, value)
            block.setdefault("_at", at)
        elif block:
            events.append((float(block.pop("_at")), block))
            block = {}
    return [(at, e) for at, e in events if "Event" in e]


class KeptCentre(CallCentre):
    """The AMI side of the PBX, its events kept instead of sent."""

    def __init__(self, stamp: float) -> None:
        super().__init__(FakeAmi(), stamp=lambda: stamp)
        self.sent: list[Message] = []

    def _emit(self, messages: list[Message]) -> None:
        self.sent.extend(messages)


async def test_the_talk_runs_from_the_callers_answer_as_in_the_capture() -> None:
    """The capture: the caller rang 1 s and talked 3 s; ANSWEREDTIME says 4 (from the adviser's
    answer), the ;1 leg's DialEnd ANSWER to CallbackOutcome 3.0 s. The emulated leg, with the same
    ringing and talk, stamps its events so (Timestamp, on the leg's clock) and reports 4."""
    leg = "cb-0123456789abcdef0123-1-1"
    events = captured_events("answered")
    dial_ends = [(at, e) for at, e in events if e["Event"] == "DialEnd" and e.get("Uniqueid") == leg]
    answer_at = next(at for at, e in dial_ends if e["DialStatus"] == "ANSWER")
    end_at, outcome = next((at, e) for at, e in events if e.get("UserEvent") == "CallbackOutcome")
    assert (outcome["Uniqueid"], outcome["AnsweredTime"]) == (leg, "4")
    assert end_at - answer_at == pytest.approx(3.0, abs=0.05)

    centre = KeptCentre(stamp=1_795_600_000.0)
    pbx = Pbx(
        CONF,
        {**GLOBALS, "CR_TRUNK": "pstn"},
        pjsip=Pjsip({"pstn": "sip:127.0.0.1:5090"}),
        far_end=lambda _invite: "ANSWER",
        talk_s=lambda _invite: 3,
        ring_s=lambda _invite: 1.0,
        events=centre,
    )
    one = pbx.new_channel("Local/s@callrouter-callback-adviser-00000004;1", uniqueid=leg)
    one.state = "Up"  # the adviser answered it
    for name, value in {"CR_CB_ID": "cb-0123456789abcdef0123", "CR_CB_DIAL": "1",
                        "CR_CB_NUMBER": "+441632960123", "CR_CB_RING_S": "10"}.items():  # fmt: skip
        one.set(name, value)
    await pbx.run(one, "callrouter-callback-caller", "s")
    sent = [dict(m) for m in centre.sent]
    begin = next(e for e in sent if e["Event"] == "DialBegin")
    end = next(e for e in sent if e["Event"] == "DialEnd")
    user = next(e for e in sent if e["Event"] == "UserEvent")
    assert (end["Uniqueid"], end["DialStatus"]) == (leg, "ANSWER")
    assert (user["Uniqueid"], user["AnsweredTime"]) == (leg, "4")
    assert [float(e["Timestamp"]) - 1_795_600_000.0 for e in (begin, end, user)] == [0.0, 1.0, 4.0]
    talk = talk_seconds((float(end["Timestamp"]), 0.0), (float(user["Timestamp"]), 0.0))
    assert talk == 3.0
    assert dial_outcome(user["DialStatus"], user["AnsweredTime"], talk) == "short-answer"
