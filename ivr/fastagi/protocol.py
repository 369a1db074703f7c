"""Pure FastAGI wire codec: no sockets, no asyncio.

Everything here follows what Asterisk 22 actually puts on the wire (res_agi.c):

* Asterisk opens the connection and writes the environment block, one ``key: value\\n`` line
  per variable, ended by an empty line, e.g. ``agi_network_script: suite?tenant=harborough\\n``
  ... ``agi_accountcode: \\n`` ... ``agi_arg_1: arg1\\n`` then ``\\n``.
* Every line Asterisk sends ends in a bare ``\\n``.
* The server sends one command line ending in ``\\n`` (never ``\\r\\n``: Asterisk keeps the
  ``\\r`` as part of the last word, so ``NOOP\\r\\n`` is answered ``510 Invalid or unknown
  command``) and reads one reply: ``200 result=1``, ``200 result=49 endpos=17280``,
  ``200 result= (timeout)``, ``200 result=1 (hello world from agi)``,
  ``510 Invalid or unknown command``,
  ``511 Command Not Permitted on a dead channel or intercept routine`` or the multi-line
  ``520-Invalid command syntax.  Proper usage follows:`` ... ``520 End of proper usage.``.
* ``HANGUP\\n`` is unsolicited: Asterisk writes it when it notices the channel hung up, which
  can be between a reply and the next command's reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl

HANGUP_LINE = "HANGUP"
FAILURE_LINE = b"failure\n"
USAGE_START = "520-"

# ASCII digits only: Asterisk writes no others (``\d`` would read ``٢٠٠`` as 200); an ``endpos``
# longer than a 64-bit sample count is not a position (int() of 5000 digits raises ValueError).
_FINAL_LINE = re.compile(r"^([0-9]{3}) (.*)$")
_RESULT = re.compile(r"^result=(?P<result>\S*)(?: \((?P<value>.*)\))?(?: endpos=(?P<endpos>-?[0-9]{1,19}))?$")
_SAFE_TOKEN = re.compile(r"[^\s\"\\\x00-\x1f\x7f]+")  # fullmatch: no trailing line feed


class AgiProtocolError(ValueError):
    """Bytes that are not FastAGI as Asterisk speaks it (garbage, truncated block)."""


# ---------------------------------------------------------------------------------------------
# Environment block


def _empty_env() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """The environment block Asterisk sends when it connects, typed.

    ``script`` is the path of ``agi_network_script`` with the query string removed
    (``suite?tenant=harborough`` -> ``suite``); ``query`` holds the parsed query string
    (``{"tenant": "harborough"}``); ``args`` are the ``agi_arg_N`` values in order (the
    arguments given to ``AGI()`` after the URL). Asterisk writes ``unknown`` for a missing
    caller id, dnid or rdnis; the values are kept verbatim. ``env`` is the raw block."""

    network_script: str
    script: str
    query: Mapping[str, str]
    args: tuple[str, ...]
    request: str = ""
    channel: str = ""
    uniqueid: str = ""
    language: str = ""
    type: str = ""
    version: str = ""
    callerid: str = ""
    calleridname: str = ""
    dnid: str = ""
    rdnis: str = ""
    context: str = ""
    extension: str = ""
    priority: str = ""
    enhanced: str = ""
    accountcode: str = ""
    threadid: str = ""
    env: Mapping[str, str] = field(default_factory=_empty_env)


def parse_env_line(line: str) -> tuple[str, str]:
    """Split one ``agi_key: value`` line (without its ``\\n``).

    Asterisk writes ``agi_accountcode: `` for an empty value, so the separator is ``": "`` and
    a line ending in ``":"`` is accepted as an empty value too."""
    key, sep, value = line.partition(": ")
    if not sep and line.endswith(":"):
        key, sep = line[:-1], ":"
    if not sep or not _is_env_key(key):
        raise AgiProtocolError(f"not an AGI environment line: {line[:40]!r}")
    return key, value


def _is_env_key(key: str) -> bool:
    return key.startswith("agi_") and " " not in key


def parse_env_lines(lines: Iterable[str]) -> dict[str, str]:
    """Parse the lines of an environment block (no trailing empty line) into a dict."""
    env: dict[str, str] = {}
    for line in lines:
        key, value = parse_env_line(line)
        env[key] = value
    return env


def decode_env_block(data: bytes) -> dict[str, str]:
    """Decode a whole block as read from the socket, ending in ``\\n\\n``.

    Raises :class:`AgiProtocolError` on anything that is not a well-formed block."""
    if not data.endswith(b"\n\n"):
        raise AgiProtocolError("environment block not terminated by an empty line")
    text = data[:-2].decode("utf-8", errors="replace")
    if not text:
        raise AgiProtocolError("empty environment block")
    # Every line a plain ``agi_key: value``, as Asterisk always writes them: one pass that
    # splits and checks (~10 % faster than the one-regex pass it replaces); any other line
    # (``agi_key:`` with no space, garbage) goes through the line parser, which raises.
    lines = text.split("\n")
    env: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if not sep or key[:4] != "agi_" or " " in key:
            return parse_env_lines(lines)
        env[key] = value
    return env


def split_script(network_script: str) -> tuple[str, dict[str, str]]:
    """``suite?tenant=harborough`` -> ``("suite", {"tenant": "harborough"})``.

    Asterisk passes the query string through unparsed; a leading ``/`` is dropped."""
    path, _, query = network_script.partition("?")
    return path.strip("/"), dict(parse_qsl(query, keep_blank_values=True))


_SCRIPTS: dict[str, tuple[str, Mapping[str, str]]] = {}
"""Memo of :func:`split_script` (a pure function) for the requests' ``agi_network_script``: a
dialplan names a handful, and every call of a route repeats its own (``parse_qsl`` was ~2 us of
the ~16 us it takes to parse a block, ``docs/performance.md``, "Per core"). Bounded: a peer
naming endless scripts only stops being remembered."""
_SCRIPTS_MAX = 256


def _script(network_script: str) -> tuple[str, Mapping[str, str]]:
    known = _SCRIPTS.get(network_script)
    if known is None:
        path, query = split_script(network_script)
        known = (path, MappingProxyType(query))  # read-only: one mapping shared by every call
        if len(_SCRIPTS) < _SCRIPTS_MAX:
            _SCRIPTS[network_script] = known
    return known


def _ordered_args(env: Mapping[str, str]) -> tuple[str, ...]:
    args: list[str] = []
    while (value := env.get(f"agi_arg_{len(args) + 1}")) is not None:
        args.append(value)
    return tuple(args)


def request_from_env(env: Mapping[str, str]) -> AgiRequest:
    """Build an :class:`AgiRequest` from a parsed block; ``agi_network_script`` is required."""
    return _request(dict(env))


def _request(env: dict[str, str]) -> AgiRequest:
    """:func:`request_from_env` for a dict nobody else holds (kept as the request's ``env``)."""
    network_script = env.get("agi_network_script")
    if network_script is None:
        raise AgiProtocolError("environment block without agi_network_script")
    script, query = _script(network_script)
    return AgiRequest(
        network_script=network_script,
        script=script,
        query=query,
        args=_ordered_args(env),
        request=env.get("agi_request", ""),
        channel=env.get("agi_channel", ""),
        uniqueid=env.get("agi_uniqueid", ""),
        language=env.get("agi_language", ""),
        type=env.get("agi_type", ""),
        version=env.get("agi_version", ""),
        callerid=env.get("agi_callerid", ""),
        calleridname=env.get("agi_calleridname", ""),
        dnid=env.get("agi_dnid", ""),
        rdnis=env.get("agi_rdnis", ""),
        context=env.get("agi_context", ""),
        extension=env.get("agi_extension", ""),
        priority=env.get("agi_priority", ""),
        enhanced=env.get("agi_enhanced", ""),
        accountcode=env.get("agi_accountcode", ""),
        threadid=env.get("agi_threadid", ""),
        env=MappingProxyType(env),
    )


def parse_request(data: bytes) -> AgiRequest:
    """Decode the raw environment block into an :class:`AgiRequest`."""
    return _request(decode_env_block(data))


# ---------------------------------------------------------------------------------------------
# Replies


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply from Asterisk.

    ``code`` is 200, 510, 511 or 520. For 200 replies ``result`` is the raw text after
    ``result=`` (``"49"``, ``"-1"``, ``"6789*"``, ``""`` for ``200 result= (timeout)``),
    ``value`` the text in parentheses (``"hello world from agi"``, ``"timeout"``; it may itself
    contain parentheses and quotes: ``("Jane Resident" <01632960123>)``) and ``endpos`` the
    sample position of STREAM FILE. ``message`` is the text after the code for 5xx replies and
    ``usage`` the documentation lines of a 520 block."""

    code: int
    raw: str
    result: str | None = None
    value: str | None = None
    endpos: int | None = None
    message: str = ""
    usage: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def result_int(self) -> int | None:
        """``result`` as an int, or None when it is not a number (GET DATA digits ``*``)."""
        try:
            return int(self.result) if self.result else None
        except ValueError:
            return None

    @property
    def timed_out(self) -> bool:
        """GET DATA ended by its timeout: ``200 result=5 (timeout)``."""
        return self.value == "timeout"


def is_hangup_line(line: str) -> bool:
    """The unsolicited ``HANGUP`` line Asterisk writes when the channel goes away."""
    return line == HANGUP_LINE


def is_final_line(line: str) -> bool:
    """A reply's last line: three digits and a space (``200 result=0``, ``520 End of ...``)."""
    code = line[:3]
    return len(line) >= 4 and line[3] == " " and code.isascii() and code.isdigit()


def reply_complete(lines: Sequence[str]) -> bool:
    """True once ``lines`` (without HANGUP lines) hold a whole reply."""
    if not lines:
        return False
    if lines[0].startswith(USAGE_START):
        return len(lines) > 1 and is_final_line(lines[-1])
    return True


def parse_reply(lines: Sequence[str]) -> AgiReply:
    """Parse one complete reply (one line, or a 520 usage block) without line ends."""
    if lines and lines[0].startswith(USAGE_START):
        return _parse_usage_block(lines)
    if len(lines) != 1:
        raise AgiProtocolError(f"not a single reply line: {lines!r}")
    return parse_reply_line(lines[0])


def _parse_usage_block(lines: Sequence[str]) -> AgiReply:
    if len(lines) < 2 or not is_final_line(lines[-1]):
        raise AgiProtocolError("unterminated 520 usage block")
    code = int(lines[-1][:3])
    return AgiReply(code, "\n".join(lines), message=lines[0][4:], usage=tuple(lines[1:-1]))


def parse_reply_line(line: str) -> AgiReply:
    """Parse a single final reply line such as ``200 result=1 (revenues)``."""
    common = _COMMON_REPLIES.get(line)
    if common is not None:  # replies are immutable: the usual few are parsed once
        return common
    match = _FINAL_LINE.match(line)
    if match is None:
        raise AgiProtocolError(f"not an AGI reply: {line[:60]!r}")
    code, rest = int(match[1]), match[2]
    if code != 200:
        return AgiReply(code, line, message=rest)
    result = _RESULT.match(rest)
    if result is None:
        return AgiReply(code, line, message=rest)
    endpos = result["endpos"]
    return AgiReply(
        code,
        line,
        result=result["result"],
        value=result["value"],
        endpos=int(endpos) if endpos is not None else None,
    )


_COMMON_REPLIES: dict[str, AgiReply] = {}
_COMMON_REPLIES.update(
    (line, parse_reply_line(line)) for line in ("200 result=0", "200 result=1", "200 result=-1")
)


# ---------------------------------------------------------------------------------------------
# Commands


def quote(value: str) -> str:
    """Quote one command argument the way Asterisk's argument parser reads it back.

    Inside double quotes Asterisk keeps spaces; ``\\`` makes the next character literal, so
    ``\\`` and ``"`` are escaped (``SET VARIABLE ESCAPEDQUOTES "say \\"hi\\" now"`` gives
    ``say "hi" now``). A line feed cannot be carried at all (Asterisk reads one command per
    line and would run the rest as a second command), nor can CR or NUL: they raise
    ValueError instead of being sent."""
    _reject_control(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _reject_control(value: str) -> None:
    for char in ("\n", "\r", "\x00"):
        if char in value:
            raise ValueError(f"AGI argument cannot contain {char!r}")


def token(value: str) -> str:
    """Check a bare argument (variable name, prompt file, application) and return it.

    Bare tokens may not contain whitespace, quotes, backslashes or control characters:
    Asterisk would split or unescape them."""
    if not _SAFE_TOKEN.fullmatch(value):
        raise ValueError(f"not a valid bare AGI argument: {value!r}")
    return value


def encode_command(*words: str) -> bytes:
    """Join already quoted/checked words into one command line ending in ``\\n`` only."""
    line = " ".join(words)
    _reject_control(line)
    return line.encode("utf-8") + b"\n"


def sanitize_text(text: str) -> str:
    """Replace control characters by spaces (for free text such as VERBOSE messages)."""
    return "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in text)
