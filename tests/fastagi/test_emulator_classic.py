"""The emulated Asterisk's classic AGI side: how a hangup reaches a process-per-call script.

No capture of a classic script exists; this follows ``run_agi()`` in res/res_agi.c (see
:mod:`emulator.classic`): SIGHUP to the process (never a ``HANGUP`` line on its stdin) unless
AGISIGHUP is false; with AGIEXITONHANGUP, ``AGI()`` returns at once whatever the script does;
without it, Asterisk waits for the script for ever."""

from __future__ import annotations

import sys
from pathlib import Path

from emulator.agi import CallerScript, HangUpDuring
from emulator.classic import Process, reap, run_classic

SLEEPS_THROUGH_SIGHUP = "trap '' HUP\nexec sleep 120\n"
# Plays a prompt, then reports the reply and the signals it got (in dead mode Asterisk still
# answers SET VARIABLE).
REPORTS = """\
import signal, sys, time
got = []
signal.signal(signal.SIGHUP, lambda *_: got.append("SIGHUP"))
while sys.stdin.readline().strip():
    pass
print('STREAM FILE beep ""', flush=True)
reply = sys.stdin.readline().strip()
deadline = time.monotonic() + 5
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print(f'SET VARIABLE SEEN "{reply}|{"+".join(got)}"', flush=True)
sys.stdin.readline()
"""


def sh(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "script.sh"
    path.write_text(text)
    return ["/bin/sh", str(path)]


async def test_a_caller_hangup_reaches_a_classic_script_as_sighup_not_as_a_line(tmp_path: Path) -> None:
    path = tmp_path / "reports.py"
    path.write_text(REPORTS)
    script = CallerScript(answered=True, steps=[HangUpDuring("STREAM FILE")])
    call, code = await run_classic([sys.executable, str(path)], script, deadline=10)
    assert code == 0
    assert call.agistatus == "HANGUP"
    assert call.variables["SEEN"] == "200 result=-1 endpos=0|SIGHUP"
    assert "HANGUP" not in call.replies
    assert call.sighups == 1


async def test_with_agiexitonhangup_agi_returns_at_the_timeout_whatever_the_script_does(
    tmp_path: Path,
) -> None:
    orphans: list[Process] = []
    script = CallerScript(agiexitonhangup=True, absolute_timeout=0.5)
    call, code = await run_classic(sh(tmp_path, SLEEPS_THROUGH_SIGHUP), script, orphans=orphans, deadline=10)
    assert (call.agistatus, call.outcome, code) == ("HANGUP", "exit-on-hangup", None)
    assert call.goes_to_t
    assert call.sighups == 2  # at the hangup, then after the loop
    assert 0.5 <= call.ended_at < 1.5  # at the timeout, not the script's 120 s; late on a loaded machine
    assert await reap(orphans, grace=0.2) == 1  # it ignored SIGHUP: left running


async def test_without_agiexitonhangup_a_hung_script_keeps_agi_for_ever(tmp_path: Path) -> None:
    """Asterisk marks the session dead and waits for the script's next command: the emulator's
    deadline reports it (``server-silent``)."""
    script = CallerScript(absolute_timeout=0.5)
    call, code = await run_classic(sh(tmp_path, SLEEPS_THROUGH_SIGHUP), script, deadline=2)
    assert (call.agistatus, call.outcome, code) == (None, "server-silent", None)
    assert call.timed_out
    assert call.sighups == 1


async def test_agisighup_no_sends_no_signal_and_agiexitonhangup_still_returns(tmp_path: Path) -> None:
    script = CallerScript(agisighup=False, agiexitonhangup=True, absolute_timeout=0.5)
    call, code = await run_classic(sh(tmp_path, "exec sleep 120\n"), script, deadline=10)
    assert (call.agistatus, call.outcome, code) == ("HANGUP", "exit-on-hangup", None)
    assert call.sighups == 0
