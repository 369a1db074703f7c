"""Property tests of the pure FastAGI codec over arbitrary input.

The codec documents one error for bytes that are not FastAGI: :class:`AgiProtocolError`
(``quote``/``token``/``encode_command`` refuse what cannot be sent with ``ValueError``).
Anything else escaping is a bug; so is output larger than the input it came from."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from emulator.agi import parse_args
from ivr.fastagi.protocol import (
    AgiProtocolError,
    AgiReply,
    AgiRequest,
    decode_env_block,
    encode_command,
    is_final_line,
    parse_env_lines,
    parse_reply,
    parse_reply_line,
    parse_request,
    quote,
    reply_complete,
    sanitize_text,
    split_script,
    token,
)
from tests.fuzz.strategies import AWKWARD_BYTES, LINE_TEXT

# --- environment block ---------------------------------------------------------------------

ENV_KEY = st.one_of(
    st.sampled_from(["agi_network_script", "agi_arg_1", "agi_arg_2", "agi_arg_3", "agi_uniqueid"]),
    st.text(st.characters(blacklist_characters=" \n", blacklist_categories=["Cs"]), max_size=12).map(
        "agi_".__add__
    ),
    LINE_TEXT,
)
ENV_SEPARATOR = st.sampled_from([": ", ":", " : ", ""])
ENV_LINE = st.builds(lambda k, sep, v: f"{k}{sep}{v}", ENV_KEY, ENV_SEPARATOR, LINE_TEXT)
ENV_BLOCK = st.one_of(
    st.binary(max_size=300),
    st.lists(ENV_LINE, max_size=8).map(lambda lines: ("\n".join(lines) + "\n\n").encode()),
    st.lists(st.one_of(ENV_LINE.map(str.encode), AWKWARD_BYTES), max_size=8).map(
        lambda parts: b"\n".join(parts) + b"\n\n"
    ),
)


def _text_size(request: AgiRequest) -> int:
    return sum(len(k) + len(v) for k, v in request.env.items())


@given(ENV_BLOCK)
@example(b"agi_network_script: a\xff\x00b?x=%ff&y\r\n\n")
def test_any_environment_block_parses_or_is_a_protocol_error(data: bytes) -> None:
    try:
        request = parse_request(data)
    except AgiProtocolError:
        return
    # One character per input byte at most (an invalid byte becomes one U+FFFD).
    assert _text_size(request) <= len(data)
    assert len(request.args) <= len(request.env)
    assert all(request.env[f"agi_arg_{i + 1}"] == arg for i, arg in enumerate(request.args))
    assert request.network_script == request.env["agi_network_script"]
    assert request.script == request.network_script.partition("?")[0].strip("/")


@given(st.dictionaries(ENV_KEY.filter(lambda k: k.startswith("agi_") and "\n" not in k), LINE_TEXT))
def test_a_well_formed_block_round_trips(env: dict[str, str]) -> None:
    env = {k: v.replace("\n", " ") for k, v in env.items() if ": " not in k and " " not in k}
    env["agi_network_script"] = "route"
    data = "".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n"
    assert dict(parse_request(data).env) == env


@given(ENV_BLOCK)
def test_the_one_regex_fast_path_agrees_with_the_line_parser(data: bytes) -> None:
    if not data.endswith(b"\n\n") or data == b"\n\n":
        return
    outcomes = []
    for parse in (decode_env_block, lambda d: parse_env_lines(d[:-2].decode(errors="replace").split("\n"))):
        try:
            outcomes.append(parse(data))
        except AgiProtocolError:
            outcomes.append(AgiProtocolError)
    assert outcomes[0] == outcomes[1]


@given(LINE_TEXT)
def test_any_network_script_splits(network_script: str) -> None:
    path, query = split_script(network_script)
    assert len(path) <= len(network_script)
    assert sum(len(k) + len(v) for k, v in query.items()) <= len(network_script)


# --- replies -------------------------------------------------------------------------------

CODE = st.one_of(
    st.sampled_from(["200", "510", "511", "520"]),
    st.text(st.sampled_from("0123456789²٣"), min_size=3, max_size=3),  # digits int() may refuse
)
REPLY_LINE = st.one_of(
    LINE_TEXT,
    st.builds(lambda code, rest: f"{code} {rest}", CODE, LINE_TEXT),
    st.builds(
        lambda r, v, e: f"200 result={r}{v}{e}",
        LINE_TEXT,
        st.one_of(st.just(""), LINE_TEXT.map(lambda v: f" ({v})")),
        st.one_of(st.just(""), LINE_TEXT.map(lambda e: f" endpos={e}")),
    ),
)


def _check_reply(reply: AgiReply, size: int) -> None:
    assert 0 <= reply.code <= 999
    assert len(reply.raw) <= size
    for part in (reply.result, reply.value, reply.message, *reply.usage):
        assert part is None or len(part) <= size
    assert reply.result_int is None or isinstance(reply.result_int, int)


@given(REPLY_LINE)
@example("²²² result=1")  # str.isdigit() says yes, int() says no
@example("200 result=1 endpos=" + "9" * 5000)  # over int()'s digit limit
def test_any_reply_line_parses_or_is_a_protocol_error(line: str) -> None:
    try:
        reply = parse_reply_line(line)
    except AgiProtocolError:
        return
    _check_reply(reply, len(line))
    assert reply.raw == line


@given(
    st.lists(
        st.one_of(REPLY_LINE, st.just("520-Invalid command syntax."), CODE.map("{} End of usage".format)),
        min_size=1,
        max_size=5,
    )
)
@example(["520-Usage", "²²² End"])
def test_a_complete_reply_parses_or_is_a_protocol_error(lines: list[str]) -> None:
    if not reply_complete(lines):
        return
    try:
        reply = parse_reply(lines)
    except AgiProtocolError:
        return
    _check_reply(reply, sum(len(line) + 1 for line in lines))


@given(LINE_TEXT)
@example("٢٠٠ result=1")
def test_a_final_line_is_three_ascii_digits_as_asterisk_writes_them(line: str) -> None:
    if is_final_line(line):
        assert line[:3].isascii()
        assert int(line[:3]) >= 0


# --- commands ------------------------------------------------------------------------------


@given(LINE_TEXT)
def test_quote_sends_the_value_or_refuses_it(value: str) -> None:
    try:
        quoted = quote(value)
    except ValueError:
        assert any(c in value for c in "\n\r\x00")
        return
    line = encode_command("SET VARIABLE", "X", quoted)
    assert line.count(b"\n") == 1
    assert parse_args(line.decode()[:-1]) == ["SET", "VARIABLE", "X", value]


@given(LINE_TEXT)
def test_a_token_is_one_word_or_refused(value: str) -> None:
    try:
        word = token(value)
    except ValueError:
        return
    assert parse_args(encode_command("EXEC", word).decode()[:-1]) == ["EXEC", value]


@given(LINE_TEXT)
def test_sanitized_text_keeps_its_length_and_has_no_control_characters(text: str) -> None:
    clean = sanitize_text(text)
    assert len(clean) == len(text)
    assert not any(ord(c) < 32 or ord(c) == 127 for c in clean)
    quote(clean)  # always sendable
