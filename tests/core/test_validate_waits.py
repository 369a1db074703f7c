"""plan check on the queued callback and wait announcements: each problem with its path."""

from __future__ import annotations

import pytest

from tests.core.test_validate import doc, only, problems

QUEUE = (
    '\n      main: {{asterisk_queue: "council-main", timeout_s: 600, failover: {{type: hangup}}, {extra}}}'
)


def with_queue(extra: str) -> str:
    return doc(queues=QUEUE.format(extra=extra))


def test_a_callback_and_announcements_check_clean() -> None:
    text = with_queue("callback: {offer_above_s: 300}, announce_wait: {every_s: 60}")
    assert problems(text) == []


@pytest.mark.parametrize(
    ("extra", "path", "words"),
    [
        ('callback: {offer_key: "5"}', "tenants.council.queues.main.callback.offer_key", "says 'press 1'"),
        (
            "callback: {offer_above_s: 900}",
            "tenants.council.queues.main.callback.offer_above_s",
            "timeout_s 600",
        ),
        (
            "callback: {offer_every_s: 600}",
            "tenants.council.queues.main.callback.offer_every_s",
            "never offered",
        ),
        (
            "callback: {allow_numbers: [mobile, premium]}",
            "tenants.council.queues.main.callback.allow_numbers",
            "council's cost",
        ),
        (
            "announce_wait: {position: false, expected_wait: false}",
            "tenants.council.queues.main.announce_wait",
            "announces nothing",
        ),
    ],
)
def test_warnings(extra: str, path: str, words: str) -> None:
    found_path, message = only(with_queue(extra), "warning")
    assert found_path == path
    assert words in message


def test_an_offer_key_with_its_own_prompt_is_fine() -> None:
    assert problems(with_queue('callback: {offer_key: "5", prompt: council/callback-press-5}')) == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('callback: {offer_key: "12"}', "offer_key"),
        ("callback: {allow_numbers: [landline]}", "allow_numbers"),
        ("callback: {allow_numbers: []}", "allow_numbers"),
        ("announce_wait: {max_figure_s: 30}", "max_figure_s"),
    ],
)
def test_shape_errors_name_the_field(extra: str, field: str) -> None:
    found = [p for p in problems(with_queue(extra)) if p.severity == "error"]
    assert found
    assert all(field in p.path for p in found), found
