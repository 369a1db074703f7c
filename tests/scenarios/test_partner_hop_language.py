"""A Welsh caller at centre A, overflowed to centre B, hears Welsh at B without being asked again.

Two centres, each a real controller (FastAGI on loopback) with its own plan and record builder,
and the emulated Asterisk running the shipped dialplan at both. Charnwood's council lists Welsh
and English (in both centres' plans). At A the caller chooses a language, then the menu key for
the general queue, which overflows to Harborough's team (centre B): A's dialplan dials B's
number with the partner headers, ``X-Callrouter-Language`` among them. B's call comes in with
that INVITE's headers: no language choice, Charnwood's greeting and menu from that language's
sounds, the queue in it, and B's record saying the language came with the hop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import place_call
from ivr import channel_vars as cv
from records.model import CallLanguage, HopFrom
from tests.controller.conftest import EXAMPLE
from tests.records.support import checked
from tests.scenarios.test_partner_hop import CHARNWOOD, PARTNER, Busy, Centre, as_centre_b, start_centre

BILINGUAL = 'languages: ["en"]\n    prompts: "charnwood"'


def bilingual(text: str) -> str:
    """Charnwood's council in Welsh first, then English (the first ``languages`` under its tenant)."""
    assert BILINGUAL in text
    return text.replace(BILINGUAL, 'languages: ["cy", "en"]\n    prompts: "charnwood"', 1)


@pytest.fixture
async def centres(tmp_path: Path) -> AsyncIterator[tuple[Centre, Centre]]:
    plan_a = tmp_path / "plan-a.yaml"
    plan_a.write_text(bilingual(EXAMPLE.read_text()))
    plan_b = tmp_path / "plan-b.yaml"  # B: harborough, answering its team's number as Charnwood
    plan_b.write_text(as_centre_b(bilingual(EXAMPLE.read_text())))
    a = await start_centre("charnwood", plan_a, Busy())
    b = await start_centre("harborough", plan_b)
    try:
        yield a, b
    finally:
        await a.server.drain(0)
        await b.server.drain(0)


@pytest.mark.parametrize(("key", "language"), [("1", "cy"), ("2", "en")], ids=["welsh", "english"])
async def test_the_language_chosen_at_a_holds_at_b(
    centres: tuple[Centre, Centre], key: str, language: str
) -> None:
    a, b = centres
    at_a = await a.call(
        CallerScript(
            dial=CHARNWOOD, steps=[PressAfterPrompt(key), PressAfterPrompt("1")], uniqueid="1795970000.7"
        )
    )
    assert at_a.ended == f"dial {PARTNER}"
    route_a = at_a.sessions[0]
    assert route_a.played == ["cy/charnwood/language-choice", "en/charnwood/language-choice"]
    [attempt] = at_a.dials
    assert attempt.invite is not None
    sent = dict(attempt.invite.headers)
    assert sent[cv.HEADER_LANGUAGE] == language
    assert sent[cv.HEADER_CENTRE] == "charnwood"

    # B's Asterisk receives that INVITE; the caller presses 1 at Charnwood's menu there
    in_queue: list[str] = []

    def answered(queue: str, variables: dict[str, str]) -> str:
        in_queue.append(variables.get(cv.CALL_LANGUAGE, ""))
        return "CONTINUE"

    b_call = CallerScript(dial=attempt.invite.user, steps=[PressAfterPrompt("1")], uniqueid="1795980000.3")
    at_b = await place_call(
        "127.0.0.1",
        b.server.port,
        b_call,
        headers=list(attempt.invite.headers),
        outcome=answered,
        deadline=10,
    )
    route_b, menu_b = at_b.sessions[:2]
    assert not any(p.endswith("language-choice") for p in route_b.played)  # not asked again
    assert menu_b.played == [f"{language}/charnwood/welcome", f"{language}/charnwood/main-menu"]
    assert in_queue == [language]  # Queue() runs with the channel in that language
    assert at_b.language == language

    [record_a] = a.records().values()
    record_b = b.records()["1795980000.3"]
    assert record_a.language == CallLanguage(code=language, how="chosen", key=key)
    assert record_b.language == CallLanguage(code=language, how="hop", key=None)
    assert record_b.hop_from == HopFrom(centre="charnwood", id=record_a.id)
    assert checked(record_b)["language"] == {"code": language, "how": "hop", "key": None}
    checked(record_a)
