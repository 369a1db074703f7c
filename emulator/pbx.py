"""Asterisk's PBX core, emulated: channels run the contexts of real extensions.conf text.

This is a small interpreter for the dialplan applications callrouter's dialplans use, faithful
to Asterisk 22.10.1 where the captures in the Asterisk transcripts show its behaviour:

* Substitution of ``${VAR}``, ``${VAR:offset:length}``, ``${FUNC(args)}`` and ``$[expression]``
  (the ast_expr2 operators ``| & = != < > <= >= + - =~ :``, quoted strings, parentheses).
* Variables and inheritance (main/channel.c ``ast_channel_inherit_variables``): a channel that
  Dial() creates gets the caller's ``__VAR`` as ``__VAR`` and its ``_VAR`` as plain ``VAR``;
  plain variables are not inherited. A Local channel's ``;2`` leg gets a copy of every variable of
  its ``;1`` leg (main/core_unreal.c). So ``_`` survives one hop, ``__`` every hop, plain none
  (``dial_predial_handler_variables.txt``).
* ``Dial(PJSIP/...)`` parses its destination like chan_pjsip's ``request()``:
  ``endpoint``, ``number@endpoint`` (the number becomes the Request-URI user part of the AOR
  contact) and ``endpoint/<SIP URI>`` work; ``endpoint/<number>`` fails at once with
  ``DIALSTATUS=CHANUNAVAIL``, ``HANGUPCAUSE=3`` and no channel (``dial_pjsip_trunk_forms.txt``).
  ``Local/exten@context`` runs the ``;2`` leg through the dialplan.
* Dial option ``b(context^exten^priority(args))`` runs a pre-dial handler (a Gosub with ``^``
  read as ``,``) on the new channel before its INVITE; ``Set(PJSIP_HEADER(add,Name)=value)``
  there adds a header to the INVITE, with an empty value when the value is empty. An answered
  ``Dial()`` without option ``g`` ends the caller's dialplan (the bridge ended: Dial returns -1).
  Dial() waits on its far end, so other channels' events come first (a callback's
  ``OriginateResponse`` before its ``;1`` leg's ``DialBegin``); when it returns its outward
  legs end (Hangup 16 after a talk, 17 busy, 0 unanswered) and a busy one leaves the calling
  channel's own hangup cause 17 (``callback_originate.txt``).
* ``PJSIP_HEADER(read,Name)`` reads the headers of the INVITE that brought a PJSIP channel in
  (:attr:`Channel.received`): absent, empty with no log line; on any other channel, empty and
  ``ERROR ... This function requires a PJSIP channel.``; a header too long for the function's
  4096-byte buffer, empty and an ERROR line. ``URIENCODE()`` and ``CHANNEL(channeltype)`` as
  Asterisk's (``pjsip_header_read_probe.txt``, ``agi_inbound_partner_headers.txt``).
* ``AGI(url,arg1,arg2,...)`` splits its (substituted) data like every application
  (``AST_STANDARD_APP_ARGS``): a comma in a variable's value makes another argument, so
  ``agi_arg_N`` are the pieces (README 1.2). ``agi://`` URLs are real FastAGI sessions
  (:mod:`emulator.agi`), a classic script is run as a process by the AGI runner
  (:mod:`emulator.classic`: SIGHUP, not a ``HANGUP`` line, when the channel hangs up); other
  applications: Answer, NoOp, Verbose, Log, UserEvent, Set,
  ExecIf, Goto, GotoIf, Gosub, Return, Playback, Queue (its outcome from a function),
  VoiceMail, Wait, Hangup.
* Each channel has a :class:`~emulator.line.CallerLine`: its clock and its absolute timeout.
  ``Set(TIMEOUT(absolute)=N)`` arms it (0 disarms), as AGI's ``SET AUTOHANGUP`` does. When it
  fires (during ``AGI()``, where the session notices it, or by the time an application
  returns), the PBX does what ``__ast_pbx_run`` does with ``AST_SOFTHANGUP_TIMEOUT``: it clears
  the timer and the soft hangup and goes on at ``T,1`` of the current context; with no ``T``
  the channel hangs up (``agi_hung_controller_timeout.txt``, README 6.3).

* Every leg a call makes carries the call's Linkedid (``CHANNEL(linkedid)``). Hangup handlers
  (``Set(CHANNEL(hangup_handler_push)=context,exten,priority)``) run, the last pushed first,
  when the channel hangs up (:meth:`Pbx.run_hangup_handlers`). ``Queue()``'s 7th argument, the
  gosub, is a context name run from ``s,1`` on the adviser's channel when an emulated centre
  (:class:`emulator.centre.CallCentre`) plays the queue call; that centre also reports the
  channels, user events and dials on the fake AMI server (:class:`PbxEvents`).

An application or function it does not know raises :class:`DialplanError` (Asterisk would
hang the channel up with "No application"), so a dialplan change it cannot follow fails loudly
instead of passing; so does an ``e`` extension a timeout would reach. Not modelled: the ``h``
extension, bridging, media; applications other than ``AGI()`` take no time on the channel's
clock.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from emulator.extensions import Dialplan, parse_options, split_args, split_first
from emulator.line import CallerLine
from routing.core.linkedid import make_uniqueid

MAX_STEPS = 5000  # priorities one call may run: a dialplan loop ends as an error, not a hang
AST_CAUSE_NO_ROUTE_DESTINATION = 3
AST_CAUSE_CHANNEL_UNACCEPTABLE = 6
AST_CAUSE_NORMAL_CLEARING = 16
AST_CAUSE_USER_BUSY = 17
# How an outward leg ends, by DIALSTATUS (callback_originate.txt): answered then the far end's BYE
# 16, a 486 Busy Here 17, rang unanswered (Dial's timeout hangs it up) 0 "Unknown".
LEG_END_CAUSES = {"ANSWER": AST_CAUSE_NORMAL_CLEARING, "BUSY": AST_CAUSE_USER_BUSY}


class DialplanError(RuntimeError):
    """The dialplan does something this emulator does not model, or loops."""


# ---------------------------------------------------------------------------------------------
# Channels


@dataclass(slots=True)
class Frame:
    """One Gosub level: its arguments and where Return() goes (None: end of a handler)."""

    args: list[str]
    back: tuple[str, str, int] | None


@dataclass(slots=True)
class Channel:
    """One Asterisk channel: its name, variables (by name without underscores, with the
    inheritance level 0, 1 or 2), written functions, place in the dialplan and Gosub stack."""

    name: str
    uniqueid: str
    caller_num: str = ""
    caller_name: str = ""
    context: str = ""
    exten: str = ""
    priority: int = 1
    state: str = "Ring"
    language: str = "en"
    variables: dict[str, tuple[int, str]] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)
    received: list[tuple[str, str]] = field(default_factory=list)  # the inbound INVITE's headers
    stack: list[Frame] = field(default_factory=list)
    line: CallerLine = field(default_factory=CallerLine)
    hung_up: bool = False
    jumped: bool = False
    timed_out: bool = False  # AST_SOFTHANGUP_TIMEOUT: the absolute timeout fired
    linkedid: str = ""  # the call's Linkedid: the first channel's Uniqueid (empty: this one's)
    hangup_handlers: list[str] = field(default_factory=list)  # CHANNEL(hangup_handler_push) stack
    hangup_cause: int = AST_CAUSE_NORMAL_CLEARING  # its Hangup's Cause (17 after a busy Dial)
    # seconds of ringing and talk the emulator played at once instead of waiting them out: this
    # channel's clock is ahead of the real one by that much (its events' Timestamp, CallCentre)
    played_s: float = 0.0

    @property
    def call_id(self) -> str:
        """``CHANNEL(linkedid)``: every channel made for a call carries its first channel's Uniqueid."""
        return self.linkedid or self.uniqueid

    def set(self, name: str, value: str) -> None:
        """``Set(name=value)`` for a variable: ``__NAME`` / ``_NAME`` mark inheritance."""
        level = 2 if name.startswith("__") else 1 if name.startswith("_") else 0
        self.variables[name.lstrip("_")] = (level, value)

    def get(self, name: str) -> str | None:
        found = self.variables.get(name)
        return None if found is None else found[1]

    def inheritable(self) -> dict[str, tuple[int, str]]:
        """What a channel this one dials gets (``ast_channel_inherit_variables``)."""
        return {k: (2, v) if level == 2 else (0, v) for k, (level, v) in self.variables.items() if level}

    def plain(self) -> dict[str, str]:
        return {name: value for name, (_, value) in self.variables.items()}

    def goto(self, context: str, exten: str, priority: int) -> None:
        self.context, self.exten, self.priority, self.jumped = context, exten, priority, True


