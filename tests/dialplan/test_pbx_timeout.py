"""The channel's absolute timeout in the emulated PBX: ``TIMEOUT(absolute)``, ``T``, ``AGI()``.

The conformance tests run the dialplan of ``agi_hung_controller_timeout.txt`` (its annotation
lines: ``Set(AGIEXITONHANGUP=yes)`` in variants b-e, ``Set(TIMEOUT(absolute)=5)``, ``AGI()``, a
Gosub'd UserEvent after it, then ``Queue()``; ``T`` does the UserEvent, clears the timer and
queues) through the PBX, with the capture's server side replayed on the wire. Where the call
went after ``AGI()``, the ``AGISTATUS`` it saw there and when, are read from the capture."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from emulator.agi import CallerScript
from emulator.dialplan import Asterisk, place_call
from emulator.extensions import Dialplan
from emulator.line import CallClock, CallerLine
from emulator.pbx import Channel, DialplanError, Pbx, ast_false, ast_true, timeout_seconds
from tests.support.captures import CaptureServer, load_capture

HUNG = "agi_hung_controller_timeout"
USER_EVENT = re.compile(r"UserEvent=(\w+) AGISTATUS=(\w+)")
QUEUE_JOIN = re.compile(r"AMI\s+\+([\d.]+) s QueueCallerJoin")


def capture_dialplan(exit_on_hangup: bool) -> str:
    """The capture's dialplan, as its header lines give it (T0 and the T1-T0 timing left out)."""
    exit_line = " same => n,Set(AGIEXITONHANGUP=yes)\n" if exit_on_hangup else ""
    return (
        "[callrouter-inbound]\n"
        "exten => _X.,1,Answer()\n"
        f"{exit_line}"
        " same => n,Set(TIMEOUT(absolute)=5)\n"
        " same => n,AGI(${CR_AGI}/hung)\n"
        " same => n,Gosub(cr-common,out,1(AfterAgi))\n"
        " same => n,Queue(council-revenues,,,,15)\n"
        "exten => T,1,Gosub(cr-common,out,1(TExten))\n"
        " same => n,Set(TIMEOUT(absolute)=0)\n"
        " same => n,Queue(council-revenues,,,,15)\n"
        "[cr-common]\n"
        "exten => out,1,UserEvent(${ARG1},AGISTATUS: ${AGISTATUS})\n"
        " same => n,Set(EVENTS=${EVENTS}${ARG1} AGISTATUS=${AGISTATUS}.)\n"  # ";" would start a comment
        " same => n,Return()\n"
    )


@pytest.mark.parametrize("letter", ["a", "b", "d", "e"])
async def test_the_capture_dialplan_goes_where_asterisk_went(letter: str, tmp_path: Path) -> None:
    """(a) no AGIEXITONHANGUP: T once the silent server closes (20 s); (b) T at 5 s;
    (d) the controller disarmed the timer: the next priority, SUCCESS; (e) cut at 5 s: T."""
    capture = load_capture(HUNG)[letter]
    notes = "\n".join(capture.notes)
    conf = tmp_path / "extensions.conf"
    conf.write_text(capture_dialplan("AGIEXITONHANGUP=yes" in notes))
    time_scale = 0.1  # variant a's 20 s take 2 s
    replayed = CaptureServer(capture, time_scale)
    server = await asyncio.start_server(replayed, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        script = CallerScript(dial="1000")
        record = await place_call(
            "127.0.0.1", port, script, time_scale=time_scale, asterisk=Asterisk(dialplans=(conf,))
        )
        await asyncio.wait_for(replayed.done.wait(), 5)
    finally:
        server.close()
    event, status = USER_EVENT.search(notes).groups()  # type: ignore[union-attr]
    assert record.variables["EVENTS"] == f"{event} AGISTATUS={status}."
    assert record.steps == ["queue council-revenues (continue)"]  # Queue() ran, after T or not
    assert record.line.hangup_at is None  # T cleared the timer, or the controller did (d)
    joined_at = QUEUE_JOIN.search(notes)
    if joined_at is not None:  # (d) and (e) end before any Queue(): the server side was the test
        assert abs(record.sessions[0].ended_at - float(joined_at.group(1))) <= 1.0


class SlowApp:
    """An AGI() that lets ``seconds`` pass on the line and ends normally (the timer fires during
    it but the application does not notice, as a Queue() or Dial() would not)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __call__(self, pbx: Pbx, channel: Channel, url: str, args: list[str]) -> None:
        await channel.line.clock.sleep_until(channel.line.clock.now() + self.seconds)
        channel.set("AGISTATUS", "SUCCESS")


async def run_slow(conf: str) -> tuple[Pbx, Channel]:
    pbx = Pbx(Dialplan.parse(conf), {}, agi=SlowApp(10))
    channel = pbx.new_channel("PJSIP/sipp-00000001")
    channel.line = CallerLine(CallClock())
    await pbx.run(channel, "t", "s")
    return pbx, channel


SLOW = "[t]\nexten => s,1,Set(TIMEOUT(absolute)=5)\n same => n,AGI(slow)\n same => n,Set(NEXT=ran)\n"


async def test_the_timer_passing_during_an_application_goes_to_t() -> None:
    """ast_check_hangup after the application: T,1 with the timer cleared, not the next priority."""
    _pbx, channel = await run_slow(SLOW + "exten => T,1,Set(IN_T=${AGISTATUS})\n")
    assert (channel.get("IN_T"), channel.get("NEXT")) == ("SUCCESS", None)
    assert channel.line.hangup_at is None
    assert channel.exten == "T"  # where the channel ran out of dialplan


async def test_without_t_the_timer_hangs_the_channel_up() -> None:
    _pbx, channel = await run_slow(SLOW)
    assert channel.hung_up
    assert channel.get("NEXT") is None


async def test_an_e_extension_is_not_emulated_and_says_so() -> None:
    """Asterisk would raise ABSOLUTETIMEOUT at e: not modelled, so it fails loudly."""
    with pytest.raises(DialplanError, match="ABSOLUTETIMEOUT"):
        await run_slow(SLOW + "exten => e,1,NoOp()\n")


async def test_set_timeout_absolute_arms_and_disarms_the_line() -> None:
    pbx = Pbx(Dialplan.parse("[t]\nexten => s,1,Set(TIMEOUT(absolute)=${V})\n"), {})
    for value, armed in (("5", 5.0), ("2.5", 2.5), ("0", None), ("-1", None), ("soon", None), ("7s", 7.0)):
        channel = pbx.new_channel("PJSIP/sipp-00000001")
        channel.set("V", value)
        await pbx.run(channel, "t", "s")
        hangup_at = channel.line.hangup_at
        assert (None if hangup_at is None else round(hangup_at - channel.line.clock.now())) == (
            None if armed is None else round(armed)
        ), value
    assert timeout_seconds("2.5") == 2.5
    assert timeout_seconds(" 3") == 3


def test_agi_switches_read_like_asterisk() -> None:
    """AGIEXITONHANGUP is on only for ast_true values; AGISIGHUP is off only for ast_false ones."""
    assert [ast_true(v) for v in ("yes", "TRUE", "on", "1", "y", "no", "", None, "2")] == [
        True, True, True, True, True, False, False, False, False,
    ]  # fmt: skip
    assert [ast_false(v) for v in ("no", "OFF", "0", "f", "yes", "", None)] == [
        True, True, True, True, False, False, False,
    ]  # fmt: skip
