"""What the Asterisk 22.10.1 dial captures say, read from the transcript files.

The transcripts are where :func:`tests.support.captures.transcripts_dir` says
(``CALLROUTER_TRANSCRIPTS``, else ``shared/asterisk/`` beside the repository); without them, the
verbatim excerpts in ``tests/fixtures/asterisk/`` (their annotation lines) are read instead.
"""

from __future__ import annotations

import ast
import re
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
