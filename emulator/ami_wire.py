"""AMI wire format as Asterisk 22 writes it, for the fake AMI server and tests.

Framing: every line ends in ``\\r\\n``; a message is ``Key: Value`` lines ended by an
empty line; an empty value keeps its space (``AccountCode: \\r\\n``). On connect
Asterisk sends the banner line ``Asterisk Call Manager/11.0.0\\r\\n`` alone.

Also reads the capture transcripts (``<seconds> <S->C|C->S> <python bytes repr>``,
``#`` annotation lines, ``S->C EOF ...`` markers).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Message = list[tuple[str, str]]
"""One AMI message: (header, value) pairs in wire order."""

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
EOL = "\r\n"


def format_message(message: Sequence[tuple[str, str]]) -> bytes:
    """The bytes of one message, blank line included."""
    return ("".join(f"{k}: {v}{EOL}" for k, v in message) + EOL).encode("utf-8")


def parse_message(data: bytes) -> Message:
    """(header, value) pairs of one message's bytes (the blank line is optional)."""
    lines = data.decode("utf-8").split(EOL)
    return [tuple(line.split(": ", 1)) for line in lines if ": " in line]  # type: ignore[misc]


def headers_dict(message: Iterable[tuple[str, str]]) -> dict[str, str]:
    """As a dict (a repeated header keeps its last value)."""
    return dict(message)


# --- transcripts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One data line of a capture: seconds since connect, direction, exact bytes."""

    seconds: float
    direction: str
    data: bytes


def parse_transcript(text: str) -> list[TranscriptLine]:
    """The data lines of a capture transcript (annotations and EOF markers skipped)."""
    out: list[TranscriptLine] = []
    for raw in text.splitlines():
        parts = raw.strip().split(" ", 2)
        if raw.startswith("#") or len(parts) < 3 or not parts[2].startswith("b"):
            continue
        out.append(TranscriptLine(float(parts[0]), parts[1], ast.literal_eval(parts[2])))
    return out


def server_messages(lines: Iterable[TranscriptLine]) -> list[bytes]:
    """Asterisk's messages (S->C), each as its exact bytes; the banner is skipped."""
    messages: list[bytes] = []
    current = b""
    for line in lines:
        if line.direction != "S->C" or line.data == BANNER:
            continue
        current += line.data
        if line.data == b"\r\n":
            messages.append(current)
            current = b""
    return messages


def event_blocks(text: str) -> list[bytes]:
    """The unsolicited event messages of a transcript (no responses, no list items)."""
    blocks = server_messages(parse_transcript(text))
    return [b for b in blocks if b.startswith(b"Event: ") and b"\r\nActionID: " not in b]


# --- channel blocks and events (header order of Asterisk 22.10.1) ---------------------


@dataclass(frozen=True, slots=True)
class Channel:
    """What AMI's channel block says about a channel."""

    name: str
    uniqueid: str
    caller_id_num: str = "01632960123"
    caller_id_name: str = "Jane Resident"
    context: str = "probe"
    exten: str = "2000"
    priority: str = "3"
    state: str = "6"
    state_desc: str = "Up"
    linkedid: str = ""


def channel_block(ch: Channel, prefix: str = "") -> Message:
    """``Channel ... Linkedid`` (``Dest`` prefixed for the called side)."""
    return [
        (f"{prefix}Channel", ch.name),
        (f"{prefix}ChannelState", ch.state),
        (f"{prefix}ChannelStateDesc", ch.state_desc),
        (f"{prefix}CallerIDNum", ch.caller_id_num),
        (f"{prefix}CallerIDName", ch.caller_id_name),
        (f"{prefix}ConnectedLineNum", "<unknown>"),
        (f"{prefix}ConnectedLineName", "<unknown>"),
        (f"{prefix}Language", "en"),
        (f"{prefix}AccountCode", ""),
        (f"{prefix}Context", ch.context),
        (f"{prefix}Exten", ch.exten),
        (f"{prefix}Priority", ch.priority),
        (f"{prefix}Uniqueid", ch.uniqueid),
        (f"{prefix}Linkedid", ch.linkedid or ch.uniqueid),
    ]


def with_system_name(message: Message, name: str) -> Message:
    """An event as an Asterisk with ``systemname`` set sends it: ``SystemName`` after ``Event``,
    ``Privilege`` and, with ``timestampevents``, ``Timestamp`` (agi_ami_systemname.txt: every
    manager event, OriginateResponse's before its ``ActionID``; not ``FullyBooted``, which the
    fake sends apart; no response; the order with ``Timestamp`` is manager.c's, which appends the
    timestamp first)."""
    if len(message) < 2 or message[0][0] != "Event" or message[1][0] != "Privilege":
        return message
    at = 3 if len(message) > 2 and message[2][0] == "Timestamp" else 2
    return [*message[:at], ("SystemName", name), *message[at:]]


