"""A card number typed at the payment reference prompt is refused, drained and never kept.

The emulator delivers digits as Asterisk does (``agi_getdata_maxdigits_overflow.txt``): one every
0.3 s, each to the command listening when it arrives. Before the fix, ``GET DATA ... 8`` took the
first 8 digits of the card (``CR_PAYMENT_REF=41111111``) and the rest went to the next command.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from emulator.agi import CallerScript, EmulatedCall, PressAfterPrompt, run_call
from emulator.dialplan import place_call
from emulator.line import CallClock, CallerLine, read_app
from ivr.controller import is_overlong
from tests.controller.conftest import HARBOROUGH, Rig, fields

CARD = "4539578763621486"  # a Luhn-valid test number
ACCOUNT = "12345678"


def card_digits_anywhere(text: str) -> bool:
    """Any 8 consecutive digits of the card (more than a reference may hold here: 8)."""
    digits_only = re.sub(r"\D", "", text)
    return any(CARD[i : i + 8] in digits_only or CARD[i : i + 8] in text for i in range(len(CARD) - 7))


def kept_by_the_channel(call: EmulatedCall) -> str:
    """Everything the channel holds or AMI would show: variables and every VarSet."""
    return "\n".join(
        [*(f"{k}={v}" for k, v in call.variables.items()), *(f"{k}={v}" for k, v in call.varsets)]
    )


async def payment(rig: Rig, line: CallerLine, *typed: str) -> EmulatedCall:
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt(digits) for digits in typed])
    args = ("harborough", "council_tax")
    return await run_call("127.0.0.1", rig.server.port, script, "payment", args=args, line=line, deadline=20)


def test_overlong_is_more_than_max_digits() -> None:
    assert is_overlong("123456789", 8)
    assert not is_overlong(ACCOUNT, 8)


async def test_card_number_is_refused_drained_and_the_caller_asked_again(
    rig: Rig, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    line = CallerLine(CallClock())
    call = await payment(rig, line, CARD, ACCOUNT)
    assert fields(call)["CR_PAYMENT_REF"] == ACCOUNT
    assert (fields(call)["CR_ACTION"], fields(call)["CR_TARGET"]) == ("payment", "+441632960777")
    # asked for 9 digits (the guard allows the 60 s prompt + 9 x 6 s + 5 s): the 9th digit
    # proves the entry is too long for a reference
    assert call.commands[:2] == ["SET AUTOHANGUP 119", "GET DATA harborough/enter-account-number 6000 9"]
    assert call.replies[1] == f"200 result={CARD[:9]}"  # Asterisk's side of the wire, not kept
    # drained: every digit of the card reached a command of the controller, none was left over
    assert line.heard == list(CARD + ACCOUNT)
    assert line.lost == []
    assert not line.typing
    assert await read_app(line, 16, 2) == ("", "TIMEOUT")  # nothing reaches the next application
    assert 'STREAM FILE harborough/account-number-not-recognised ""' in call.commands
    assert not card_digits_anywhere(kept_by_the_channel(call))
    text = "\n".join(str(event) for event in logs())
    assert not card_digits_anywhere(text)
    capture = next(e for e in logs() if e["event"] == "call.payment_reference")
    assert (capture["outcome"], capture["refused_overlong"], capture["attempts"]) == ("captured", 1, 2)


async def test_card_typed_with_a_pause_after_8_digits_is_still_refused(rig: Rig) -> None:
    """Grouped like on the card: 8 digits, a 2 s pause, 8 more. A reference of exactly 8 digits
    is only accepted after the inter-digit timeout, so the 9th digit still shows the overflow."""
    line = CallerLine(CallClock())
    prompt_ends = 2.0 + 0.01  # the reference prompt lasts 2 s in the emulator (after SET AUTOHANGUP)
    line.type(CARD[:8], prompt_ends + 0.3)
    line.type(CARD[8:], prompt_ends + 0.3 + 7 * 0.3 + 2.0)
    call = await payment(rig, line, ACCOUNT)
    assert fields(call)["CR_PAYMENT_REF"] == ACCOUNT
    assert not card_digits_anywhere(kept_by_the_channel(call))
    assert line.heard == list(CARD + ACCOUNT)


async def test_card_three_times_goes_to_an_adviser_with_nothing_kept(
    rig: Rig, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    """After three refused entries: the plan's on_failure (the revenues queue), no reference."""
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("3"), *[PressAfterPrompt(CARD)] * 3])
    record = await place_call("127.0.0.1", rig.server.port, script)
    assert (
        record.summary()
        == "route (open) -> menu main -> queue hdc-revenues (continue) -> answered, survey not answered"
    )
    assert "CR_PAYMENT_REF" not in record.variables
    assert record.line.heard[1:] == list(CARD * 3)
    assert not record.line.typing
    everything = "\n".join(kept_by_the_channel(session) for session in record.sessions)
    assert not card_digits_anywhere(
        everything + "\n" + "\n".join(f"{k}={v}" for k, v in record.variables.items())
    )
    assert not card_digits_anywhere("\n".join(str(event) for event in logs()))
    failed = next(e for e in logs() if e["event"] == "call.payment_reference")
    assert (failed["outcome"], failed["refused_overlong"]) == ("failed", 3)