# ---------------------------------------------------------------------------------------------
# Substitution and expressions


def _scan(text: str, start: int, opener: str, closer: str) -> int:
    """Index just past the ``closer`` that balances the ``${`` / ``$[`` at ``start``."""
    depth, i = 1, start + 2
    while i < len(text) and depth:
        if text[i] == opener:
            depth += 1
        elif text[i] == closer:
            depth -= 1
        i += 1
    return i


def substitute(text: str, lookup: Callable[[str], str]) -> str:
    """``pbx_substitute_variables``: ``${...}`` and ``$[...]``, inner ones first."""
    out: list[str] = []
    i = 0
    # Plain text is copied in chunks: a character-by-character loop took half of the
    # interpreter's time in a profile of whole calls.
    while (j := text.find("$", i)) >= 0:
        out.append(text[i:j])
        if text.startswith("${", j):
            i = _scan(text, j, "{", "}")
            out.append(lookup(substitute(text[j + 2 : i - 1], lookup)))
        elif text.startswith("$[", j):
            i = _scan(text, j, "[", "]")
            out.append(evaluate(substitute(text[j + 2 : i - 1], lookup)))
        else:
            out.append("$")
            i = j + 1
    out.append(text[i:])
    return "".join(out)


_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(=~|!=|<=|>=|==|[|&=<>+\-*/%!:()])|([^\s|&=<>+\-*/%!:()"]+))')
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise DialplanError(f"cannot read expression {text!r}")
        quoted, operator, word = match.groups()
        tokens.append(
            ("op", operator) if operator is not None else ("str", quoted if quoted is not None else word)
        )
        pos = match.end()
    return tokens


def ast_true(value: str | None) -> bool:
    """``ast_true``: yes, true, y, t, 1, on (any case); AGIEXITONHANGUP is read with it."""
    return (value or "").lower() in ("yes", "true", "y", "t", "1", "on")


def ast_false(value: str | None) -> bool:
    """``ast_false``: no, false, n, f, 0, off (any case); AGISIGHUP is off only when false."""
    return (value or "").lower() in ("no", "false", "n", "f", "0", "off")


_SECONDS = re.compile(r"^\s*([+-]?\d+)")
_FRACTION = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def timeout_seconds(value: str) -> float:
    """The seconds ``TIMEOUT(absolute)=value`` arms: func_timeout's ``sscanf("%ld%lf")``, whole
    seconds then a fraction (``2.5``); nothing readable or negative disarms (0)."""
    whole = _SECONDS.match(value)
    if whole is None or int(whole.group(1)) < 0:
        return 0.0
    fraction = _FRACTION.match(value[whole.end() :])
    return int(whole.group(1)) + (float(fraction.group(0)) if fraction else 0.0)


def truthy(value: str) -> bool:
    """``pbx_checkcondition``: empty and numeric zero are false."""
    value = value.strip()
    if not value:
        return False
    if _NUMBER.match(value):
        return float(value) != 0
    return True


def _number(value: str) -> float | None:
    return float(value) if _NUMBER.match(value.strip()) else None


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


class _Expr:
    """ast_expr2 precedence, lowest first: ``|``; ``&``; comparisons; ``+ -``; ``* / %``;
    unary ``! -``; ``: =~``."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        if self.pos < len(self.tokens) and self.tokens[self.pos][0] == "op":
            return self.tokens[self.pos][1]
        return None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> str:
        if not self.tokens:
            return ""
        value = self.or_()
        if self.pos != len(self.tokens):
            raise DialplanError(f"unexpected {self.tokens[self.pos][1]!r} in expression")
        return value

    def or_(self) -> str:
        left = self.and_()
        while self.peek() == "|":
            self.take()
            right = self.and_()
            left = left if truthy(left) else right
        return left

    def and_(self) -> str:
        left = self.compare()
        while self.peek() == "&":
            self.take()
            right = self.compare()
            left = left if truthy(left) and truthy(right) else "0"
        return left

    def compare(self) -> str:
        left = self.additive()
        while self.peek() in ("=", "==", "!=", "<", ">", "<=", ">="):
            op = self.take()[1]
            right = self.additive()
            a, b = _number(left), _number(right)
            pair: tuple[float, float] | tuple[str, str] = (
                (a, b) if a is not None and b is not None else (left, right)
            )
            result = {
                "=": pair[0] == pair[1],
                "==": pair[0] == pair[1],
                "!=": pair[0] != pair[1],
                "<": pair[0] < pair[1],  # type: ignore[operator]
                ">": pair[0] > pair[1],  # type: ignore[operator]
                "<=": pair[0] <= pair[1],  # type: ignore[operator]
                ">=": pair[0] >= pair[1],  # type: ignore[operator]
            }[op]
            left = "1" if result else "0"
        return left

    def additive(self) -> str:
        left = self.multiplicative()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            right = self.multiplicative()
            a, b = _number(left) or 0.0, _number(right) or 0.0
            left = _fmt(a + b if op == "+" else a - b)
        return left

    def multiplicative(self) -> str:
        left = self.unary()
        while self.peek() in ("*", "/", "%"):
            op = self.take()[1]
            right = self.unary()
            a, b = _number(left) or 0.0, _number(right) or 0.0
            if op == "*":
                left = _fmt(a * b)
            elif b == 0:
                left = "0"
            else:
                left = _fmt(int(a / b) if op == "/" else a % b)
        return left

    def unary(self) -> str:
        if self.peek() == "!":
            self.take()
            return "0" if truthy(self.unary()) else "1"
        if self.peek() == "-":
            self.take()
            return _fmt(-(_number(self.unary()) or 0.0))
        return self.regex()

    def regex(self) -> str:
        left = self.atom()
        while self.peek() in (":", "=~"):
            op = self.take()[1]
            pattern = self.atom()
            found = (re.match if op == ":" else re.search)(pattern, left)
            if found is None:
                left = "" if re.compile(pattern).groups else "0"
            elif found.re.groups:
                left = found.group(1) or ""
            else:
                left = str(found.end() - found.start())
        return left

    def atom(self) -> str:
        if self.pos >= len(self.tokens):
            raise DialplanError("expression ends early")
        kind, value = self.take()
        if kind == "op" and value == "(":
            inner = self.or_()
            if self.peek() != ")":
                raise DialplanError("missing ) in expression")
            self.take()
            return inner
        if kind == "op":
            raise DialplanError(f"unexpected {value!r} in expression")
        return value


def evaluate(expression: str) -> str:
    """The value of ``$[expression]`` (after substitution), as a string."""
    return _Expr(expression).parse()


def cut(value: str, delimiter: str, spec: str) -> str:
    """``CUT``: fields ``N``, ``N-M``, ``N-`` or ``-M`` (1-based) of ``value``."""
    fields = value.split(delimiter or "-")
    picked: list[str] = []
    for part in spec.split("&"):
        first, dash, last = part.partition("-")
        start = int(first) if first else 1
        stop = (int(last) if last else len(fields)) if dash else start
        picked.extend(fields[start - 1 : stop])
    return (delimiter or "-").join(picked)


# ---------------------------------------------------------------------------------------------
# PJSIP and outward calls


VAR_BUF_SIZE = 4096  # main/pbx_private.h: the buffer a dialplan function reads into
_URI_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")


def uri_encode(text: str, buflen: int = VAR_BUF_SIZE) -> str:
    """``URIENCODE()``: main/utils.c ``ast_uri_encode`` with ``ast_uri_http``: letters, digits
    and ``-_.!~*'()`` as they are, every other byte as ``%XX``; the output stops (silently)
    where the next character would not fit in ``buflen`` with its NUL."""
    out: list[str] = []
    used = 0
    for byte in text.encode():
        char = chr(byte)
        piece = char if char in _URI_UNRESERVED else f"%{byte:02X}"
        if used + len(piece) > buflen - 1:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Invite:
    """The INVITE a far end receives for one outward leg."""

    channel: str
    request_uri: str
    to: str
    from_: str
    headers: tuple[tuple[str, str], ...]

    @property
    def user(self) -> str:
        """The Request-URI user part (``sip:<user>@host``), empty when there is none."""
        match = _SIP_URI.match(self.request_uri)
        return (match.group(2) or "") if match else ""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass(slots=True)
class DialAttempt:
    """One ``Dial()`` as Asterisk saw it."""

    caller: str
    data: str  # Dial's first argument, e.g. "PJSIP/+441632960999@pstn"
    dial_string: str | None  # DialBegin's DialString (None: no channel was created)
    status: str  # DIALSTATUS
    cause: int | None = None  # HANGUPCAUSE when no channel could be created
    invite: Invite | None = None
    log: list[str] = field(default_factory=list)
    ring_s: float = 0.0  # how long the far end rang before DIALSTATUS
    leg: Channel | None = None  # the outward channel, when one was made


def _not_found(endpoint: str) -> tuple[None, int, list[str]]:
    message = f"Unable to create PJSIP channel - endpoint '{endpoint}' was not found"
    return None, AST_CAUSE_NO_ROUTE_DESTINATION, [f"ERROR chan_pjsip.c: {message}"]


_SIP_URI = re.compile(r"^(sips?):(?:([^@;>]*)@)?([^:;>]+)(?::(\d+))?(.*)$")


@dataclass(frozen=True, slots=True)
class Pjsip:
    """``pjsip.conf`` as far as dialling goes: each endpoint's AOR contact
    (``{"pstn": "sip:127.0.0.1:5090"}``; the AOR has the endpoint's name) and the host
    Asterisk puts in From."""

    contacts: Mapping[str, str]
    local_host: str = "127.0.0.1"

    def target(self, dest: str) -> tuple[str, str, str | None] | tuple[None, int, list[str]]:
        """chan_pjsip ``request()`` + ``ast_sip_session_create_outgoing()`` for ``PJSIP/<dest>``:
        ``(endpoint, uri, request user)`` or ``(None, cause, log lines)``."""
        if not dest:
            return (
                None,
                AST_CAUSE_CHANNEL_UNACCEPTABLE,
                ["ERROR chan_pjsip.c: Unable to create PJSIP channel with empty destination"],
            )
        endpoint, _, location = dest.partition("/")
        user: str | None = None
        if endpoint not in self.contacts:  # multi-domain off by default: user@endpoint next
            if "@" not in endpoint:
                return _not_found(endpoint)
            user, _, endpoint = endpoint.partition("@")
            if endpoint not in self.contacts:
                return _not_found(endpoint)
        location = location or endpoint  # no location: the endpoint's AORs
        uri = self.contacts.get(location, location)
        if not _SIP_URI.match(uri):
            return (
                None,
                AST_CAUSE_NO_ROUTE_DESTINATION,
                [
                    f"ERROR res_pjsip.c: Endpoint '{endpoint}': Could not create dialog to invalid URI "
                    f"'{uri}'.  Is endpoint registered and reachable?",
                    f"ERROR chan_pjsip.c: Failed to create outgoing session to endpoint '{endpoint}'",
                ],
            )
        return endpoint, uri, user

    def invite(self, channel: Channel, caller: Channel, uri: str, user: str | None) -> Invite:
        match = _SIP_URI.match(uri)
        assert match is not None
        scheme, uri_user, host, port, rest = match.groups()
        user = user if user is not None else uri_user
        at = f"{user}@" if user else ""
        request_uri = f"{scheme}:{at}{host}{f':{port}' if port else ''}{rest}"
        name = f'"{caller.caller_name}" ' if caller.caller_name else ""
        return Invite(
            channel=channel.name,
            request_uri=request_uri,
            to=f"<{scheme}:{at}{host}>",
            from_=f"{name}<sip:{caller.caller_num}@{self.local_host}>",
            headers=tuple(channel.headers),
        )


FarEnd = Callable[[Invite], str]  # the INVITE -> DIALSTATUS (ANSWER, BUSY, NOANSWER, CONGESTION)
TalkTime = Callable[[Invite], int]  # an answered INVITE -> whole seconds until the call ends
RingTime = Callable[[Invite], float]  # an INVITE -> seconds it rang before DIALSTATUS


def no_ringing(_invite: Invite) -> float:
    """The far end answers (or refuses) at once."""
    return 0.0


def two_seconds(_invite: Invite) -> int:
    """The captures' far end (a sipp UAS) hangs up 2 s after answering."""
    return 2


QueueOutcome = Callable[[str, dict[str, str]], str]  # (queue, variables) -> QUEUESTATUS
AgiRunner = Callable[["Pbx", Channel, str, list[str]], Awaitable[None]]
Observer = Callable[["Pbx", Channel, str, str], None]  # after each application: (channel, app, data)


class PbxEvents(Protocol):
    """What the emulated Asterisk reports on AMI as its channels run (the fake AMI server's
    side: :class:`emulator.centre.CallCentre`)."""

    def channel_created(self, channel: Channel) -> None: ...

    def user_event(self, channel: Channel, data: str) -> None: ...

    def dialled(self, caller: Channel, leg: Channel, dial_string: str, status: str) -> None: ...

    def hung_up(self, channel: Channel, cause: int, *, requested: bool) -> None: ...


QueueCall = Callable[["Pbx", Channel, str, str, str, int], Awaitable[str]]
"""``(pbx, caller, queue, timeout, gosub, position) -> QUEUESTATUS`` for ``Queue()`` run by an
emulated centre (``CONTINUE``: answered and the adviser hung up; empty: the caller hung up;
:data:`EXIT_WITH_KEY`: a digit took the caller to the queue's context, see :meth:`Pbx.queue_exit`)."""

EXIT_WITH_KEY = "EXITWITHKEY"  # app_queue's queue_log word: Queue() left by a digit (no QUEUESTATUS)


def answers(invite: Invite) -> str:
    return "ANSWER"


def always_answered(queue: str, variables: dict[str, str]) -> str:
    """Every queue answers; with option c the caller continues (``QUEUESTATUS=CONTINUE``)."""
    return "CONTINUE"


async def no_agi(pbx: Pbx, channel: Channel, url: str, args: list[str]) -> None:
    """A PBX with nothing behind AGI(): it fails like a refused connection."""
    channel.set("AGISTATUS", "FAILURE")


# ---------------------------------------------------------------------------------------------
# The PBX

App = Callable[[Channel, str], Awaitable[None]]
_numbers = itertools.count(0x20)
# Asterisk's Uniqueid is [<systemname>-]<start time>.<sequence>: two runs of the emulator (two
# processes placing calls to one controller) must not reuse each other's, as the contact records
# key calls by it.
_EPOCH = int(time.time())


@dataclass
class Event:
    """Something the dialplan did that a test or a call record wants to see."""

    channel: str
    app: str
    data: str
    context: str
    exten: str


class Pbx:
    """Runs channels through ``dialplan`` with ``globals_`` (``[globals]``), PJSIP endpoints,
    a far end for outward calls, queue outcomes and an AGI runner. ``system_name``: as
    asterisk.conf's ``systemname``, every channel's Uniqueid (so every call's Linkedid) is then
    ``<system_name>-<seconds>.<sequence>`` (``main/channel_internal_api.c``); "" (unset): as
    Asterisk's default, ``<seconds>.<sequence>``."""

    def __init__(
        self,
        dialplan: Dialplan,
        globals_: Mapping[str, str],
        *,
        pjsip: Pjsip | None = None,
        far_end: FarEnd = answers,
        queue_outcome: QueueOutcome = always_answered,
        queue_members: Mapping[str, Sequence[str]] | None = None,
        agi: AgiRunner = no_agi,
        stop_contexts: Sequence[str] = (),
        observer: Observer | None = None,
        events: PbxEvents | None = None,
        queue_call: QueueCall | None = None,
        queue_contexts: Mapping[str, str] | None = None,
        talk_s: TalkTime = two_seconds,
        ring_s: RingTime = no_ringing,
        system_name: str = "",
    ) -> None:
        self.dialplan = dialplan
        self.system_name = system_name  # asterisk.conf systemname: "" (unset) or the ids' prefix
        self.talk_s, self.ring_s = talk_s, ring_s
        self.globals = dict(globals_)
        self.pjsip = pjsip or Pjsip({})
        self.far_end = far_end
        self.queue_outcome = queue_outcome
        self.queue_members = dict(queue_members or {})
        self.observer = observer
        self.ami = events
        self.queue_call = queue_call
        self.queue_contexts = dict(queue_contexts or {})  # queues.conf: queue -> its context=
        self.agi_runner = agi
        self.stop_contexts = frozenset(stop_contexts)
        self.dials: list[DialAttempt] = []
        self.events: list[Event] = []
        self.log: list[str] = []
        self.stopped_in: str | None = None
        self.queue_status = ""  # the last Queue()'s outcome (CONTINUE: answered)
        self.steps = 0
        self._apps: dict[str, App] = {
            "answer": self._answer,
            "noop": self._noop,
            "verbose": self._noop,
            "userevent": self._user_event,
            "wait": self._noop,
            "log": self._log,
            "set": self._set,
            "execif": self._execif,
            "goto": self._goto,
            "gotoif": self._gotoif,
            "gosub": self._gosub,
            "return": self._return,
            "playback": self._noop,
            "queue": self._queue,
            "voicemail": self._noop,
            "dial": self._dial,
            "agi": self._agi,
            "hangup": self._hangup,
        }

    # -- channels ------------------------------------------------------------------------------

    def new_channel(
        self,
        name: str,
        *,
        caller_num: str = "",
        caller_name: str = "",
        linkedid: str = "",
        context: str = "",
        exten: str = "",
        uniqueid: str = "",
        played_s: float = 0.0,
        announced: bool = False,
    ) -> Channel:
        """A channel (``linkedid``: the call it is made for, as a dialled leg carries its caller's;
        ``context``/``exten``: where it starts, as its ``Newchannel`` says; ``played_s``: its
        clock, a dialled leg's is its caller's). ``announced``: AMI has had its ``Newchannel``
        already (the ``;1`` leg of an Originate, made by the AMI side), so none is sent."""
        number = next(_numbers)
        channel = Channel(
            name=name,
            uniqueid=uniqueid or make_uniqueid(_EPOCH, number, self.system_name),
            caller_num=caller_num,
            caller_name=caller_name,
            linkedid=linkedid,
            context=context,
            exten=exten,
            played_s=played_s,
        )
        if self.ami is not None and not announced:
            self.ami.channel_created(channel)
        return channel

    def lookup(self, channel: Channel, name: str) -> str:
        """The value of ``${name}`` on ``channel`` (empty when unset)."""
        if name.endswith(")") and "(" in name:
            return self._function(channel, name)
        base, *slicing = name.split(":")
        value = self._variable(channel, base)
        if slicing:
            value = value[int(slicing[0] or 0) :]
            if len(slicing) > 1 and slicing[1]:
                value = value[: int(slicing[1])]
        return value

    def _variable(self, channel: Channel, name: str) -> str:
        if channel.stack and re.fullmatch(r"ARG\d+", name):
            args = channel.stack[-1].args
            index = int(name[3:]) - 1
            return args[index] if index < len(args) else ""
        value = channel.get(name)
        if value is not None:
            return value
        builtins = {
            "EXTEN": channel.exten,
            "CONTEXT": channel.context,
            "PRIORITY": str(channel.priority),
            "CHANNEL": channel.name,
            "UNIQUEID": channel.uniqueid,
            "SYSTEMNAME": self.system_name,
        }
        if name in builtins:
            return builtins[name]
        return self.globals.get(name, "")

    def _function(self, channel: Channel, call: str) -> str:
        name, _, rest = call.partition("(")
        args = split_args(rest[:-1])
        upper = name.upper()
        if upper == "CUT":
            return cut(
                self._variable(channel, args[0]),
                args[1] if len(args) > 1 else "-",
                args[2] if len(args) > 2 else "1",
            )
        if upper == "LEN":
            return str(len(rest[:-1]))
        if upper == "CALLERID":
            field_ = args[0].lower()
            if field_ == "num":
                return channel.caller_num
            if field_ == "name":
                return channel.caller_name
            return f'"{channel.caller_name}" <{channel.caller_num}>'
        if upper == "CHANNEL":
            return {
                "language": channel.language,
                "name": channel.name,
                "state": channel.state,
                "uniqueid": channel.uniqueid,
                "linkedid": channel.call_id,
                "channeltype": channel.name.partition("/")[0],
            }.get(args[0], "")
        if upper == "URIENCODE":
            return uri_encode(rest[:-1])
        if upper == "PJSIP_HEADER" and args and args[0].lower() == "read":
            return self._read_header(channel, args)
        if call in channel.functions:
            return channel.functions[call]
        raise DialplanError(f"function {name}() is not emulated")

    def _read_header(self, channel: Channel, args: list[str]) -> str:
        """``PJSIP_HEADER(read,name[,number])`` (res_pjsip_header_funcs.c ``func_read_header``):
        the ``number``-th header of that name (any case) of the INVITE that brought the channel
        in, its value stripped; absent: empty, no log line; not a PJSIP channel: empty and an
        ERROR line. A header that does not fit the function's buffer (``"Name: value"`` and
        its NUL in :data:`VAR_BUF_SIZE`) reads as empty with an ERROR line."""
        if not channel.name.startswith("PJSIP/"):
            self.log.append("ERROR res_pjsip_header_funcs.c: This function requires a PJSIP channel.")
            return ""
        name = args[1] if len(args) > 1 else ""
        number = max(int(args[2]), 1) if len(args) > 2 and args[2].isdigit() else 1
        found = [value for key, value in channel.received if key.lower() == name.lower()]
        if len(found) < number:
            return ""
        value = found[number - 1]
        if len(f"{name}: {value}") > VAR_BUF_SIZE - 1:
            self.log.append("ERROR res_pjsip_header_funcs.c: Not enough buffer space in pjsip_hdr_print_on")
            return ""
        return value.strip()

    def sub(self, channel: Channel, text: str) -> str:
        return substitute(text, lambda name: self.lookup(channel, name))

    # -- running -------------------------------------------------------------------------------

    async def run(self, channel: Channel, context: str, exten: str, priority: int = 1) -> None:
        """Run ``channel`` from ``context,exten,priority`` until it hangs up or runs out of
        dialplan (then Asterisk hangs it up), or reaches one of ``stop_contexts``."""
        channel.goto(context, exten, priority)
        await self._loop(channel, until_depth=None)

    async def gosub_handler(self, channel: Channel, target: str) -> None:
        """Run a Gosub on ``channel`` until its Return() (Dial option b: a pre-dial handler;
        app_dial reads ``^`` in its argument as ``,``)."""
        context, exten, priority, args = self._gosub_target(channel, target.replace("^", ","))
        channel.stack.append(Frame(args, None))
        channel.goto(context, exten, priority)
        await self._loop(channel, until_depth=len(channel.stack))

    async def _loop(self, channel: Channel, until_depth: int | None) -> None:
        while not channel.hung_up:
            if channel.context in self.stop_contexts:
                self.stopped_in = channel.context
                channel.hung_up = True
                return
            extension = self.dialplan.find(channel.context, channel.exten)
            step = extension.priorities.get(channel.priority) if extension else None
            if step is None:
                channel.hung_up = True  # ran out of dialplan: Asterisk hangs the channel up
                return
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise DialplanError(f"more than {MAX_STEPS} priorities: a dialplan loop?")
            app = self._apps.get(step.app.lower())
            if app is None:
                raise DialplanError(f"application {step.app}() at line {step.line} is not emulated")
            data = self.sub(channel, step.data)
            self.events.append(Event(channel.name, step.app, data, channel.context, channel.exten))
            channel.jumped = False
            await app(channel, data)
            if self.observer is not None:
                self.observer(self, channel, step.app, data)
            if until_depth is not None and len(channel.stack) < until_depth:
                return  # the handler's Return()
            if not channel.hung_up and self._timer_fired(channel):
                self._timeout(channel)
            elif not channel.jumped:
                channel.priority += 1

    @staticmethod
    def _timer_fired(channel: Channel) -> bool:
        """``ast_check_hangup``: the absolute timeout fired during the application (AGI()
        reports it) or has passed by now."""
        line = channel.line
        return channel.timed_out or (line.hangup_at is not None and line.clock.now() >= line.hangup_at)

    def _timeout(self, channel: Channel) -> None:
        """``__ast_pbx_run`` on ``AST_SOFTHANGUP_TIMEOUT``: ``T,1`` of the current context with
        the timer and the soft hangup cleared, or hang up when there is no ``T``."""
        channel.timed_out = False
        channel.line.hangup_at = None
        if self.dialplan.find(channel.context, "T") is not None:
            self.log.append(f"NOTICE {channel.name}: absolute timeout, to T@{channel.context}")
            channel.goto(channel.context, "T", 1)
        elif self.dialplan.find(channel.context, "e") is not None:
            raise DialplanError(f"the e extension of {channel.context} (ABSOLUTETIMEOUT) is not emulated")
        else:
            channel.hung_up = True

    # -- applications --------------------------------------------------------------------------

    async def _answer(self, channel: Channel, data: str) -> None:
        channel.state = "Up"

    async def _noop(self, channel: Channel, data: str) -> None:
        return None

    async def _log(self, channel: Channel, data: str) -> None:
        level, _, message = data.partition(",")
        self.log.append(f"{level.strip().upper()} {channel.name}: {message}")

    async def _set(self, channel: Channel, data: str) -> None:
        name, equals, value = data.partition("=")
        if not equals:
            raise DialplanError(f"Set({data}) has no '='")
        name = name.strip()
        if name.endswith(")") and "(" in name:
            self._write_function(channel, name, value)
        else:
            channel.set(name, value)

    def _write_function(self, channel: Channel, call: str, value: str) -> None:
        name, _, rest = call.partition("(")
        args = split_args(rest[:-1])
        if name.upper() == "CHANNEL" and args[0] == "language":
            channel.language = value
        elif name.upper() == "CHANNEL" and args[0] == "hangup_handler_push":
            channel.hangup_handlers.append(value)  # func_channel: a Gosub target, run at hangup
        elif name.upper() == "TIMEOUT" and args[0][:1].lower() == "a":  # func_timeout reads one letter
            channel.line.arm(timeout_seconds(value))  # the channel's one timer, as SET AUTOHANGUP
        elif name.upper() == "CALLERID" and args[0].lower() in ("num", "name"):
            if args[0].lower() == "num":
                channel.caller_num = value
            else:
                channel.caller_name = value
        elif name.upper() == "CALLERID" and args[0].lower() == "all":
            channel.caller_name, channel.caller_num = split_callerid(value)
        elif name.upper() == "PJSIP_HEADER" and args[0] == "add":
            channel.headers.append((args[1], value))  # an empty value is sent empty
        else:
            channel.functions[call] = value

    async def _execif(self, channel: Channel, data: str) -> None:
        condition, rest = split_first(data, "?")
        if rest is None:
            raise DialplanError(f"ExecIf({data}): expected <expr>?<app>(<args>)")
        true_app, false_app = split_first(rest, ":")
        chosen = true_app if truthy(condition) else false_app
        if chosen:
            app_name, _, args = chosen.partition("(")
            app = self._apps.get(app_name.strip().lower())
            if app is None:
                raise DialplanError(f"application {app_name}() is not emulated")
            await app(channel, args[: args.rfind(")")] if ")" in args else args)

    def _location(self, channel: Channel, target: str) -> tuple[str, str, int]:
        parts = [p.strip() for p in target.split(",")]
        context, exten = channel.context, channel.exten
        if len(parts) == 3:
            context, exten, label = parts
        elif len(parts) == 2:
            exten, label = parts
        else:
            label = parts[0]
        extension = self.dialplan.find(context, exten)
        if extension is None:
            raise DialplanError(f"no extension {exten}@{context}")
        if label.isdigit():
            return context, exten, int(label)
        number = extension.label(label)
        if number is None:
            raise DialplanError(f"no priority labelled {label} in {exten}@{context}")
        return context, exten, number

    async def _goto(self, channel: Channel, data: str) -> None:
        channel.goto(*self._location(channel, data))

    async def _gotoif(self, channel: Channel, data: str) -> None:
        condition, rest = split_first(data, "?")
        true_label, false_label = split_first(rest or "", ":")
        chosen = true_label if truthy(condition) else false_label
        if chosen:
            channel.goto(*self._location(channel, chosen))

    def _gosub_target(self, channel: Channel, data: str) -> tuple[str, str, int, list[str]]:
        label, paren, rest = data.partition("(")
        args = split_args(rest[: rest.rfind(")")], keep_quotes=True) if paren else []
        context, exten, priority = self._location(channel, label)
        return context, exten, priority, args

    async def _gosub(self, channel: Channel, data: str) -> None:
        context, exten, priority, args = self._gosub_target(channel, data)
        channel.stack.append(Frame(args, (channel.context, channel.exten, channel.priority + 1)))
        channel.goto(context, exten, priority)

    async def _return(self, channel: Channel, data: str) -> None:
        if not channel.stack:
            self.log.append(f"ERROR {channel.name}: Return without Gosub: stack is empty")
            channel.hung_up = True
            return
        frame = channel.stack.pop()
        if frame.back is not None:
            channel.goto(*frame.back)
        else:
            channel.jumped = True

    async def _queue(self, channel: Channel, data: str) -> None:
        """``Queue(name,options,...)``: rings the queue's members when it has some (each gets
        the caller's inheritable variables, as app_queue's ring_entry does; nobody answering
        ends as TIMEOUT), else asks :attr:`queue_outcome`; with an emulated centre
        (:attr:`queue_call`) the centre plays the queue call on AMI, running the gosub on the
        adviser's channel. Answered with option ``c``: ``QUEUESTATUS=CONTINUE`` and the caller
        goes on; without it the call ends."""
        args = split_args(data)
        options = parse_options(args[1] if len(args) > 1 else "")
        members = self.queue_members.get(args[0])
        if self.queue_call is not None:
            # Queue(name,options,URL,announceoverride,timeout,AGI,gosub,rule,position): the gosub
            # is a context name (its s,1) run on the adviser's channel when they answer (README
            # 6.5); position as queue_exec reads it: atoi, a negative one is no preference.
            padded = [*args, *[""] * 9]
            position = max(0, _atoi(padded[8]))
            status = await self.queue_call(self, channel, args[0], padded[4], padded[6], position)
            if status == EXIT_WITH_KEY:
                # the channel is at context,digit,1; QUEUESTATUS is left as it was
                # (queue_slices.txt: a PRESET value survived a key exit)
                self.queue_status = status
                return
        elif members:
            statuses = [await self._dial_one(channel, member, {}) for member in members]
            status = "CONTINUE" if "ANSWER" in statuses else "TIMEOUT"
        else:
            status = self.queue_outcome(args[0], channel.plain())
        self.queue_status = status
        if not status:
            channel.hung_up = True  # the caller hung up in the queue
            return
        if status == "CONTINUE" and "c" not in options:
            channel.hung_up = True  # the adviser hung up; without c the caller's call ends
            return
        channel.set("QUEUESTATUS", status)

    def queue_exit(self, channel: Channel, queue: str, digit: str) -> bool:
        """app_queue's ``valid_exit`` for one digit pressed while waiting in ``queue``: when the
        queue has a ``context`` (queues.conf) holding an extension for the digit, the caller
        leaves Queue() for ``context,digit,1`` (True); else the digit is ignored (False). Only a
        single digit is emulated (app_queue collects more while a longer extension can match)."""
        context = self.queue_contexts.get(queue, "")
        if not context or self.dialplan.find(context, digit) is None:
            return False
        channel.goto(context, digit, 1)
        return True

    async def _hangup(self, channel: Channel, data: str) -> None:
        channel.hung_up = True

    async def _user_event(self, channel: Channel, data: str) -> None:
        if self.ami is not None:
            self.ami.user_event(channel, data)

    async def run_hangup_handlers(self, channel: Channel) -> None:
        """The channel hung up: its pushed hangup handlers run, the last pushed first, each a
        Gosub that ends at its ``Return()`` (main/pbx_hangup_handler.c)."""
        channel.hung_up = False  # the handlers run on the hung-up channel
        try:
            while channel.hangup_handlers:
                await self.gosub_handler(channel, channel.hangup_handlers.pop())
        finally:
            channel.hung_up = True

    async def _agi(self, channel: Channel, data: str) -> None:
        """``AGI(url,args)``: split as ``agi_exec_full`` does (``AST_STANDARD_APP_ARGS``)."""
        url, *args = split_args(data)
        await self.agi_runner(self, channel, url, args)
        if channel.get("AGISTATUS") == "HANGUP" and not channel.timed_out:
            channel.hung_up = True  # the caller hung up: the dialplan after AGI() does not run

    # -- Dial ----------------------------------------------------------------------------------

    async def _dial(self, channel: Channel, data: str) -> None:
        args = split_args(data)
        options = parse_options(args[2] if len(args) > 2 else "")
        channel.set("ANSWEREDTIME", "")  # app_dial clears it first (dial_pjsip_trunk_forms.txt)
        first = len(self.dials)
        statuses: list[str] = []
        for peer in args[0].split("&"):
            statuses.append(await self._dial_one(channel, peer, options))
        status = next((s for s in statuses if s == "ANSWER"), statuses[-1] if statuses else "CHANUNAVAIL")
        channel.set("DIALSTATUS", status)
        answered = next(
            (d for d in self.dials[first:] if d.status == "ANSWER" and d.invite is not None), None
        )
        if answered is not None and answered.invite is not None:
            # Whole seconds of the bridged call, set when it ends (VarSet ANSWEREDTIME 2 after a
            # 2 s answered call in dial_pjsip_trunk_forms.txt); the far end says how long. It is
            # the calling channel's up time: on a channel already up (the callback's ;1 leg) the
            # ringing counts too (ANSWEREDTIME=4 for 1 s of ringing and 3 s talked in
            # callback_originate.txt). The talk is played at once, on the channel's clock.
            talk = self.talk_s(answered.invite)
            channel.played_s += talk
            rang = answered.ring_s if channel.state == "Up" else 0.0
            channel.set("ANSWEREDTIME", str(int(rang + talk)))
        self._legs_ended(channel, first)
        if status == "ANSWER" and "g" not in options:
            # The call was bridged; when it ends, Dial() without option g returns -1 and the
            # caller's dialplan ends there ("Spawn extension ... exited non-zero":
            # pjsip_header_read_probe.txt, agi_inbound_partner_headers.txt).
            channel.hung_up = True

    def _legs_ended(self, channel: Channel, first: int) -> None:
        """Dial() returns: its outward legs are gone, on the caller's clock (an answered one
        after the talk, hung up by the far end: HangupRequest then Hangup 16; a busy one 17; one
        that rang unanswered 0, callback_originate.txt)."""
        for attempt in self.dials[first:]:
            if attempt.leg is None or self.ami is None:
                continue
            attempt.leg.played_s = channel.played_s
            cause = LEG_END_CAUSES.get(attempt.status, 0)
            self.ami.hung_up(attempt.leg, cause, requested=attempt.status == "ANSWER")

    async def _dial_one(self, caller: Channel, peer: str, options: Mapping[str, str]) -> str:
        tech, _, dest = peer.partition("/")
        if tech.upper() == "PJSIP":
            return await self._dial_pjsip(caller, peer, dest, options)
        if tech.upper() == "LOCAL":
            return await self._dial_local(caller, peer, dest, options)
        raise DialplanError(f"Dial technology {tech} is not emulated")

    async def _dial_pjsip(self, caller: Channel, peer: str, dest: str, options: Mapping[str, str]) -> str:
        attempt = DialAttempt(caller=caller.name, data=peer, dial_string=None, status="CHANUNAVAIL")
        self.dials.append(attempt)
        found = self.pjsip.target(dest)
        if found[0] is None:
            _, cause, log = found
            attempt.cause = cause
            attempt.log = [*log, "app_dial.c: Everyone is busy/congested at this time (1:0/0/1)"]
            caller.set("HANGUPCAUSE", str(cause))
            self.log.extend(attempt.log)
            return "CHANUNAVAIL"
        endpoint, uri, user = found
        leg = self.new_channel(
            f"PJSIP/{endpoint}-{next(_numbers):08x}", linkedid=caller.call_id, played_s=caller.played_s
        )
        leg.state = "Down"
        leg.variables.update(caller.inheritable())
        attempt.dial_string = dest
        if "b" in options:
            await self.gosub_handler(leg, options["b"])
        attempt.invite = self.pjsip.invite(leg, caller, uri, user)
        attempt.leg = leg
        # Dial() waits on the far end: whatever else Asterisk has to say goes first (the
        # callback's OriginateResponse came before its ;1 leg's DialBegin, callback_originate.txt)
        await asyncio.sleep(0)
        attempt.status = self.far_end(attempt.invite)
        if attempt.status == "BUSY":
            caller.hangup_cause = AST_CAUSE_USER_BUSY  # app_dial: the ;1, ;2 legs ended 17 too
        # the ringing, played at once: DialBegin on the leg's clock, DialEnd on the caller's after it
        attempt.ring_s = self.ring_s(attempt.invite)
        caller.played_s += attempt.ring_s
        if self.ami is not None:
            self.ami.dialled(caller, leg, dest, attempt.status)
        leg.played_s = caller.played_s
        return attempt.status

    async def _dial_local(self, caller: Channel, peer: str, dest: str, options: Mapping[str, str]) -> str:
        target = dest.split("/", maxsplit=1)[0]
        exten, _, context = target.partition("@")
        context = context or "default"
        if self.dialplan.find(context, exten) is None:
            self.log.append(f"No such extension/context {exten}@{context} while calling Local channel")
            return "CHANUNAVAIL"
        name = f"Local/{exten}@{context}-{next(_numbers):08x}"
        one = self.new_channel(
            f"{name};1", caller_num=caller.caller_num, caller_name=caller.caller_name, linkedid=caller.call_id
        )
        one.variables.update(caller.inheritable())
        if "b" in options:
            await self.gosub_handler(one, options["b"])
        two = self.new_channel(
            f"{name};2", caller_num=caller.caller_num, caller_name=caller.caller_name, linkedid=caller.call_id
        )
        two.variables.update(one.variables)  # core_unreal.c: ;2 gets every variable of ;1
        first = len(self.dials)
        await self.run(two, context, exten)
        ours = self.dials[first:]
        if two.state == "Up" or any(d.status == "ANSWER" for d in ours):
            return "ANSWER"
        return ours[-1].status if ours else "NOANSWER"


def _atoi(text: str) -> int:
    """C's ``atoi``: the leading integer of ``text`` (0 when there is none)."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def split_callerid(value: str) -> tuple[str, str]:
    """``CALLERID(all)``'s value as Asterisk splits it (``ast_callerid_split``): ``"Name" <num>``
    or ``Name <num>`` gives the name and the number; a value with no ``<...>`` is a number alone.
    ``callback_originate.txt``: ``Harborough District Council <01632960001>`` was presented as
    ``From: "Harborough District Council" <sip:01632960001@...>``."""
    text = value.strip()
    if "<" in text and text.endswith(">"):
        name, _, number = text[:-1].rpartition("<")
        return name.strip().strip('"').strip(), number.strip()
    return "", text.strip('"')