def channel_event(name: str, privilege: str, ch: Channel, *extra: tuple[str, str]) -> Message:
    """An event made of a channel block and extra headers (QueueCallerJoin, Hangup...)."""
    return [("Event", name), ("Privilege", privilege), *channel_block(ch), *extra]


def agent_event(name: str, caller: Channel, agent: Channel, *extra: tuple[str, str]) -> Message:
    """AgentCalled/Connect/Complete/RingNoAnswer: caller block, Dest block, extras."""
    return [
        ("Event", name),
        ("Privilege", "agent,all"),
        *channel_block(caller),
        *channel_block(agent, "Dest"),
        *extra,
    ]


@dataclass(slots=True)
class MemberRecord:
    """A queue member as app_queue reports it."""

    queue: str
    interface: str
    name: str
    membership: str = "static"
    penalty: int = 0
    calls_taken: int = 0
    last_call: int = 0
    last_pause: int = 0
    login_time: int = 0
    in_call: bool = False
    status: int = 1
    paused: bool = False
    paused_reason: str = ""
    ringinuse: bool = False
    wrapuptime: int = 0


def member_event(name: str, m: MemberRecord) -> Message:
    """QueueMemberStatus/Added/Removed/Pause/Penalty/Ringinuse (same headers)."""
    return [
        ("Event", name),
        ("Privilege", "agent,all"),
        ("Queue", m.queue),
        ("MemberName", m.name),
        ("Interface", m.interface),
        *_member_state(m),
        ("Ringinuse", "1" if m.ringinuse else "0"),
        ("Wrapuptime", str(m.wrapuptime)),
    ]


# --- QueueStatus reply items (ActionID last, no Privilege) ----------------------------


def _member_state(m: MemberRecord) -> Message:
    """The member headers events and QueueStatus items share, in Asterisk's order."""
    return [
        ("StateInterface", m.interface),
        ("Membership", m.membership),
        ("Penalty", str(m.penalty)),
        ("CallsTaken", str(m.calls_taken)),
        ("LastCall", str(m.last_call)),
        ("LastPause", str(m.last_pause)),
        ("LoginTime", str(m.login_time)),
        ("InCall", "1" if m.in_call else "0"),
        ("Status", str(m.status)),
        ("Paused", "1" if m.paused else "0"),
        ("PausedReason", m.paused_reason),
    ]


def with_action_id(message: Message, action_id: str | None) -> Message:
    """Append ``ActionID`` when the action had one (Asterisk omits it otherwise)."""
    return [*message, ("ActionID", action_id)] if action_id is not None else message


def queue_params(queue: str, calls: int, completed: int, abandoned: int) -> Message:
    """``QueueParams`` (strategy ringall, no service level: as in the captures)."""
    return [
        ("Event", "QueueParams"),
        ("Queue", queue),
        ("Max", "0"),
        ("Strategy", "ringall"),
        ("Calls", str(calls)),
        ("Holdtime", "0"),
        ("TalkTime", "0"),
        ("Completed", str(completed)),
        ("Abandoned", str(abandoned)),
        ("ServiceLevel", "0"),
        ("ServicelevelPerf", "0.0"),
        ("ServicelevelPerf2", "0.0"),
        ("Weight", "0"),
    ]


def queue_member_item(m: MemberRecord) -> Message:
    """``QueueMember`` list item (Name/Location instead of MemberName/Interface)."""
    return [
        ("Event", "QueueMember"),
        ("Queue", m.queue),
        ("Name", m.name),
        ("Location", m.interface),
        *_member_state(m),
        ("Wrapuptime", str(m.wrapuptime)),
    ]


def queue_entry_item(queue: str, position: int, ch: Channel, wait_s: int) -> Message:
    """``QueueEntry`` list item for a waiting caller."""
    return [
        ("Event", "QueueEntry"),
        ("Queue", queue),
        ("Position", str(position)),
        ("Channel", ch.name),
        ("Uniqueid", ch.uniqueid),
        ("CallerIDNum", ch.caller_id_num),
        ("CallerIDName", ch.caller_id_name),
        ("ConnectedLineNum", "unknown"),
        ("ConnectedLineName", "unknown"),
        ("Wait", str(wait_s)),
        ("Priority", "0"),
    ]


def list_complete(name: str, action_id: str | None, items: int) -> Message:
    """``<Name>Complete`` ending an EventList."""
    head: Message = [("Event", name)]
    if action_id is not None:
        head.append(("ActionID", action_id))
    return [*head, ("EventList", "Complete"), ("ListItems", str(items))]
