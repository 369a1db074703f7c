"""The emulated PBX's pure pieces: expressions, substitution, CUT, patterns, argument splitting,
and the dialplan loader."""

from __future__ import annotations

import pytest

from emulator.extensions import Dialplan, matches, parse_options, split_args
from emulator.pbx import DialplanError, Pbx, cut, evaluate, substitute, truthy


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ('"" = ""', "1"),
        ('"harborough" = ""', "0"),
        ('"CONTINUE" = "CONTINUE" | "CONTINUE" = ""', "1"),
        ('"TIMEOUT" = "CONTINUE" | "TIMEOUT" = ""', "0"),
        ('"1" = "1" & "" != "static"', "1"),
        ('"1" = "1" & "static" != "static"', "0"),
        ('"pstn" = "" | "pstn" =~ "[/@]"', "0"),
        ('"PJSIP/pstn" = "" | "PJSIP/pstn" =~ "[/@]"', "1"),
        ('"abc" : "a(b)"', "b"),
        ("10 > 9", "1"),  # numbers compare as numbers
        ('"10" < "9"', "0"),
        ("2 + 3", "5"),
        ("!0", "1"),
        ("(1 | 0) & 0", "0"),
        ("", ""),
    ],
)
def test_expressions(expression: str, value: str) -> None:
    assert evaluate(expression) == value


def test_expression_errors_are_loud() -> None:
    """An unquoted empty value leaves an operator without an operand: Asterisk logs a syntax
    error; the emulator raises (why the dialplans quote every "${VAR}")."""
    with pytest.raises(DialplanError):
        evaluate(" = ")


def test_truthy_like_pbx_checkcondition() -> None:
    assert [truthy(v) for v in ("", "0", " 0 ", "00", "1", "abc", "-1")] == [
        False,
        False,
        False,
        False,
        True,
        True,
        True,
    ]


def test_substitution_inner_first() -> None:
    values = {"A": "x", "Bx": "found", "E": ""}
    lookup = values.__getitem__
    assert substitute('${B${A}}-$["${E}" = ""]-$', lambda n: values.get(n, "")) == "found-1-$"
    assert substitute("no variables", lookup) == "no variables"
    assert substitute('$["${A}" = "x"]', lookup) == "1"


@pytest.mark.parametrize(
    ("spec", "value"),
    [("1", "queue"), ("2", "hdc-revenues"), ("6", ""), ("2-3", "hdc-revenues|900"), ("3-", "900||x")],
)
def test_cut(spec: str, value: str) -> None:
    assert cut("queue|hdc-revenues|900||x", "|", spec) == value


@pytest.mark.parametrize(
    ("pattern", "exten", "hit"),
    [
        ("_[+0-9].", "+441632960001", True),
        ("_[+0-9].", "01632960001", True),
        ("_[+0-9].", "s", False),
        ("_[+0-9].", "0", False),  # "." needs one more character
        ("_X.", "1", False),
        ("_NXX", "200", True),
        ("_NXX", "100", False),
        ("s", "s", True),
    ],
)
def test_extension_patterns(pattern: str, exten: str, hit: bool) -> None:
    assert matches(pattern, exten) is hit


def test_arguments_and_options() -> None:
    data = "PJSIP/+441632960999@pstn,,b(callrouter-headers^partner^1(harborough,01632960001))"
    assert split_args(data) == [
        "PJSIP/+441632960999@pstn",
        "",
        "b(callrouter-headers^partner^1(harborough,01632960001))",
    ]
    assert parse_options("cb(ctx^s^1(a,b))") == {"c": "", "b": "ctx^s^1(a,b)"}
    assert split_args('a,"b,c",d') == ["a", "b,c", "d"]


def test_dialplan_lines_labels_and_exact_before_pattern() -> None:
    dialplan = Dialplan.parse(
        "[ctx]\nexten => _X.,1,NoOp(pattern)\n same => n(next),NoOp(labelled)\n"
        "exten => 123,1,NoOp(exact) ; a comment\n"
    )
    exact = dialplan.find("ctx", "123")
    assert exact is not None
    assert exact.priorities[1].data == "exact"
    pattern = dialplan.find("ctx", "456")
    assert pattern is not None
    assert pattern.label("next") == 2


async def test_unknown_application_fails_loudly() -> None:
    pbx = Pbx(Dialplan.parse("[ctx]\nexten => s,1,MixMonitor(x.wav)\n"), {})
    with pytest.raises(DialplanError, match="MixMonitor"):
        await pbx.run(pbx.new_channel("PJSIP/a-1"), "ctx", "s")


async def test_gosub_arguments_and_return() -> None:
    pbx = Pbx(
        Dialplan.parse(
            "[ctx]\nexten => s,1,Gosub(sub,s,1(one,two))\n same => n,Set(AFTER=${ARG1}|${R})\n"
            "[sub]\nexten => s,1,Set(R=${ARG1}-${ARG2}-${ARG3})\n same => n,Return()\n"
        ),
        {},
    )
    channel = pbx.new_channel("PJSIP/a-1")
    await pbx.run(channel, "ctx", "s")
    assert channel.get("R") == "one-two-"
    assert channel.get("AFTER") == "|one-two-"  # no ARG1 outside the Gosub
