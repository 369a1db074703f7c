"""Asterisk, as seen by a FastAGI server: connects, sends the environment block, answers commands.

Faithful to Asterisk 22.10.1 as captured on the wire:

* The environment block has the exact keys and order of a PJSIP or Local channel
  (``agi_network: yes`` ... ``agi_threadid: ...``, then ``agi_arg_N``, then ``\\n``).
* Commands are split the way res_agi splits them (spaces and tabs separate, double quotes group,
  backslash escapes the next character; command words are case-insensitive). A ``\\r`` before
  the ``\\n`` stays part of the last word, so ``NOOP\\r\\n`` gets ``510 Invalid or unknown
  command`` and ``GET VARIABLE ROUTE\\r\\n`` looks up ``ROUTE\\r``.
* Replies use the captured forms: DTMF as ASCII codes (``200 result=49 endpos=17280``),
  ``200 result= (timeout)``, ``200 result=1 (value)``, ``510``, multi-line ``520`` usage, and
  ``511 Command Not Permitted on a dead channel or intercept routine`` after a hangup.
* A caller hangup during a command answers ``200 result=-1`` then, ``hangup_delay`` later, the
  unsolicited ``HANGUP`` line (``AGISIGHUP=no``: no line; ``AGIEXITONHANGUP=yes``: two lines and
  the socket is closed). The connection then serves commands in dead mode until the server closes.
* ``AGISTATUS`` is computed like res_agi: ``SUCCESS`` when the server closes, sticky ``FAILURE``
  after a STREAM FILE of a missing prompt or a ``failure`` line, ``HANGUP`` when the channel hung
  up (unless already ``FAILURE``). Asterisk never times out a silent server; the emulator's
  ``deadline`` reports that case as ``outcome="server-silent"`` with no AGISTATUS.
* Prompts depend on the channel's language (``CHANNEL(language)``, ``SET VARIABLE
  CHANNEL(language) cy``): each is looked up as Asterisk does (:mod:`emulator.sounds`), and
  SAY NUMBER / SAY DIGITS play their digit files the same way, with say.c's WARNING for a
  language it has no rules for (``agi_language_say.txt``).
* DTMF is timed (:mod:`emulator.line`): a digit reaches the command listening when it arrives,
  or is lost; GET DATA returns the moment ``max_digits`` arrive, or ``(timeout)`` after the
  inter-digit timeout (``agi_getdata_maxdigits_overflow.txt``).
* The channel's absolute timeout (``CallerScript.absolute_timeout`` = ``TIMEOUT(absolute)``
  before AGI(); ``SET AUTOHANGUP n`` = ``200 result=0``, the same timer, 0 disarms) hangs the
  channel up: a running command answers ``200 result=-1``, then ``HANGUP``; with
  ``AGIEXITONHANGUP=yes`` ``HANGUP`` twice and the socket closed at once, else Asterisk waits
  for the server to close. AGISTATUS is ``HANGUP`` and the dialplan goes on at ``T``
  (``agi_hung_controller_timeout.txt``).

A :class:`CallerScript` says what the caller does, step by step::

    CallerScript(dial="01632960001", caller="01632960123",
                 steps=[Press("1"), Silence(), HangUpDuring("queue")])
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode

from emulator import sounds
from emulator.hagi import CONNECT_TIMEOUT, RESOLVER_GIVES_UP, Attempt, Resolver, connect, parse_url
from emulator.line import DIGIT_GAP, CallClock, CallerLine
from routing.core.linkedid import make_uniqueid

ASTERISK_VERSION = "22.10.1"
HANGUP_DELAY = 0.042  # 200 result=-1 -> HANGUP, agi_caller_hangup_default.txt
SAMPLES_PER_SECOND = 8000
GET_VARIABLE_MAX = 1023  # res_agi.c handle_getvariable: char tempstr[1024]
DEAD_511 = "511 Command Not Permitted on a dead channel or intercept routine"
UNKNOWN_510 = "510 Invalid or unknown command"
DEFAULT_PROMPT_SAMPLES = 16000
# A digits/ or letters/ file SAY plays: the digit files of agi_language_say.txt lasted 0.75 s
# to 0.93 s each (the times between its "Playing 'digits/..'" log lines).
SAY_FILE_SAMPLES = 6800

# Prompt lengths (endpos when played to the end) from agi_suite_pjsip.txt and agi_dtmf_pjsip.txt.
_LANGUAGE_FUNCTION = "CHANNEL(LANGUAGE)"
KNOWN_PROMPTS: Mapping[str, int] = {"beep": 3520, "hello-world": 11360, "tt-monkeys": 128000}
KNOWN_APPS = frozenset(
    {
        "playback",
        "background",
        "set",
        "noop",
        "queue",
        "dial",
        "goto",
        "gosub",
        "wait",
        "answer",
        "hangup",
        "userevent",
        "read",
        "saydigits",
        "playtones",
        "progress",
        "ringing",
        "musiconhold",
        "startmusiconhold",
        "stopmusiconhold",
        "system",
        "verbose",
        "log",
    }
)


# ---------------------------------------------------------------------------------------------
# Caller script


@dataclass(frozen=True, slots=True)
class Press:
    """The caller starts typing ``digits`` during the next STREAM FILE / GET DATA / WAIT FOR DIGIT,
    one every ``gap`` seconds (0.3 s in the captures).

    STREAM FILE and GET DATA: the first digit arrives half way through the prompt (STREAM FILE:
    at ``endpos`` when given) and interrupts it if it is an escape digit
    (``200 result=49 endpos=...``); WAIT FOR DIGIT: ``gap`` after it starts. Digits go to
    whatever listens when they arrive: GET DATA takes up to ``max_digits`` and returns at once,
    and the rest go to the next command if it is already waiting, or are lost
    (``agi_getdata_maxdigits_overflow.txt``)."""

    digits: str
    endpos: int | None = None
    gap: float = DIGIT_GAP


@dataclass(frozen=True, slots=True)
class PressAfterPrompt:
    """The caller listens to prompts to the end and types ``digits`` when asked: STREAM FILE
    plays fully (the step waits); at the next GET DATA / WAIT FOR DIGIT the first digit arrives
    ``gap`` after the prompt ends, then one every ``gap``."""

    digits: str
    gap: float = DIGIT_GAP


@dataclass(frozen=True, slots=True)
class Silence:
    """The caller presses nothing during the next input command (timeouts)."""


@dataclass(frozen=True, slots=True)
class HangUpDuring:
    """The caller hangs up while the next command containing ``match`` runs (any command when
    empty; case-insensitive, e.g. ``"queue"`` matches ``EXEC Queue council-revenues``). Media
    commands and EXEC answer ``200 result=-1``; other commands complete first."""

    match: str = ""


@dataclass(frozen=True, slots=True)
class HangUpAfter:
    """The caller hangs up between commands, after ``commands`` more replies (0: at once)."""

    commands: int = 0


Step = Press | PressAfterPrompt | Silence | HangUpDuring | HangUpAfter


@dataclass(frozen=True, slots=True)
class CallerScript:
    """One call: who calls, what they dial, and what they do.

    ``prompts`` maps the recordings there are, as paths under Asterisk's sounds directory
    (``en/vm-goodbye``, ``cy/cr-croeso``; a bare ``beep`` is outside any language directory),
    to their length in samples; a prompt is looked up for the channel's language as Asterisk
    does (:mod:`emulator.sounds`: ``cy/`` then ``en/`` on a Welsh channel, never ``cy/`` on an
    English one). None: every prompt exists in every language directory, lengths from
    :data:`KNOWN_PROMPTS`. ``missing_prompts``: names that exist in no language, or paths
    (``cy/welcome``) that do not exist. ``agisighup`` and
    ``agiexitonhangup`` mirror the AGISIGHUP / AGIEXITONHANGUP channel variables;
    ``absolute_timeout`` is ``Set(TIMEOUT(absolute)=N)`` just before ``AGI()``. ``channel`` and
    ``uniqueid`` default to fresh values (``PJSIP/sipp-00000023``, ``[<system_name>-]<epoch>.<n>``). A step
    that types digits is taken only once the digits typed before have all arrived."""

    dial: str = "1000"
    caller: str | None = "01632960123"
    caller_name: str | None = "Jane Resident"
    steps: Sequence[Step] = ()
    channel_type: Literal["PJSIP", "Local"] = "PJSIP"
    context: str = "incoming"
    priority: int = 1
    language: str = "en"
    accountcode: str = ""
    answered: bool = False
    agisighup: bool = True
    agiexitonhangup: bool = False
    absolute_timeout: float | None = None
    prompts: Mapping[str, int] | None = None
    missing_prompts: frozenset[str] = frozenset()
    apps: frozenset[str] = KNOWN_APPS
    variables: Mapping[str, str] = field(default_factory=dict)
    channel: str | None = None
    uniqueid: str | None = None
    linkedid: str | None = None
    """``CHANNEL(linkedid)``: the call's first channel's Uniqueid (None: this channel's own)."""
    system_name: str = ""
    """asterisk.conf ``systemname`` (``${SYSTEMNAME}``; "" when unset)."""

    def recording(self, name: str, language: str) -> tuple[str, int] | None:
        """``(path, length in samples)`` of what Asterisk plays for prompt ``name`` on a channel
        in ``language``, or None when it finds nothing."""
        if name in self.missing_prompts:
            return None

        def there(path: str) -> bool:
            if path in self.missing_prompts:
                return False
            if self.prompts is None:  # in every language directory, none outside them
                return path != name or name.startswith("/")
            return path in self.prompts

        path = sounds.find(name, language, there)
        if path is None:
            return None
        if self.prompts is not None:
            return path, self.prompts[path]
        default = SAY_FILE_SAMPLES if name.startswith(("digits/", "letters/")) else DEFAULT_PROMPT_SAMPLES
        return path, KNOWN_PROMPTS.get(name, default)


@dataclass(slots=True)
class EmulatedCall:
    """What happened, as Asterisk would know it.

    ``outcome``: ``closed`` (the server closed), ``failure-line``, ``exit-on-hangup`` (Asterisk
    closed), ``server-silent`` (the emulator's deadline hit; Asterisk itself would still wait),
    ``connect-failed``. ``agistatus`` is None only for ``server-silent``. ``timed_out``: the
    absolute timeout (``TIMEOUT(absolute)`` / ``SET AUTOHANGUP``) hung the channel up at
    ``timed_out_at``; AGI() then returns ``HANGUP`` and the dialplan goes on at ``T``.
    ``started_at`` / ``ended_at``: the call's clock when AGI() started and returned."""

    agistatus: str | None
    outcome: str
    channel: str = ""
    uniqueid: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    apps: list[tuple[str, str]] = field(default_factory=list)
    answered: bool = False
    hung_up: bool = False
    duration: float = 0.0
    timed_out: bool = False
    timed_out_at: float | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (clock, line sent)
    sighups: int = 0  # SIGHUPs sent to a classic script's process (FastAGI: always 0)
    command_times: list[float] = field(default_factory=list)  # the clock as each command came
    varsets: list[tuple[str, str]] = field(default_factory=list)  # what AMI shows as VarSet
    language: str = "en"  # the channel's language (CHANNEL(language)) as AGI() ends
    played: list[str] = field(default_factory=list)
    """Each recording played, as Asterisk found it: ``<language>/<prompt>`` (``en/vm-goodbye``
    on a ``cy`` channel with no Welsh recording of it), SAY's digit files too."""
    warnings: list[str] = field(default_factory=list)
    """Asterisk's WARNING log lines for this AGI() (``file.c: File x does not exist in any
    format``, ``say.c: Language cy not currently supported, defaulting to English``)."""

    @property
    def dialplan_continues(self) -> bool:
        """Asterisk runs the next priority after AGI() for SUCCESS and FAILURE only."""
        return self.agistatus in ("SUCCESS", "FAILURE")

    @property
    def goes_to_t(self) -> bool:
        """The absolute timeout ended AGI(): the dialplan continues at the ``T`` extension."""
        return self.timed_out and self.agistatus is not None


# ---------------------------------------------------------------------------------------------
# Pure helpers


def parse_args(line: str) -> list[str]:
    """Split a command line like res_agi: space/tab separate words, ``"`` toggles quoting
    (``say"hi"now`` -> ``sayhinow``, ``""`` -> an empty word), ``\\`` makes the next character
    literal. Other characters, ``\\r`` included, are part of words."""
    words: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None:
                current = []
        elif char in " \t" and not quoted and not escaped:
            if current is not None:
                words.append("".join(current))
            current = None
        elif char == "\\" and not escaped:
            escaped = True
        else:
            current = [] if current is None else current
            current.append(char)
            escaped = False
    if current is not None:
        words.append("".join(current))
    return words


def env_lines(
    script: CallerScript, network_script: str, request: str, channel: str, uniqueid: str
) -> list[tuple[str, str]]:
    """The environment block as (key, value) pairs in Asterisk's order (agi_suite_pjsip.txt)."""
    has_cid = script.caller is not None
    return [
        ("agi_network", "yes"),
        ("agi_network_script", network_script),
        ("agi_request", request),
        ("agi_channel", channel),
        ("agi_language", script.language),
        ("agi_type", script.channel_type),
        ("agi_uniqueid", uniqueid),
        ("agi_version", ASTERISK_VERSION),
        ("agi_callerid", script.caller or "unknown"),
        ("agi_calleridname", (script.caller_name or "unknown") if has_cid else "unknown"),
        ("agi_callingpres", "0" if has_cid else "67"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", script.dial if script.channel_type == "PJSIP" else "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", script.context),
        ("agi_extension", script.dial),
        ("agi_priority", str(script.priority)),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", script.accountcode),
        ("agi_threadid", "139996058158784"),
    ]


def encode_env(pairs: Sequence[tuple[str, str]], args: Sequence[str]) -> bytes:
    """``key: value\\n`` per line, ``agi_arg_N`` lines, then the empty line."""
    lines = [f"{key}: {value}\n" for key, value in pairs]
    lines += [f"agi_arg_{index}: {arg}\n" for index, arg in enumerate(args, start=1)]
    return ("".join(lines) + "\n").encode("utf-8")


def usage_block(command: str) -> list[str]:
    """The 520 reply for a command used with the wrong arguments."""
    body = USAGE_TEXT.get(command, [f"Usage of {command} is not captured in this emulator."])
    return ["520-Invalid command syntax.  Proper usage follows:", *body, "520 End of proper usage."]


_STREAM_FILE_USAGE = [
    "Send the given file, allowing playback to be interrupted by the given digits, if any. "
    "Returns <literal>0</literal> if playback completes without a digit being pressed, or the "
    "ASCII numerical value of the digit if one was pressed, or <literal>-1</literal> on error or "
    "if the channel was disconnected. If musiconhold is playing before calling stream file it "
    "will be automatically stopped and will not be restarted after completion.",
    "It sets the following channel variables upon completion:",
    "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
    "    <value>SUCCESS</value>",
    "    <value>FAILED</value>",
]
# Verbatim from agi_suite_pjsip.txt; other commands get a placeholder body.
USAGE_TEXT: Mapping[str, list[str]] = {
    "STREAM FILE": _STREAM_FILE_USAGE,
    "SET VARIABLE": ["Sets a variable to the current channel."],
    "EXEC": [
        "Executes <replaceable>application</replaceable> with given <replaceable>options</replaceable>.",
        "Returns whatever the <replaceable>application</replaceable> returns, or "
        "<literal>-2</literal> on failure to find <replaceable>application</replaceable>.",
        "<note>NOTE:</note> exec does not evaluate dialplan functions and variables unless it is "
        "explicitly enabled by setting the <variable>AGIEXECFULL</variable> variable to "
        "<literal>yes</literal>.",
    ],
    "GET DATA": [
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
        "Returns the digits received from the channel at the other end.",
    ],
    "WAIT FOR DIGIT": [
        "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a "
        "DTMF digit. Returns <literal>-1</literal> on channel failure, <literal>0</literal> if no "
        "digit is received in the timeout, or the numerical value of the ascii of the digit if "
        "one is received. Use <literal>-1</literal> for the <replaceable>timeout</replaceable> "
        "value if you desire the call to block indefinitely.",
    ],
    "DATABASE GET": [
        "Retrieves an entry in the Asterisk database for a given "
        "<replaceable>family</replaceable> and <replaceable>key</replaceable>.",
        "Returns <literal>0</literal> if <replaceable>key</replaceable> is not set. Returns "
        "<literal>1</literal> if <replaceable>key</replaceable> is set and returns the variable "
        "in parenthesis.",
        "Example return code: 200 result=1 (testvariable)",
    ],
}


def get_data_timeouts(timeout_ms: int) -> tuple[float, float]:
    """GET DATA's (first digit, next digits) timeouts in seconds: the command's timeout for both,
    Asterisk's defaults (6 s, 2 s) when it is 0 or missing, forever when negative."""
    if timeout_ms > 0:
        return timeout_ms / 1000, timeout_ms / 1000
    if timeout_ms < 0:
        return float("inf"), float("inf")
    return 6.0, 2.0


def collect_digits(typed: str, max_digits: int) -> tuple[str, bool]:
    """GET DATA input: ``(digits, timed_out)``. ``#`` ends input and is dropped; reaching
    ``max_digits`` ends it; running out of typed digits is a timeout."""
    collected = ""
    for char in typed:
        if char == "#":
            return collected, False
        collected += char
        if len(collected) >= max_digits:
            return collected, False
    return collected, True


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


# ---------------------------------------------------------------------------------------------
# Session


_channel_numbers = itertools.count(0x23)
_MEDIA = frozenset(
    {"ANSWER", "STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "WAIT FOR DIGIT"}
    | {"SAY DIGITS", "SAY NUMBER", "SAY ALPHA", "SAY PHONETIC", "EXEC"}
)
_DEAD_OK = frozenset(
    {"NOOP", "GET VARIABLE", "SET VARIABLE", "GET FULL VARIABLE", "VERBOSE", "EXEC"}
    | {"DATABASE PUT", "DATABASE GET", "DATABASE DEL", "DATABASE DELTREE"}
)
_VAR_REF = re.compile(r"\$\{([^{}]*)\}")
_SCANF_INT = re.compile(r"^\s*[+-]?\d+")  # sscanf("%30d") of SAY NUMBER / SAY DIGITS

Reply = list[str]


class _Closed(Exception):
    """Asterisk closed the connection itself (AGIEXITONHANGUP=yes or a failure line)."""


class _Cut(Exception):
    """The absolute timeout fired while a command ran: its ``reply``, then the hangup."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class AsteriskSession:
    """One emulated AGI() run over a connected socket. Use :func:`run_call`."""

    def __init__(
        self,
        script: CallerScript,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        channel: str,
        time_scale: float = 0.0,
        hangup_delay: float = HANGUP_DELAY,
        line: CallerLine | None = None,
        signal_hangup: Callable[[], None] | None = None,
    ) -> None:
        """``signal_hangup``: a classic script's session (:mod:`emulator.classic`): how
        Asterisk tells the script of a hangup, SIGHUP to its process, instead of the FastAGI
        ``HANGUP`` line; None for FastAGI."""
        self.script = script
        self.line = line or CallerLine(CallClock(time_scale))
        self.clock = self.line.clock
        self.call = EmulatedCall(
            agistatus="SUCCESS", outcome="closed", channel=channel, language=script.language
        )
        self.call.variables.update(script.variables)
        self.call.answered = script.answered
        self._reader = reader
        self._writer = writer
        self._hangup_delay = hangup_delay
        self._signal_hangup = signal_hangup
        self._steps = list(script.steps)
        self._since_step = 0
        self._dead = False
        self._prompted = False  # the last command played a prompt to its end
        self._after_prompt = False  # ... as seen by the command running now
        self._database: dict[tuple[str, str], str] = {}
        self._table = self._command_table()

    # -- I/O -----------------------------------------------------------------------------------

    async def _send(self, lines: Sequence[str]) -> None:
        self.call.replies.extend(lines)
        now = self.clock.now()
        self.call.timeline += [(now, line) for line in lines]
        self._writer.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
        await self._writer.drain()

    async def _until(self, when: float, reply: str, cut_reply: str = "200 result=-1") -> str:
        """Let the command run until ``when`` and return ``reply``; if the absolute timeout comes
        first, stop there (``200 result=-1``, then the hangup: ``agi_hung_controller_timeout.txt``
        variant e)."""
        hangup_at = self.line.hangup_at
        if not self._dead and hangup_at is not None and hangup_at < when:
            await self.clock.sleep_until(hangup_at)
            raise _Cut(cut_reply)
        await self.clock.sleep_until(when)
        return reply

    async def serve(self, env: bytes) -> None:
        """Send the environment block, then answer commands until the server closes."""
        self.call.started_at = self.clock.now()
        if self.script.absolute_timeout is not None:
            self.line.arm(self.script.absolute_timeout)
        self._writer.write(env)
        await self._writer.drain()
        try:
            await self._maybe_idle_hangup()
            await self._command_loop()
        except _Closed:
            self._writer.close()
            return
        finally:
            self.call.ended_at = self.clock.now()
        await self._after_server_close()

    async def _command_loop(self) -> None:
        while True:
            try:
                raw = await self._next_command()
            except asyncio.IncompleteReadError as exc:
                if exc.partial:  # executed even without \n (agi_server_partial_line_close.txt)
                    await self._handle_line(exc.partial.decode("utf-8", errors="replace"))
                return
            except ConnectionError:
                return
            if raw is None:  # the absolute timeout fired while Asterisk waited for a command
                await self._timer_fired()
                continue
            await self._handle_line(raw[:-1].decode("utf-8", errors="replace"))

    async def _next_command(self) -> bytes | None:
        """The next command line; None if the absolute timeout fires first (res_agi itself waits
        for the server without any timeout: ``agi_server_silent.txt``)."""
        hangup_at = self.line.hangup_at
        if self._dead or hangup_at is None:
            return await self._reader.readuntil(b"\n")
        try:
            async with asyncio.timeout(self.clock.real_seconds(hangup_at - self.clock.now())):
                return await self._reader.readuntil(b"\n")
        except TimeoutError:
            return None

    async def _timer_fired(self) -> None:
        """The channel's absolute timeout: a soft hangup, like the caller's, but the dialplan
        will go on at ``T`` (the PBX clears the timer and the soft hangup before running it)."""
        self.line.hangup_at = None
        self.call.timed_out = True
        self.call.timed_out_at = self.clock.now()
        await self._hang_up(0.0)

    async def _after_server_close(self) -> None:
        """Asterisk writes a last HANGUP (if AGISIGHUP) after the script ends, then closes. A
        classic script that closed its stdout gets nothing: run_agi() has reaped it and
        forgotten its pid, so the SIGHUP after its loop is not sent."""
        if self.script.agisighup and self._signal_hangup is None:
            try:
                self._writer.write(b"HANGUP\n")
                await self._writer.drain()
            except ConnectionError:
                pass
        self._writer.close()

    # -- commands ------------------------------------------------------------------------------

    async def _handle_line(self, line: str) -> None:
        self.call.commands.append(line)
        self.call.command_times.append(self.clock.now())
        self._after_prompt, self._prompted = self._prompted, False
        if line[:7].lower() == "failure":
            await self._failure_line()
        argv = parse_args(line)
        name = self._find(argv)
        if name is None:
            await self._send([UNKNOWN_510])
        elif self._dead and name not in _DEAD_OK:
            await self._send([DEAD_511])
        elif self._hangup_now(name, line):
            await self._hangup_during(name, argv)
        else:
            try:
                reply = await self._table[name](argv)
            except _Cut as cut:
                await self._send([cut.reply])
                await self._timer_fired()
                reply = []
            if reply:
                await self._send(reply)
        if name == "SET AUTOHANGUP":  # between a prompt and its WAIT FOR DIGIT: still prompted
            self._prompted = self._after_prompt
        await self._count_command()

    async def _failure_line(self) -> None:
        self.call.agistatus = "FAILURE"
        self.call.outcome = "failure-line"
        if self.script.agisighup:
            await self._notify_hangup()
        raise _Closed

    async def _notify_hangup(self) -> None:
        """run_agi()'s hangup notice: ``HANGUP\\n`` to a FastAGI server, SIGHUP to a classic
        script's process."""
        if self._signal_hangup is not None:
            self.call.sighups += 1
            self._signal_hangup()
        else:
            await self._send(["HANGUP"])

    def _find(self, argv: Sequence[str]) -> str | None:
        words = [word.upper() for word in argv]
        for size in (3, 2, 1):
            name = " ".join(words[:size])
            if len(words) >= size and name in self._table:
                return name
        return None

    def _command_table(self) -> dict[str, Callable[[list[str]], Awaitable[Reply]]]:
        return {
            "ANSWER": self._answer,
            "CHANNEL STATUS": self._channel_status,
            "STREAM FILE": self._stream_file,
            "GET OPTION": self._stream_file,
            "CONTROL STREAM FILE": self._control_stream_file,
            "GET DATA": self._get_data,
            "WAIT FOR DIGIT": self._wait_for_digit,
            "SET VARIABLE": self._set_variable,
            "GET VARIABLE": self._get_variable,
            "GET FULL VARIABLE": self._get_full_variable,
            "EXEC": self._exec,
            "VERBOSE": self._verbose,
            "NOOP": self._noop,
            "HANGUP": self._hangup_command,
            "DATABASE PUT": self._database_put,
            "DATABASE GET": self._database_get,
            "DATABASE DEL": self._database_del,
            "DATABASE DELTREE": self._database_deltree,
            "SAY DIGITS": self._say,
            "SAY NUMBER": self._say,
            "SAY ALPHA": self._say,
            "SAY PHONETIC": self._say,
            "SET MUSIC": self._set_music,
            "SET AUTOHANGUP": self._set_autohangup,
            "SET CONTEXT": self._noop,
            "SET EXTENSION": self._noop,
            "SET PRIORITY": self._noop,
        }

    # -- caller steps and hangup ---------------------------------------------------------------

    @property
    def remaining_steps(self) -> tuple[Step, ...]:
        """The caller's steps not used yet: a later AGI() of the same call continues with them."""
        return tuple(self._steps)

    def _step(self) -> Step | None:
        return self._steps[0] if self._steps else None

    def _advance(self) -> None:
        self._steps.pop(0)
        self._since_step = 0

    def _listen(self, command: str, prompt_s: float = 0.0, first_at: float | None = None) -> float:
        """A command starts listening for digits now (its prompt lasts ``prompt_s``): digits
        that arrived while nothing listened are gone; if the caller has finished typing, their
        next step starts (``first_at``: when a Press's first digit arrives). Returns now."""
        now = self.clock.now()
        self.line.listen_from(now)
        if self.line.typing:
            return now
        step = self._step()
        if isinstance(step, Silence):
            self._advance()
        elif isinstance(step, Press):
            self._advance()
            start = first_at if first_at is not None else now + (prompt_s / 2 if prompt_s else step.gap)
            self.line.type(step.digits, start, step.gap)
        elif isinstance(step, PressAfterPrompt) and self._asked(command):
            self._advance()
            self.line.type(step.digits, now + prompt_s + step.gap, step.gap)
        return now

    def _asked(self, command: str) -> bool:
        """The caller answers a prompt: GET DATA's own, or the one a WAIT FOR DIGIT follows
        (a WAIT FOR DIGIT after no prompt, e.g. one draining digits, asks nothing)."""
        if command == "GET DATA":
            return True
        return command == "WAIT FOR DIGIT" and self._after_prompt

    def _hangup_now(self, name: str, line: str) -> bool:
        step = self._step()
        if not isinstance(step, HangUpDuring) or self._dead:
            return False
        return step.match.lower() in line.lower()

    async def _hangup_during(self, name: str, argv: list[str]) -> None:
        self._advance()
        if name in _MEDIA:
            reply = "200 result=-1 endpos=0" if name == "STREAM FILE" else "200 result=-1"
            await self._send([reply])
        else:
            await self._send(await self._table[name](argv))
        await self._hang_up(self._hangup_delay)

    async def _count_command(self) -> None:
        self._since_step += 1
        await self._maybe_idle_hangup()

    async def _maybe_idle_hangup(self) -> None:
        step = self._step()
        if isinstance(step, HangUpAfter) and self._since_step >= step.commands:
            self._advance()
            await self._hang_up(0.0)

    async def _hang_up(self, delay: float) -> None:
        """The channel is gone: run_agi() notices (``needhup``), marks the session dead and,
        unless AGISIGHUP is false, notifies the script (HANGUP line or SIGHUP). With
        AGIEXITONHANGUP it then leaves its loop at once, notifies once more (the notice after the
        loop) and closes; otherwise it serves dead mode until the script ends."""
        if self._dead:
            return
        self._dead = True
        self.call.hung_up = True
        if self.call.agistatus == "SUCCESS":
            self.call.agistatus = "HANGUP"
        if self.script.agisighup:
            if delay > 0 and self._signal_hangup is None:
                await asyncio.sleep(delay)
            await self._notify_hangup()
        if self.script.agiexitonhangup:
            if self.script.agisighup:
                await self._notify_hangup()
            self.call.outcome = "exit-on-hangup"
            raise _Closed

    # -- command implementations ---------------------------------------------------------------

    async def _answer(self, argv: list[str]) -> Reply:
        if not self.call.answered:
            await self._until(self.clock.now() + 0.5, "")
        self.call.answered = True
        return ["200 result=0"]

    async def _channel_status(self, argv: list[str]) -> Reply:
        if len(argv) > 2 and argv[2] != self.call.channel:
            return ["200 result=-1"]
        return [f"200 result={6 if self.call.answered else 4}"]

    async def _stream_file(self, argv: list[str]) -> Reply:
        if len(argv) not in (4, 5):
            return usage_block("STREAM FILE")
        found = self._find_recording(argv[2])
        offset = _int(argv[4], 0) if len(argv) == 5 else 0
        if found is None:
            self.call.agistatus = "FAILURE"  # RESULT_FAILURE on a live channel: sticky
            return [f"200 result=-1 endpos={offset}"]
        self._heard(argv[2], found[0])
        return await self._play(argv[2], found[1], offset, argv[3])

    async def _play(self, prompt: str, samples: int, offset: int, escape: str) -> Reply:
        """Play from ``offset``; a digit in ``escape`` stops it, others are swallowed."""
        step = self._step()
        first_at = None
        if isinstance(step, Press) and step.endpos is not None:
            first_at = self.clock.now() + (step.endpos - offset) / SAMPLES_PER_SECOND
        remaining = (samples - offset) / SAMPLES_PER_SECOND
        start = self._listen("STREAM FILE", remaining, first_at)
        end = start + remaining
        while (item := self.line.next_digit(end)) is not None:
            arrival, digit = item
            if digit in escape:
                endpos = offset + round((arrival - start) * SAMPLES_PER_SECOND)
                return [await self._until(arrival, f"200 result={ord(digit)} endpos={endpos}")]
        cut = f"200 result=-1 endpos={offset + round(self._played(start) * SAMPLES_PER_SECOND)}"
        reply = await self._until(end, f"200 result=0 endpos={samples}", cut)
        self._prompted = True  # played to the end: the caller answers the next WAIT FOR DIGIT
        return [reply]

    def _played(self, start: float) -> float:
        hangup_at = self.line.hangup_at
        return max(0.0, (hangup_at if hangup_at is not None else start) - start)

    async def _control_stream_file(self, argv: list[str]) -> Reply:
        if not 5 <= len(argv) <= 9:
            return usage_block("CONTROL STREAM FILE")
        found = self._find_recording(argv[3])
        if found is None:
            self.call.agistatus = "FAILURE"
            return ["200 result=-1 endpos=-1"]
        self._heard(argv[3], found[0])
        start = self._listen("CONTROL STREAM FILE")
        return [await self._until(start + found[1] / SAMPLES_PER_SECOND, "200 result=0 endpos=-1")]

    async def _get_data(self, argv: list[str]) -> Reply:
        if len(argv) < 3:
            return usage_block("GET DATA")
        found = self._find_recording(argv[2])
        if found is None:
            return ["200 result=-1"]  # no AGISTATUS effect (agi_server_status_getdata_missing)
        self._heard(argv[2], found[0])
        samples = found[1]
        first, following = get_data_timeouts(_int(argv[3], 0) if len(argv) > 3 else 0)
        max_digits = _int(argv[4], 1024) if len(argv) > 4 else 1024
        prompt_s = samples / SAMPLES_PER_SECOND
        start = self._listen("GET DATA", prompt_s)
        deadline, digits = start + prompt_s + first, ""
        # A digit during the prompt stops it; each next digit must come within the timeout;
        # the command returns the moment max_digits is reached (result=12345678 at 3.27 s).
        while (item := self.line.next_digit(deadline)) is not None:
            arrival, digit = item
            if digit == "#":
                return [await self._until(arrival, f"200 result={digits}")]
            digits += digit
            if len(digits) >= max_digits:
                return [await self._until(arrival, f"200 result={digits}")]
            deadline = arrival + following
        return [await self._until(deadline, f"200 result={digits} (timeout)")]

    async def _wait_for_digit(self, argv: list[str]) -> Reply:
        if len(argv) != 4:
            return usage_block("WAIT FOR DIGIT")
        timeout_ms = _int(argv[3], 0)
        start = self._listen("WAIT FOR DIGIT")
        end = None if timeout_ms < 0 else start + timeout_ms / 1000
        item = self.line.next_digit(end)
        if item is not None:
            return [await self._until(item[0], f"200 result={ord(item[1])}")]
        if end is None:  # waits for ever: only a hangup or the absolute timeout ends it
            end = self.line.hangup_at if self.line.hangup_at is not None else self.clock.now() + 86400
        return [await self._until(end, "200 result=0")]

    async def _set_variable(self, argv: list[str]) -> Reply:
        if len(argv) != 4:
            return usage_block("SET VARIABLE")
        self._set(argv[2], argv[3])
        return ["200 result=1"]

    def _find_recording(self, name: str) -> tuple[str, int] | None:
        """What Asterisk plays for ``name`` in the channel's language now; a WARNING when it
        finds nothing (file.c)."""
        found = self.script.recording(name, self.call.language)
        if found is None:
            self.call.warnings.append(sounds.missing_file_warning(name))
        return found

    def _heard(self, prompt: str, path: str) -> None:
        self.call.prompts.append(prompt)
        self.call.played.append(path)

    def _set(self, name: str, value: str) -> None:
        """``pbx_builtin_setvar_helper``: a name ending in ``)`` is a dialplan function, written
        through it (``CHANNEL(language)`` sets the channel's language, which is not a variable);
        any other name is a channel variable."""
        if name.upper() == _LANGUAGE_FUNCTION:
            self.call.language = value
            return
        self.call.variables[name] = value
        self.call.varsets.append((name, value))

    async def _get_variable(self, argv: list[str]) -> Reply:
        if len(argv) != 3:
            return usage_block("GET VARIABLE")
        value = self._lookup(argv[2])
        # res_agi.c handle_getvariable reads into a 1024-byte buffer: a longer value comes back
        # cut to its first 1023 characters (agi_inbound_language_header.txt, recv (g)).
        return ["200 result=0"] if value is None else [f"200 result=1 ({value[:GET_VARIABLE_MAX]})"]

    async def _get_full_variable(self, argv: list[str]) -> Reply:
        if len(argv) not in (4, 5):
            return usage_block("GET FULL VARIABLE")
        if len(argv) == 5 and argv[4] != self.call.channel:
            return ["200 result=0"]
        expanded = _VAR_REF.sub(lambda m: self._lookup(m[1]) or "", argv[3])
        return [f"200 result=1 ({expanded})"]

    def _lookup(self, name: str) -> str | None:
        if name in self.call.variables:
            return self.call.variables[name]
        return self._functions().get(name)

    def _functions(self) -> dict[str, str]:
        script, number = self.script, self.script.caller or ""
        name = script.caller_name or ""
        return {
            "CALLERID(num)": number,
            "CALLERID(name)": name,
            "CALLERID(all)": f'"{name}" <{number}>' if name else number,
            "CHANNEL(state)": "Up" if self.call.answered else "Ring",
            "CHANNEL(language)": self.call.language,
            "CHANNEL": self.call.channel,
            "EXTEN": script.dial,
            "CONTEXT": script.context,
            "UNIQUEID": self.call.uniqueid,
            "CHANNEL(uniqueid)": self.call.uniqueid,
            "CHANNEL(linkedid)": script.linkedid or self.call.uniqueid,
            "SYSTEMNAME": script.system_name,  # unset: "200 result=1 ()" (agi_ami_systemname.txt)
        }

    async def _exec(self, argv: list[str]) -> Reply:
        if len(argv) < 2:
            return usage_block("EXEC")
        app, options = argv[1], argv[2] if len(argv) > 2 else ""
        if app.lower() not in self.script.apps:
            return ["200 result=-2"]  # AGISTATUS unaffected (agi_server_status_exec_missing_app)
        self.call.apps.append((app, options))
        if app.lower() == "playback":
            return await self._exec_playback(options)
        if app.lower() == "set" and "=" in options:
            key, _, value = options.partition("=")
            self._set(key, value)
        if app.lower() == "wait" and not self._dead:
            start = self._listen("EXEC")  # digits during Wait() are swallowed
            return [await self._until(start + max(_float(options), 0.0), "200 result=0")]
        return ["200 result=0"]

    async def _exec_playback(self, prompt: str) -> Reply:
        found = None if self._dead else self._find_recording(prompt)
        self.call.variables["PLAYBACKSTATUS"] = "SUCCESS" if found else "FAILED"
        if found is not None:
            self._heard(prompt, found[0])
            start = self._listen("EXEC")
            return [await self._until(start + found[1] / SAMPLES_PER_SECOND, "200 result=0")]
        return ["200 result=0"]

    async def _verbose(self, argv: list[str]) -> Reply:
        return usage_block("VERBOSE") if len(argv) not in (2, 3) else ["200 result=1"]

    async def _noop(self, argv: list[str]) -> Reply:
        return ["200 result=0"]

    async def _hangup_command(self, argv: list[str]) -> Reply:
        await self._send(["200 result=1"])
        await self._hang_up(self._hangup_delay)
        return []

    async def _database_put(self, argv: list[str]) -> Reply:
        if len(argv) != 5:
            return usage_block("DATABASE PUT")
        self._database[argv[2], argv[3]] = argv[4]
        return ["200 result=1"]

    async def _database_get(self, argv: list[str]) -> Reply:
        if len(argv) != 4:
            return usage_block("DATABASE GET")
        value = self._database.get((argv[2], argv[3]))
        return ["200 result=0"] if value is None else [f"200 result=1 ({value})"]

    async def _database_del(self, argv: list[str]) -> Reply:
        if len(argv) != 4:
            return usage_block("DATABASE DEL")
        self._database.pop((argv[2], argv[3]), None)
        return ["200 result=1"]  # 1 even when the key was missing

    async def _database_deltree(self, argv: list[str]) -> Reply:
        if len(argv) not in (3, 4):
            return usage_block("DATABASE DELTREE")
        doomed = [key for key in self._database if key[0] == argv[2]]
        for key in doomed:
            del self._database[key]
        return ["200 result=0" if doomed else "200 result=1"]  # inverted, as captured

    async def _say(self, argv: list[str]) -> Reply:
        """SAY NUMBER / SAY DIGITS as res_agi and say.c do them: the files by the language's
        rules (English for a language say.c does not know, with its WARNING), each looked up
        for the channel's language (:mod:`emulator.sounds`); a digit in the escape digits
        stops it (``200 result=<ASCII>``); a missing file ends it, ``200 result=-1`` and
        AGISTATUS FAILURE (``RESULT_FAILURE``). SAY ALPHA / PHONETIC: 0.4 s a character."""
        command = " ".join(argv[:2]).upper()
        number = _SCANF_INT.match(argv[2]) if len(argv) > 2 else None
        if command == "SAY NUMBER" and (not 4 <= len(argv) <= 5 or number is None):
            return usage_block(command)
        if command == "SAY DIGITS" and (len(argv) != 4 or number is None):
            return usage_block(command)
        if len(argv) < 4:
            return usage_block(command)
        if number is None:
            start = self._listen("SAY")
            return [await self._until(start + 0.4 * len(argv[2]), "200 result=0")]
        if command == "SAY NUMBER":
            files = sounds.number_files(int(number.group(0)))
            warning = sounds.number_rules_warning(self.call.language)
            if warning is not None:
                self.call.warnings.append(warning)
        else:
            files = sounds.digit_files(argv[2])
        return [await self._say_files(files, argv[3])]

    async def _say_files(self, files: Sequence[str], escape: str) -> str:
        """``say_filenames``: play each file in turn until a digit or a missing file."""
        found: list[tuple[str, int]] = []
        for name in files:
            recording = self._find_recording(name)
            if recording is None:
                self.call.agistatus = "FAILURE"
                break
            found.append(recording)
        total = sum(samples for _, samples in found) / SAMPLES_PER_SECOND
        start = self._listen("SAY", total)
        at = start
        for path, samples in found:
            self.call.played.append(path)
            at += samples / SAMPLES_PER_SECOND
            while (item := self.line.next_digit(at)) is not None:
                if item[1] in escape:
                    return await self._until(item[0], f"200 result={ord(item[1])}")
        return await self._until(at, "200 result=0" if len(found) == len(files) else "200 result=-1")

    async def _set_music(self, argv: list[str]) -> Reply:
        return usage_block("SET MUSIC") if len(argv) not in (3, 4) else ["200 result=0"]

    async def _set_autohangup(self, argv: list[str]) -> Reply:
        """``SET AUTOHANGUP <s>``: ``200 result=0``; the same timer as ``TIMEOUT(absolute)``,
        0 disarms it (``agi_hung_controller_timeout.txt`` variant d)."""
        try:
            seconds = float(argv[2]) if len(argv) == 3 else None
        except ValueError:
            seconds = None  # sscanf("%30lf") failed: usage
        if seconds is None:
            return usage_block("SET AUTOHANGUP")
        self.line.arm(max(seconds, 0.0))  # negative counts as 0: disarmed
        return ["200 result=0"]


# ---------------------------------------------------------------------------------------------
# Entry point


def network_script(route: str, query: str | Mapping[str, str] | None) -> str:
    """``route`` plus its query string, as Asterisk passes it in ``agi_network_script``."""
    if not query:
        return route
    text = query if isinstance(query, str) else urlencode(dict(query))
    return f"{route}?{text}"


def _channel_name(script: CallerScript, number: int) -> str:
    if script.channel_type == "Local":
        return f"Local/{script.dial}@{script.context}-{number:08x};2"
    return f"PJSIP/sipp-{number:08x}"


async def run_call(
    host: str,
    port: int,
    script: CallerScript,
    route: str = "route",
    query: str | Mapping[str, str] | None = None,
    *,
    args: Sequence[str] = (),
    deadline: float = 30.0,
    time_scale: float = 0.0,
    hangup_delay: float = HANGUP_DELAY,
    line: CallerLine | None = None,
) -> EmulatedCall:
    """Play one call against the FastAGI server at ``host:port`` and report what Asterisk saw.

    ``time_scale`` is the call's clock (:class:`~emulator.line.CallClock`; 0: prompts and digit
    timeouts take no real time). ``deadline`` bounds the whole call in real seconds: a server
    that stops talking is reported as ``server-silent``. ``line``: the channel's clock, digits
    in flight and absolute timeout, shared with earlier and later ``AGI()`` runs of the call."""
    session = await play_session(
        host,
        port,
        script,
        route,
        query,
        args=args,
        deadline=deadline,
        time_scale=time_scale,
        hangup_delay=hangup_delay,
        line=line,
    )
    return (
        session.call if session is not None else EmulatedCall(agistatus="FAILURE", outcome="connect-failed")
    )


async def play_session(
    host: str,
    port: int,
    script: CallerScript,
    route: str = "route",
    query: str | Mapping[str, str] | None = None,
    *,
    args: Sequence[str] = (),
    deadline: float = 30.0,
    time_scale: float = 0.0,
    hangup_delay: float = HANGUP_DELAY,
    line: CallerLine | None = None,
) -> AsteriskSession | None:
    """Like :func:`run_call`, but return the whole session (its ``call`` and the caller's
    :attr:`~AsteriskSession.remaining_steps`, for a later ``AGI()`` of the same call); None
    when the connection was refused or timed out."""
    url = f"agi://{host}:{port}/{network_script(route, query)}"
    return await play_url(
        url,
        script,
        args=args,
        deadline=deadline,
        time_scale=time_scale,
        hangup_delay=hangup_delay,
        line=line,
    )


async def play_url(
    url: str,
    script: CallerScript,
    *,
    args: Sequence[str] = (),
    resolver: Resolver | None = None,
    deadline: float = 30.0,
    time_scale: float = 0.0,
    hangup_delay: float = HANGUP_DELAY,
    line: CallerLine | None = None,
    attempts: list[Attempt] | None = None,
    connect_timeout: float | None = None,
) -> AsteriskSession | None:
    """``AGI(url,args)`` for an ``agi://`` or ``hagi://`` URL (:mod:`emulator.hagi`: the SRV
    targets from ``resolver``, tried in Asterisk's order, the next one only when a connect
    fails); None when no target accepted (``AGISTATUS=FAILURE``). ``agi_request`` is ``url`` as
    given, ``agi_network_script`` the part after the host (res_agi ``setup_env()`` /
    ``launch_netscript()``). ``attempts``: filled with every connect made. ``connect_timeout``:
    real seconds allowed per connect (None: ``MAX_AGI_CONNECT``, 2 s on the call's clock)."""
    number = next(_channel_numbers)
    started = time.perf_counter()
    line = line or CallerLine(CallClock(time_scale))
    if connect_timeout is None:
        connect_timeout = line.clock.real_seconds(CONNECT_TIMEOUT)
    found = await connect(
        url,
        resolver,
        connect_timeout=connect_timeout,
        lookup_gives_up=line.clock.real_seconds(RESOLVER_GIVES_UP),
    )
    if attempts is not None:
        attempts.extend(found.attempts)
    if found.reader is None or found.writer is None:
        return None
    reader, writer = found.reader, found.writer
    session = AsteriskSession(
        script,
        reader,
        writer,
        channel=script.channel or _channel_name(script, number),
        time_scale=time_scale,
        hangup_delay=hangup_delay,
        line=line,
    )
    session.call.uniqueid = script.uniqueid or make_uniqueid(int(time.time()), number, script.system_name)
    parsed = parse_url(url)
    net_script = parsed.script if parsed is not None else ""
    pairs = env_lines(script, net_script, url, session.call.channel, session.call.uniqueid)
    env = encode_env(pairs, args)
    try:
        async with asyncio.timeout(deadline):
            await session.serve(env)
    except TimeoutError:
        session.call.agistatus, session.call.outcome = None, "server-silent"
        writer.close()
    except ConnectionError:
        writer.close()
    session.call.duration = time.perf_counter() - started
    return session
