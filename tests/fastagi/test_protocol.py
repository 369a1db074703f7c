"""The pure codec against lines copied from the Asterisk 22.10.1 captures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.agi import parse_args
from ivr.fastagi import protocol
from ivr.fastagi.protocol import (
    AgiProtocolError,
    decode_env_block,
    encode_command,
    is_final_line,
    is_hangup_line,
    parse_env_line,
    parse_reply,
    parse_reply_line,
    parse_request,
    quote,
    reply_complete,
    sanitize_text,
    split_script,
    token,
)
from tests.fastagi.transcripts import load_env


def test_pjsip_environment_block_is_typed() -> None:
    request = parse_request(load_env("agi_suite_pjsip"))
    assert request.network_script == "suite?tenant=harborough"
    assert request.script == "suite"
    assert dict(request.query) == {"tenant": "harborough"}
    assert request.args == ("arg1", "arg2")
    assert request.request == "agi://127.0.0.1:4573/suite?tenant=harborough"
    assert request.channel == "PJSIP/sipp-00000023"
    assert (request.uniqueid, request.language, request.type) == ("1795533594.71", "en", "PJSIP")
    assert (request.callerid, request.calleridname) == ("01632960123", "Jane Resident")
    assert (request.dnid, request.rdnis, request.context) == ("1000", "unknown", "probe")
    assert (request.extension, request.priority, request.version) == ("1000", "3", "22.10.1")
    assert (request.enhanced, request.accountcode) == ("0.0", "")
    assert request.threadid == "139996058158784"
    assert request.env["agi_callingpres"] == "0"
    assert len(request.env) == 24


def test_local_and_no_caller_id_blocks() -> None:
    local = parse_request(load_env("agi_suite_local"))
    assert (local.channel, local.type, local.dnid) == ("Local/1000@probe-00000012;2", "Local", "unknown")
    anonymous = parse_request(load_env("agi_local_playdtmf"))
    assert (anonymous.callerid, anonymous.calleridname) == ("unknown", "unknown")
    assert anonymous.env["agi_callingpres"] == "67"
    assert anonymous.args == ()
    assert anonymous.query == {}


def test_empty_value_line_keeps_its_key() -> None:
    # agi_suite_pjsip.txt: b'agi_accountcode: \n'
    assert parse_env_line("agi_accountcode: ") == ("agi_accountcode", "")
    assert parse_env_line("agi_accountcode:") == ("agi_accountcode", "")


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\n\n",
        b"agi_network: yes\nhello\n\n",
        b"agi_network: yes\n",
        b"\n\n",
        b"agi_channel: PJSIP/x\n\n",  # no agi_network_script
    ],
)
def test_garbage_environment_is_rejected(data: bytes) -> None:
    with pytest.raises(AgiProtocolError):
        parse_request(data)


def test_query_string_is_split_from_the_route() -> None:
    assert split_script("route?tenant=harborough&dnis=01632960001") == (
        "route",
        {"tenant": "harborough", "dnis": "01632960001"},
    )
    assert split_script("/ivr/main?flag") == ("ivr/main", {"flag": ""})
    assert split_script("route") == ("route", {})
    assert split_script("route?label=Zo%C3%AB+Smith&") == ("route", {"label": "Zoë Smith"})


def test_every_call_of_a_route_shares_one_read_only_query_and_the_memo_is_bounded() -> None:
    block = b"agi_network_script: route?tenant=harborough\nagi_uniqueid: %d\n\n"
    first, second = parse_request(block % 1), parse_request(block % 2)
    assert (first.script, dict(first.query), second.uniqueid) == ("route", {"tenant": "harborough"}, "2")
    assert second.query is first.query
    with pytest.raises(TypeError):
        first.query["tenant"] = "charnwood"  # type: ignore[index]
    for n in range(2 * protocol._SCRIPTS_MAX):
        assert parse_request(b"agi_network_script: r%d?n=%d\n\n" % (n, n)).query == {"n": str(n)}
    assert len(protocol._SCRIPTS) <= protocol._SCRIPTS_MAX


@pytest.mark.parametrize(
    "data",
    [
        b"agi_network_script: route\nagi_a b: c\n\n",  # a space in the key
        b"agi_network_script: route\nnot_agi: c\n\n",
        b"agi_network_script: route\n\nagi_x: y\n\n",  # an empty line inside
    ],
)
def test_a_block_with_one_bad_line_is_refused(data: bytes) -> None:
    with pytest.raises(AgiProtocolError):
        parse_request(data)


def test_odd_but_valid_lines_read_as_before() -> None:
    env = decode_env_block(b"agi_network_script: route\nagi_a:b: c: d\nagi_empty:\nagi_cr: x\r\n\n")
    assert env == {"agi_network_script": "route", "agi_a:b": "c: d", "agi_empty": "", "agi_cr": "x\r"}


# (line from a capture, code, result, value, endpos); capture named in the comment
REPLIES = [
    ("200 result=0", 200, "0", None, None),  # agi_suite_pjsip ANSWER
    ("200 result=4", 200, "4", None, None),  # CHANNEL STATUS before answer
    ("200 result=-1", 200, "-1", None, None),  # GET DATA no-such-prompt-xyz
    ("200 result=0 endpos=11360", 200, "0", None, 11360),  # STREAM FILE hello-world
    ("200 result=49 endpos=17280", 200, "49", None, 17280),  # agi_dtmf_pjsip, digit 1
    ("200 result=-1 endpos=0", 200, "-1", None, 0),  # STREAM FILE missing prompt
    ("200 result=0 endpos=-1", 200, "0", None, -1),  # CONTROL STREAM FILE
    ("200 result=234", 200, "234", None, None),  # GET DATA max digits
    ("200 result=6789*", 200, "6789*", None, None),  # GET DATA ended by #
    ("200 result=5 (timeout)", 200, "5", "timeout", None),  # GET DATA partial
    ("200 result= (timeout)", 200, "", "timeout", None),  # GET DATA nothing typed
    ("200 result=1 (revenues)", 200, "1", "revenues", None),  # GET VARIABLE
    ("200 result=1 ()", 200, "1", "", None),  # GET VARIABLE EMPTYVAR
    ("200 result=1 (hello world from agi)", 200, "1", "hello world from agi", None),
    ('200 result=1 (say "hi" now)', 200, "1", 'say "hi" now', None),
    ('200 result=1 ("Jane Resident" <01632960123>)', 200, "1", '"Jane Resident" <01632960123>', None),
    ("200 result=1 (a,b;c|d)", 200, "1", "a,b;c|d", None),
    ("200 result=1 (f(x) (y))", 200, "1", "f(x) (y)", None),  # parentheses in a value
    ("200 result=-2", 200, "-2", None, None),  # EXEC NoSuchApplication
]


@pytest.mark.parametrize(("line", "code", "result", "value", "endpos"), REPLIES)
def test_reply_forms(line: str, code: int, result: str, value: str | None, endpos: int | None) -> None:
    reply = parse_reply_line(line)
    assert (reply.code, reply.result, reply.value, reply.endpos) == (code, result, value, endpos)
    assert reply.raw == line


def test_reply_helpers() -> None:
    assert parse_reply_line("200 result=5 (timeout)").timed_out
    assert parse_reply_line("200 result=49 endpos=1").result_int == 49
    assert parse_reply_line("200 result=6789*").result_int is None
    assert parse_reply_line("200 result= (timeout)").result_int is None


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        ("510 Invalid or unknown command", 510, "Invalid or unknown command"),
        (
            "511 Command Not Permitted on a dead channel or intercept routine",
            511,
            "Command Not Permitted on a dead channel or intercept routine",
        ),
    ],
)
def test_error_replies(line: str, code: int, message: str) -> None:
    reply = parse_reply_line(line)
    assert (reply.code, reply.message, reply.result, reply.ok) == (code, message, None, False)


def test_usage_block_is_one_reply() -> None:
    # agi_suite_pjsip.txt, SET VARIABLE UNQUOTEDSPACES hello world
    lines = [
        "520-Invalid command syntax.  Proper usage follows:",
        "Sets a variable to the current channel.",
        "520 End of proper usage.",
    ]
    assert not reply_complete(lines[:1])
    assert not reply_complete(lines[:2])
    assert reply_complete(lines)
    reply = parse_reply(lines)
    assert reply.code == 520
    assert reply.usage == ("Sets a variable to the current channel.",)
    assert reply.message == "Invalid command syntax.  Proper usage follows:"


def test_bad_replies_raise() -> None:
    with pytest.raises(AgiProtocolError):
        parse_reply_line("HTTP/1.1 200 OK")
    with pytest.raises(AgiProtocolError):
        parse_reply(["520-Invalid command syntax.  Proper usage follows:", "text"])


def test_line_kinds() -> None:
    assert is_hangup_line("HANGUP")
    assert not is_hangup_line("HANGUP ")
    assert is_final_line("520 End of proper usage.")
    assert not is_final_line("520-Invalid command syntax.  Proper usage follows:")
    assert not is_final_line("    <value>SUCCESS</value>")


def test_quote_escapes_what_asterisk_unescapes() -> None:
    assert quote('say "hi" now') == '"say \\"hi\\" now"'
    assert quote("C:\\x") == '"C:\\\\x"'
    assert quote("") == '""'
    for bad in ("a\nb", "a\rb", "a\x00b"):
        with pytest.raises(ValueError, match="cannot contain"):
            quote(bad)


def test_commands_end_in_lf_only() -> None:
    assert encode_command("SET VARIABLE", "ROUTE", quote("revenues")) == b'SET VARIABLE ROUTE "revenues"\n'
    with pytest.raises(ValueError, match="cannot contain"):
        encode_command("NOOP\r")


def test_tokens_and_free_text() -> None:
    assert token("CALLERID(num)") == "CALLERID(num)"
    for bad in ("two words", 'q"uote', "", "tab\tbed", "back\\slash"):
        with pytest.raises(ValueError, match="bare AGI argument"):
            token(bad)
    assert sanitize_text("line one\nline two\r") == "line one line two "


@given(st.text(alphabet=st.characters(blacklist_characters="\n\r\x00", blacklist_categories=["Cs"])))
def test_quoted_values_survive_asterisk_argument_parsing(value: str) -> None:
    line = encode_command("SET VARIABLE", "X", quote(value)).decode()[:-1]
    assert parse_args(line) == ["SET", "VARIABLE", "X", value]


def test_decode_env_block_requires_terminator() -> None:
    with pytest.raises(AgiProtocolError, match="terminated"):
        decode_env_block(b"agi_network: yes\n")
    assert decode_env_block(b"agi_network: yes\n\n") == {"agi_network": "yes"}


def test_importing_the_codec_does_not_import_the_server() -> None:
    """The classic AGI fallback script imports ``ivr.fastagi.protocol``: it must stay light."""
    import subprocess
    import sys

    code = (
        "import sys, ivr.fastagi.protocol\n"
        "heavy = [m for m in ('asyncio', 'structlog', 'ivr.fastagi.server',"
        " 'ivr.fastagi.channel') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
        "import ivr.fastagi as f\n"
        "assert f.FastAgiServer.__name__ == 'FastAgiServer' and f.AgiHangup.__name__ == 'AgiHangup'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_package_names_resolve_lazily() -> None:
    import ivr.fastagi as package

    for name in package.__all__:
        assert getattr(package, name) is not None
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        package.NoSuchName  # noqa: B018


_ENV_PIECES = ["a", "_", ":", " ", "=", "?", "é", "\r", "\t", "agi_", ": "]
_ENV_TEXT = st.lists(st.sampled_from(_ENV_PIECES)).map("".join)


def _slow_decode(data: bytes) -> dict[str, str]:
    """The line-by-line reference parse the one-regex fast path must agree with."""
    from ivr.fastagi.protocol import parse_env_lines

    return parse_env_lines(data[:-2].decode("utf-8", errors="replace").split("\n"))


@given(st.lists(_ENV_TEXT, min_size=1, max_size=6))
def test_env_block_fast_path_agrees_with_the_line_parser(lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n\n").encode()
    try:
        expected: dict[str, str] | type[AgiProtocolError] = _slow_decode(data)
    except AgiProtocolError:
        expected = AgiProtocolError
    if not "\n".join(lines):
        expected = AgiProtocolError  # empty block
    try:
        got: dict[str, str] | type[AgiProtocolError] = decode_env_block(data)
    except AgiProtocolError:
        got = AgiProtocolError
    assert got == expected


@pytest.mark.parametrize("line", ["200 result=0", "200 result=1", "200 result=-1"])
def test_common_replies_are_parsed_once_and_equal_a_fresh_parse(line: str) -> None:
    from ivr.fastagi import protocol

    cached = parse_reply_line(line)
    assert cached is parse_reply_line(line)
    saved = protocol._COMMON_REPLIES.pop(line)
    try:
        assert parse_reply_line(line) == cached
    finally:
        protocol._COMMON_REPLIES[line] = saved


def test_reply_codes_are_ascii_digits() -> None:
    # Found by fuzzing: "²".isdigit() is True but int("²") raises ValueError, and \d took
    # Arabic-Indic digits for a reply code. Asterisk writes ASCII digits only.
    assert not is_final_line("²²² End of proper usage.")
    with pytest.raises(AgiProtocolError, match="unterminated 520"):
        parse_reply(["520-Invalid command syntax.  Proper usage follows:", "²²² End of proper usage."])
    with pytest.raises(AgiProtocolError, match="not an AGI reply"):
        parse_reply_line("٢٠٠ result=1")


def test_an_endpos_of_thousands_of_digits_is_not_a_position() -> None:
    # Found by fuzzing: int() of over 4300 digits raised ValueError out of parse_reply_line.
    reply = parse_reply_line("200 result=0 endpos=" + "9" * 5000)
    assert (reply.code, reply.result, reply.endpos) == (200, None, None)
    assert parse_reply_line("200 result=0 endpos=9223372036854775807").endpos == 2**63 - 1


def test_a_token_may_not_end_in_a_line_feed() -> None:
    # Found by fuzzing: the token pattern ended in "$", which also matches before a final "\n".
    with pytest.raises(ValueError, match="bare AGI argument"):
        token("CR_ROUTE\n")
