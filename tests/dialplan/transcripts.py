"""What the Asterisk 22.10.1 dial captures say, read from the transcript files.

The transcripts are where :func:`tests.support.captures.transcripts_dir` says
(``CALLROUTER_TRANSCRIPTS``, else ``shared/asterisk/`` beside the repository); without them, the
verbatim excerpts in ``tests/fixtures/asterisk/`` (their annotation lines) are read instead.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.captures import REPO, transcripts_dir

SHARED = transcripts_dir()
EXCERPTS = REPO / "tests" / "fixtures" / "asterisk"
TRUNK_FORMS = "dial_pjsip_trunk_forms.txt"
PREDIAL = "dial_predial_handler_variables.txt"


def transcript_path(name: str) -> Path:
    full = SHARED / name
    return full if full.exists() else EXCERPTS / name


def annotations(name: str) -> list[str]:
    """The ``#`` lines of transcript ``name``, without the leading ``#`` and spaces."""
    lines = transcript_path(name).read_text().splitlines()
    return [line[1:].strip() for line in lines if line.startswith("#")]


@dataclass
class SipInvite:
    request_uri: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


def invites(name: str) -> list[SipInvite]:
    """The INVITEs the far end (a sipp UAS) received, in arrival order (``SIP ...`` lines)."""
    found: list[SipInvite] = []
    for line in annotations(name):
        if not line.startswith("SIP "):
            continue
        text = line[4:]
        if text.startswith("INVITE "):
            found.append(SipInvite(text.split()[1]))
        elif text != "----" and found:
            key, _, value = text.partition(":")
            found[-1].headers.append((key, value.strip()))
    return found


_EXECUTING = re.compile(r'Executing \[([^@]+)@([^:]+):(\d+)\] (\w+)\("([^"]*)", "(.*)"\) in new stack$')


@dataclass(frozen=True)
class Executed:
    exten: str
    context: str
    priority: int
    app: str
    channel: str
    data: str


def executed(name: str) -> list[Executed]:
    """Every ``Executing [exten@context:priority] App("channel", "data")`` log line."""
    found: list[Executed] = []
    for line in annotations(name):
        match = _EXECUTING.search(line)
        if match:
            exten, context, priority, app, channel, data = match.groups()
            found.append(Executed(exten, context, int(priority), app, channel, data))
    return found


def results(name: str) -> dict[str, tuple[str, str | None]]:
    """The ``# Results:`` line: Dial argument -> (DIALSTATUS, DialBegin DialString or None)."""
    line = next(line for line in annotations(name) if line.startswith("Results:"))
    found: dict[str, tuple[str, str | None]] = {}
    for item in line.removeprefix("Results:").split(";"):
        match = re.search(r"Dial\((.+)\) -> DIALSTATUS=(\w+), DialBegin DialString=(\S+)", item)
        assert match, item
        found[match.group(1)] = (match.group(2), None if match.group(3) == "None" else match.group(3))
    return found


def errors(name: str) -> list[str]:
    """Asterisk's ERROR log lines, as ``<file>: <message>``."""
    return [
        re.sub(r"^ERROR\[\d+\] ", "", line.split("asterisk log: ", 1)[1])
        for line in annotations(name)
        if "asterisk log: ERROR" in line
    ]


def user_events(name: str) -> list[tuple[str, dict[str, str]]]:
    """``AMI UserEvent <name> on <channel>: {...}`` annotations: (name, headers)."""
    found: list[tuple[str, dict[str, str]]] = []
    for line in annotations(name):
        match = re.search(r"AMI UserEvent (\w+) on \S+: (\{.*\})$", line)
        if match:
            found.append((match.group(1), ast.literal_eval(match.group(2))))
    return found


def scenario(name: str) -> str:
    return next(line for line in annotations(name) if line.startswith("Scenario:"))


# --- the inbound partner-header captures (recorded for this project, in tests/fixtures/asterisk) ---

PROBE = "pjsip_header_read_probe.txt"
INBOUND = "agi_inbound_partner_headers.txt"
_DATA = re.compile(r"^\s*\d+\.\d+ (A->S|S->A) (.*)$")


