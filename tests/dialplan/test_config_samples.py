"""The sample queues.conf and manager.conf use only keywords Asterisk 22 knows."""

from __future__ import annotations

import pytest

from emulator.dialplan import DIALPLANS
from emulator.extensions import (
    ConfigError,
    check_manager_conf,
    check_queues_conf,
    parse_config,
    unknown_general_keys,
)


def test_queues_conf_sample_has_no_unknown_keyword() -> None:
    text = (DIALPLANS / "queues.conf.sample").read_text()
    assert check_queues_conf(text) == []
    assert unknown_general_keys(text) == []


def test_unknown_queue_keywords_are_reported_as_asterisk_does() -> None:
    """eventwhencalled (gone since Asterisk 12): one WARNING per queue built from the template,
    with the template's line number."""
    text = "[general]\npersistentmembers = yes\n[t](!)\nstrategy = ringall\neventwhencalled = yes\n"
    text += "[q1](t)\n[q2](t)\n"
    assert check_queues_conf(text) == [
        "Unknown keyword in queue 'q1': eventwhencalled at line 5 of queues.conf",
        "Unknown keyword in queue 'q2': eventwhencalled at line 5 of queues.conf",
    ]


def test_manager_conf_sample_has_no_unknown_keyword() -> None:
    assert check_manager_conf((DIALPLANS / "manager.conf.sample").read_text()) == []


def test_manager_conf_problems_are_reported() -> None:
    text = "[general]\nenabled = yes\nwebenable = yes\n[u]\nread = call,cel\nsecrets = x\n"
    assert check_manager_conf(text) == [
        "Invalid keyword <webenable> = <yes> in manager.conf [general]",
        "[u] read: unknown class cel",
        "secrets is an unknown option.",
    ]


def test_config_text_asterisk_would_not_parse_is_an_error() -> None:
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_config("[q]\nstrategy ringall\n")
    with pytest.raises(ConfigError, match="unknown template"):
        parse_config("[q](nothere)\n")
