"""A call's Linkedid (its contact record's id), one shape with bounds for every place that takes
one from outside (``routing.core.linkedid``): what Asterisk makes, with or without a
``systemname`` (asterisk.conf), and nothing longer or looser."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.core.linkedid import (
    LINKEDID_MAX,
    SYSTEM_NAME_MAX,
    is_linkedid,
    is_system_name,
    linkedid_seconds,
    make_uniqueid,
    split_linkedid,
)
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


LONGEST_NAMED = "n" * SYSTEM_NAME_MAX + "-" + LONGEST


@pytest.mark.parametrize(
    "text",
    [
        "1.2",
        "1795533594.71",
        "0.0",
        LONGEST,
        # systemname set: "%s-%li.%d" (main/channel_internal_api.c)
        "harborough-1795533594.71",
        "ast1.harborough.gov.uk-1795533594.71",  # autosystemname: the host's name
        "harborough-ast-1-1795533594.71",  # a name may hold '-': read from the right
        "pbx_2-0.0",
        "1-1.2",
        "A-1.2",
        LONGEST_NAMED,
    ],
)
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
        # a system name: 1 to 64 of letters, digits, '.', '-', '_', starting with a letter or digit
        "-1795533594.71\n",
        "--1795533594.71",
        "..-1795533594.71",
        "../1795533594.71",
        ".-1795533594.71",
        "_x-1795533594.71",
        "n" * (SYSTEM_NAME_MAX + 1) + "-1795533594.71",
        "x" + LONGEST_NAMED,
        "ast 1-1795533594.71",  # a space (Asterisk itself would take it)
        "ast\n1-1795533594.71",
        "ast1-1795533594.71\n",
        "ast/1-1795533594.71",
        "ast%2F1-1795533594.71",
        "ast:1-1795533594.71",
        'ast"1-1795533594.71',
        "ast,1-1795533594.71",
        "ast|1-1795533594.71",
        "ast\u00e91-1795533594.71",  # not ASCII
        "ast1_1795533594.71",  # the separator is '-'
        "ast1-1795533594",
        "ast1-",
        "ast1-1795533594.71-x",
    ],
)
def test_anything_else_is_not(text: str) -> None:
    assert not is_linkedid(text)


def test_the_longest_is_the_bound() -> None:
    assert len(LONGEST_NAMED) == LINKEDID_MAX


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("1795533594.71", ("", 1795533594, 71)),
        ("harborough-ast-1-1795533594.71", ("harborough-ast-1", 1795533594, 71)),
        ("1.2-3.4", ("1.2", 3, 4)),  # a name may look like digits: the last '-' ends it
        ("ast 1-1795533594.71", None),
    ],
)
def test_an_id_is_read_from_the_right(text: str, parts: tuple[str, int, int] | None) -> None:
    assert split_linkedid(text) == parts
    assert linkedid_seconds(text) == (None if parts is None else parts[1])


NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
SECONDS = st.integers(0, 2**63 - 1)  # a C long
SEQUENCES = st.integers(0, 2**31 - 1)  # a C int


@given(NAMES, SECONDS, SEQUENCES)
def test_every_id_an_asterisk_with_such_a_name_makes_is_a_linkedid(name: str, seconds: int, seq: int) -> None:
    made = make_uniqueid(seconds, seq, name)
    assert made == f"{name}-{seconds}.{seq}"  # "%s-%li.%d"
    assert is_system_name(name)
    assert is_linkedid(made)
    assert len(made) <= LINKEDID_MAX
    assert split_linkedid(made) == (name, seconds, seq)


@given(SECONDS, SEQUENCES)
def test_without_a_name_asterisk_makes_the_historical_form(seconds: int, seq: int) -> None:
    assert make_uniqueid(seconds, seq) == f"{seconds}.{seq}"  # "%li.%d"
    assert split_linkedid(make_uniqueid(seconds, seq)) == ("", seconds, seq)


@given(
    NAMES,
    st.text(min_size=1, max_size=3).filter(
        lambda t: any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in t)
    ),
)
def test_a_name_with_any_other_character_is_refused(name: str, bad: str) -> None:
    """Whatever Asterisk made of it: a space, a line break, a quote, a slash, non-ASCII..."""
    named = make_uniqueid(1795533594, 71, name[:30] + bad + name[30:])
    assert not is_linkedid(named)
    assert split_linkedid(named) is None
