"""Settings from the environment, and the fast event parser against panoramisk's."""

from __future__ import annotations

from pathlib import Path

import pytest
from panoramisk.message import Message

from emulator.ami_wire import event_blocks
from routing.ami.client import parse_event, plain_headers
from routing.ami.settings import AmiSettings, SettingsError
from tests.ami.helpers import fixture_text


def test_settings_from_env_with_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "ami-secret"
    secret.write_text("from-file\n", encoding="utf-8")
    env = {
        "CALLROUTER_AMI_HOST": "10.0.0.5",
        "CALLROUTER_AMI_PORT": "5039",
        "CALLROUTER_AMI_PING_INTERVAL_S": "2.5",
        "CALLROUTER_AMI_SECRET_FILE": str(secret),
    }
    settings = AmiSettings.from_env(env)
    assert (settings.host, settings.port, settings.ping_interval_s) == ("10.0.0.5", 5039, 2.5)
    assert settings.secret == "from-file"
    assert "from-file" not in repr(settings)


def test_secret_variable_wins_and_bad_values_are_named() -> None:
    assert AmiSettings.from_env({"CALLROUTER_AMI_SECRET": "x"}).secret == "x"
    with pytest.raises(SettingsError, match="CALLROUTER_AMI_SECRET or"):
        AmiSettings.from_env({})
    with pytest.raises(SettingsError, match="CALLROUTER_AMI_PORT has value 'abc': not a valid int"):
        AmiSettings.from_env({"CALLROUTER_AMI_SECRET": "x", "CALLROUTER_AMI_PORT": "abc"})


@pytest.mark.parametrize("fixture", ["queue_answered_call.txt", "queue_member_management.txt"])
def test_parse_event_equals_panoramisk(fixture: str) -> None:
    for block in event_blocks(fixture_text(fixture)):
        raw = block.decode().strip()
        ours, theirs = parse_event(raw), Message.from_line(raw)
        assert ours is not None
        assert dict(ours.items()) == dict(theirs.items())
        assert ours.event == theirs.event
        assert plain_headers(ours) == {k: v for k, v in theirs.items() if k != "content"}


def test_responses_and_repeated_headers_go_through_panoramisk() -> None:
    response = parse_event("Response: Success\r\nActionID: 1\r\nMessage: ok")
    assert response is not None
    assert response["Message"] == "ok"
    repeated = parse_event("Event: X\r\nVariable: a=1\r\nVariable: b=2")
    assert repeated is not None
    assert repeated["Variable"] == ["a=1", "b=2"]
    assert plain_headers(repeated) == {"Event": "X", "Variable": "a=1"}


def test_a_user_event_repeating_linkedid_gives_plain_text_headers() -> None:
    """The adviser's hangup handler's UserEvent repeats Linkedid (channel block, then its own):
    the tap and the live state get text, the first value."""
    raw = (
        "Event: UserEvent\r\nPrivilege: user,all\r\nChannel: PJSIP/agent1-0000003c\r\n"
        "Uniqueid: 1795963599.68\r\nLinkedid: 1795963598.67\r\nUserEvent: CallDisposition\r\n"
        "AgentChannel: PJSIP/agent1-0000003c\r\nLinkedid: 1795963598.67\r\nDisposition: resolved"
    )
    message = parse_event(raw)
    assert message is not None
    headers = plain_headers(message)
    assert headers["Linkedid"] == "1795963598.67"
    assert all(isinstance(v, str) for v in headers.values())
