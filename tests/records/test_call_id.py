"""The controller names a call's record by the FastAGI session's ``agi_uniqueid``: the captures
show it is the call's Linkedid, the id every AMI event of the call carries."""

from __future__ import annotations

import re

from emulator.ami_wire import headers_dict, parse_message, parse_transcript, server_messages
from tests.support.captures import captures_dir


def test_agi_uniqueid_of_the_inbound_channel_is_the_calls_linkedid() -> None:
    """The PJSIP command-suite call: its environment block (``agi_suite_pjsip.txt``) and the AMI
    view of the same call (``ami_agi_exec_events_pjsip.txt``)."""
    block = (captures_dir() / "agi_suite_pjsip.txt").read_text(encoding="utf-8")
    uniqueid = re.search(r"b'agi_uniqueid: ([0-9.]+)\\n'", block)
    channel = re.search(r"b'agi_channel: (\S+)\\n'", block)
    assert uniqueid is not None
    assert channel is not None
    text = (captures_dir() / "ami_agi_exec_events_pjsip.txt").read_text(encoding="utf-8")
    events = [headers_dict(parse_message(b)) for b in server_messages(parse_transcript(text))]
    on_channel = [e for e in events if e.get("Channel") == channel[1] and "Linkedid" in e]
    assert len(on_channel) > 10
    assert {e["Uniqueid"] for e in on_channel} == {uniqueid[1]}
    assert {e["Linkedid"] for e in on_channel} == {uniqueid[1]}
    assert any(e["Event"] == "AGIExecStart" for e in on_channel)
