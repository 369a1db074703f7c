"""Hypothesis strategies for bytes and text a peer could send: mostly well-formed, with the
usual breakages mixed in (invalid UTF-8, NULs, ``\\r\\n``, odd digits, huge numbers)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from hypothesis import settings
from hypothesis import strategies as st

# Pieces that are interesting to parsers of line protocols; text() alone rarely hits them.
AWKWARD_TEXT = st.sampled_from(
    [
        "",
        " ",
        ":",
        ": ",
        "=",
        "\r",
        "\r\n",
        "\n",
        "\x00",
        "\t",
        "(",
        ")",
        '"',
        "\\",
        "-",
        "é",
        "\ufffd",
        "²",  # isdigit() but not int()-able
        "٣",  # an Arabic-Indic three: int()-able, \d matches
        "9" * 5000,  # over int()'s 4300-digit limit
        "-1",
        "0",
        "200",
        "520-",
        "520 ",
        "result=",
        "endpos=",
        "HANGUP",
        "agi_",
        "agi_network_script",
        "agi_arg_1",
    ]
)
AWKWARD_BYTES = st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\x00", b"\r\n"])

# Text built from awkward pieces and arbitrary characters (surrogates excluded: not text).
LINE_TEXT = st.lists(
    st.one_of(AWKWARD_TEXT, st.text(st.characters(blacklist_categories=["Cs"]), max_size=8)),
    max_size=8,
).map("".join)


def chunked(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` as consecutive segments cut at the given offsets (modulo its length)."""
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        yield data[start:end]


CUTS = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=16)


def fewer_examples(fraction: float) -> settings:
    """A share of the profile's examples, for tests whose single example is costly."""
    default = settings.default
    assert default is not None
    return settings(max_examples=max(10, int(default.max_examples * fraction)))