@dataclass
class AgiSession:
    """One FastAGI connection: the environment Asterisk sent and the commands the server sent."""

    env: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)

    @property
    def args(self) -> list[str]:
        """``agi_arg_1``, ``agi_arg_2``, ... in order."""
        numbered = sorted((int(k[8:]), v) for k, v in self.env.items() if k.startswith("agi_arg_"))
        return [value for _, value in numbered]


@dataclass
class Section:
    """One scenario of a capture (``# ---- <label>``): its raw lines."""

    label: str
    lines: list[str] = field(default_factory=list)

    def annotations(self) -> list[str]:
        return [line[1:].strip() for line in self.lines if line.startswith("#")]

    def sent_headers(self) -> list[tuple[str, str]]:
        """The X- headers of the INVITE the sipp UAC sent (``SIP X-Name: value`` lines)."""
        found: list[tuple[str, str]] = []
        for line in self.lines:
            if line.startswith("#   SIP X-"):
                key, _, value = line.removeprefix("#   SIP ").partition(":")
                found.append((key, value.removeprefix(" ")))
        return found

    def sessions(self) -> list[AgiSession]:
        found: list[AgiSession] = []
        in_env = False
        for line in self.lines:
            if line.startswith("# ---- FastAGI connection"):
                found.append(AgiSession())
                in_env = True
                continue
            match = _DATA.match(line)
            if not match or not found:
                continue
            data: bytes = ast.literal_eval(match.group(2))
            text = data.decode()
            if match.group(1) == "S->A":
                found[-1].commands.append(text.rstrip("\n"))
            elif in_env and text == "\n":
                in_env = False
            elif in_env:
                key, _, value = text.rstrip("\n").partition(": ")
                found[-1].env[key] = value
        return found

    def executed(self) -> list[Executed]:
        found: list[Executed] = []
        for line in self.annotations():
            match = _EXECUTING.search(line)
            if match:
                exten, context, priority, app, channel, data = match.groups()
                found.append(Executed(exten, context, int(priority), app, channel, data))
        return found

    def errors(self) -> list[str]:
        """Asterisk's ERROR and WARNING lines, as ``<LEVEL> <file>: <message>``."""
        found: list[str] = []
        for line in self.annotations():
            match = re.search(r"asterisk log: (ERROR|WARNING)\[[^\]]*\](?:\[[^\]]*\])? (.*)$", line)
            if match:
                found.append(f"{match.group(1)} {match.group(2)}")
        return found


def sections(name: str) -> list[Section]:
    """The scenarios of capture ``name``, in order (each starts at a ``# ---- <label>`` line
    that follows a ``# ====`` rule)."""
    found: list[Section] = []
    lines = transcript_path(name).read_text().splitlines()
    for previous, line in zip(["", *lines], lines, strict=False):
        if line.startswith("# ---- ") and previous.startswith("# ===="):
            found.append(Section(line.removeprefix("# ---- ")))
        elif found:
            found[-1].lines.append(line)
    return found


def dialplan_lines(name: str, context: str) -> list[str]:
    """The lines of ``[context]`` the capture's ``# Dialplan:`` block quotes."""
    found: list[str] = []
    current = None
    for line in transcript_path(name).read_text().splitlines():
        if line.startswith("# ===="):
            break
        if not line.startswith("#   "):
            continue
        text = line.removeprefix("#   ")
        if text.startswith("["):
            current = text.strip("[]")
        elif current == context:
            found.append(text.strip())
    return found


def spliced(shipped: str, contexts: Mapping[str, list[str]]) -> list[str]:
    """The lines of ``shipped`` (a ``.conf`` text) with the first extension of each context named
    in ``contexts`` (its ``exten =>`` line and the `` same`` lines after it) replaced by the given
    lines, e.g. as a capture ran them; the context's other extensions are kept."""
    out: list[str] = []
    state = "copy"  # "header": just after a replaced context's header; "skip": in its first extension
    for line in shipped.splitlines():
        header = line.strip()
        if header.startswith("[") and header.strip("[]") in contexts:
            out += [header, *contexts[header.strip("[]")]]
            state = "header"
            continue
        first_exten = state == "header" and line.startswith("exten => ")
        if first_exten or (state == "skip" and line.startswith(" same")):
            state = "skip"
            continue
        state = "copy"
        out.append(line)
    return out
