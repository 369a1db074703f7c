"""A call's Linkedid (its contact record's id), one shape with bounds for every place that takes
one from outside (``routing.core.linkedid``): what Asterisk makes, and nothing longer or looser."""

from __future__ import annotations

import re

import pytest

from routing.core.linkedid import LINKEDID_MAX, is_linkedid
from tests.support.captures import captures_dir

LONGEST = "9" * 19 + "." + "9" * 10  # a C long's digits, a C int's digits


def test_every_uniqueid_asterisk_made_in_the_captures_is_a_linkedid() -> None:
    """The inbound channels' ``agi_uniqueid`` (the call's Linkedid: tests/records/test_call_id.py)
    of every FastAGI capture of Asterisk 22.10.1."""
    found = {
        m[1]
        for path in captures_dir().glob("*.txt")
        for m in re.finditer(r"agi_uniqueid: ([^\\]+)\\n", path.read_text(encoding="utf-8"))
    }
    assert len(found) > 10
    assert [u for u in found if not is_linkedid(u)] == []


def test_a_callback_legs_own_channel_id_is_not_a_linkedid() -> None:
    """The dialler names its Local legs itself (Originate ``ChannelId``): not a call's record."""
    assert not is_linkedid("harborough-cb-0001")


@pytest.mark.parametrize("text", ["1.2", "1795533594.71", "0.0", LONGEST])
def test_within_the_bounds_is_a_linkedid(text: str) -> None:
    assert is_linkedid(text)
    assert len(text) <= LINKEDID_MAX


@pytest.mark.parametrize(
    "text",
    [
        "9" * 20 + ".1",  # more digits than a C long has
        "1795533594." + "1" * 11,  # more than a C int has
        "1795533594.71\n",  # '$' of the old patterns let this in
        "\n1795533594.71",
        " 1795533594.71",
        "1795533594",
        "1795533594.",
        ".71",
        "1795533594.71.2",
        "-1795533594.71",
        "+1795533594.71",
        "1795533594,71",
        "\uff11\uff17.\uff17\uff11",  # fullwidth digits: Python's \d would take them
        "",
    ],
)
def test_anything_else_is_not(text: str) -> None:
    assert not is_linkedid(text)
