"""The AMI user callrouter ships may run every action callrouter sends.

Asterisk runs an action only for a user whose ``write =`` holds one of the classes the action was
registered with (``main/manager.c``, ``apps/app_queue.c``: ``emulator.ami_permissions``). The
shipped ``[callrouter]`` users once lacked ``originate``, so on a real Asterisk every queued
callback's ``Originate`` would have been answered ``Permission denied``; the fake AMI, which
allowed every action, did not show it. Now the fake can be given the user's classes, and these
tests keep the shipped users and the code's actions in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emulator.ami import FakeAmi
from emulator.ami_permissions import ACTION_WRITE_CLASSES, CALLROUTER_USER_WRITE, permitted, write_classes
from emulator.ami_wire import parse_message, parse_transcript, server_messages
from routing.ami.core_settings import ACTION as CORE_SETTINGS
from tests.ami.test_fake_originate import SECRET, probe, session
from tests.support.captures import transcripts_dir

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_USERS = (ROOT / "dialplans" / "manager.conf.sample", ROOT / "deploy" / "asterisk" / "manager.conf")
PRODUCTION = ("ivr", "routing", "records", "callrouter", "web", "agi_scripts")
_ACTION_LITERAL = re.compile(r"""["']Action["']\s*:\s*["']([A-Za-z]+)["']""")


def actions_sent() -> set[str]:
    """Every AMI action the production code names as a literal ``"Action": "<name>"``."""
    found: set[str] = set()
    for package in PRODUCTION:
        for path in (ROOT / package).rglob("*.py"):
            found.update(name.lower() for name in _ACTION_LITERAL.findall(path.read_text(encoding="utf-8")))
    return found | {CORE_SETTINGS.lower()}  # the consumer's start-up check names it by a constant


def shipped_write(path: Path) -> frozenset[str]:
    [line] = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("write =")]
    return write_classes(line.partition("=")[2])


def test_the_code_sends_the_actions_the_table_knows() -> None:
    sent = actions_sent()
    # Login and Logoff are sent by panoramisk
    assert {"originate", "ping", "queuestatus", "queuewithdrawcaller", "coresettings"} <= sent
    assert sent <= set(ACTION_WRITE_CLASSES), sent - set(ACTION_WRITE_CLASSES)


@pytest.mark.parametrize("path", SHIPPED_USERS, ids=lambda p: p.name)
def test_the_shipped_ami_user_may_run_every_action_callrouter_sends(path: Path) -> None:
    granted = shipped_write(path)
    refused = sorted(a for a in actions_sent() | {"login", "logoff"} if not permitted(a, granted))
    assert refused == [], f"{path.name}: write = {sorted(granted)} refuses {refused}"
    assert "system" not in granted  # no more than it needs
    assert "all" not in granted


def test_the_table_reads_write_lines_and_grants_as_asterisk_does() -> None:
    assert write_classes("agent,originate ; QueueStatus") == {"agent", "originate"}
    assert permitted("Originate", frozenset({"originate"}))
    assert not permitted("Originate", frozenset({"agent", "reporting"}))
    assert permitted("CoreSettings", frozenset({"reporting"}))  # one class of the set is enough
    assert permitted("QueueStatus", frozenset())  # registered with none: every logged-in user
    assert permitted("Originate", frozenset({"all"}))


async def test_the_fake_refuses_an_originate_to_a_user_without_the_class_as_asterisk_does() -> None:
    """``Response: Error`` / ``Message: Permission denied`` (ami_session_basics.txt), and no
    call is made; with the shipped classes the same action is accepted."""
    request = (
        b"Action: Originate\r\nChannel: Local/3002@probe\r\nContext: probe\r\nExten: 3002\r\n"
        b"Priority: 1\r\nAsync: true\r\nActionID: p-1\r\n\r\n"
    )
    async with FakeAmi("ivrtest", SECRET, write=frozenset({"agent", "reporting"})) as fake:
        fake.originator.far_end = probe
        async with session(fake) as client:
            client.send(request)
            reply, _ = await client.until(lambda m: m.get("ActionID") == "p-1")
    assert reply == [("Response", "Error"), ("ActionID", "p-1"), ("Message", "Permission denied")]
    async with FakeAmi("ivrtest", SECRET, write=shipped_write(SHIPPED_USERS[1])) as fake:
        fake.originator.far_end = probe
        async with session(fake) as client:
            client.send(request)
            reply, _ = await client.until(lambda m: m.get("ActionID") == "p-1")
    assert dict(reply)["Response"] == "Success"


@pytest.mark.parametrize("path", SHIPPED_USERS, ids=lambda p: p.name)
def test_the_emulated_centres_give_the_fake_the_shipped_users_classes(path: Path) -> None:
    assert shipped_write(path) == CALLROUTER_USER_WRITE


# -- read classes: the events callrouter relies on reach the shipped user ----------------------

EVENTS_READ = (
    # records/builder.py (the contact record), routing/live (queue state), ivr/dialler.py
    "Newchannel", "Hangup", "HangupRequest", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave",
    "Hold", "Unhold", "BlindTransfer", "AttendedTransfer", "UserEvent", "OriginateResponse",
    "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentCalled", "AgentRingNoAnswer",
    "AgentConnect", "AgentComplete", "QueueMemberStatus", "QueueMemberAdded", "QueueMemberRemoved",
    "QueueMemberPause", "FullyBooted",
)  # fmt: skip


FROM_SOURCE = {"AttendedTransfer": {"call"}}
"""Events no transcript holds, with the class Asterisk 22 registers them with
(``main/stasis_bridges.c``: ``ast_manager_event_blob_create(EVENT_FLAG_CALL, "AttendedTransfer", ...)``)."""


def privileges_seen() -> dict[str, set[str]]:
    """Each event's classes as Asterisk 22 stated them in its ``Privilege`` header, over every AMI
    transcript (an event reaches a user whose ``read =`` holds one of them; ``all`` aside)."""
    seen: dict[str, set[str]] = {name: set(classes) for name, classes in FROM_SOURCE.items()}
    for path in sorted(transcripts_dir().glob("*.txt")):
        for data in server_messages(parse_transcript(path.read_text(encoding="utf-8", errors="replace"))):
            message = dict(parse_message(data))
            if "Event" in message and "Privilege" in message:
                classes = {c for c in message["Privilege"].split(",") if c != "all"}
                seen.setdefault(message["Event"], set()).update(classes)
    return seen


def shipped_read(path: Path) -> frozenset[str]:
    [line] = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("read =")]
    return write_classes(line.partition("=")[2])


@pytest.mark.parametrize("path", SHIPPED_USERS, ids=lambda p: p.name)
def test_the_shipped_ami_user_reads_every_event_callrouter_relies_on(path: Path) -> None:
    seen, granted = privileges_seen(), shipped_read(path)
    unseen = [event for event in EVENTS_READ if event not in seen]
    assert unseen == [], f"no transcript shows these events' classes: {unseen}"
    unread = {event: sorted(seen[event]) for event in EVENTS_READ if not seen[event] & granted}
    assert unread == {}, f"{path.name}: read = {sorted(granted)} would not receive {unread}"
    assert "dtmf" not in granted  # key presses never reach the controller over AMI
