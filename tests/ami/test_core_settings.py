"""Asterisk's system name read at connect (``Action: CoreSettings``): the fake AMI's answer
against Asterisk 22.10.1 (``tests/fixtures/asterisk/agi_ami_systemname.txt``: section 4 with
``systemname = east-1``, section 5 without, section 6 with ``east 1``), what the reply means,
and the AMI consumer's lines with a fitting name, an unfit one, none, a refusal and silence."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from emulator.ami import FakeAmi
from emulator.ami_wire import headers_dict, parse_message, parse_transcript
from routing.ami.consumer import AmiConsumer
from routing.ami.core_settings import CoreSettings, CoreSettingsRefused, read_reply, report, shown
from routing.core.linkedid import FIX
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.ami.helpers import wait_until
from tests.ami.test_consumer import SECRET, fast_settings
from tests.ami.test_fake_originate import session
from tests.emulator.test_system_name_conformance import section

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {  # the capture's section holding a CoreSettings exchange, and its system name
    "section 4": "east-1",
    "section 5": "",
    "section 6": "east 1",
}


def core_settings_exchange(text: str) -> tuple[bytes, bytes]:
    """The ``CoreSettings`` action of a capture section as sent, and Asterisk's reply."""
    lines = parse_transcript(text)
    [start] = [i for i, line in enumerate(lines) if line.data == b"Action: CoreSettings\r\n"]
    sent, reply = b"", b""
    for line in lines[start:]:
        if line.direction == "C->S" and not sent.endswith(b"\r\n\r\n"):
            sent += line.data
        elif line.direction == "S->C" and sent.endswith(b"\r\n\r\n"):
            reply += line.data
            if line.data == b"\r\n":
                break
    return sent, reply


@pytest.mark.parametrize("title", SECTIONS)
async def test_the_fake_answers_core_settings_as_asterisk_22_did(title: str) -> None:
    sent, captured = core_settings_exchange(section(title))
    assert sent == b"Action: CoreSettings\r\nActionID: cs-1\r\n\r\n"
    async with (
        FakeAmi("ivrtest", "ivrtest-secret", system_name=SECTIONS[title]) as fake,
        session(fake) as client,
    ):
        client.send(sent)
        answered = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 10)
    assert answered == captured


@pytest.mark.parametrize("title", SECTIONS)
def test_the_captured_replies_read_as_their_system_name(title: str) -> None:
    reply = headers_dict(parse_message(core_settings_exchange(section(title))[1]))
    found = read_reply(reply)
    assert found == CoreSettings(SECTIONS[title], "22.10.1")
    assert found.name_fits is (title != "section 6")  # "east 1" holds a space


async def test_a_user_without_the_write_class_is_refused_as_asterisk_refuses() -> None:
    """manager.c: an action whose classes the user's ``write`` lacks gets ``Permission denied``."""
    async with FakeAmi("ivrtest", "ivrtest-secret") as fake, session(fake) as client:
        fake.denied_actions.add("coresettings")
        client.send(b"Action: CoreSettings\r\nActionID: cs-2\r\n\r\n")
        answered = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 10)
    assert answered == b"Response: Error\r\nActionID: cs-2\r\nMessage: Permission denied\r\n\r\n"
    with pytest.raises(CoreSettingsRefused, match="Permission denied"):
        read_reply(headers_dict(parse_message(answered)))


def test_a_success_without_system_name_is_not_taken_as_an_unset_name() -> None:
    with pytest.raises(CoreSettingsRefused, match="no SystemName"):
        read_reply({"Response": "Success", "AsteriskVersion": "1.4.44"})


def test_what_is_shown_of_a_name_is_bounded_escaped_and_masked() -> None:
    assert shown("east-1") == "'east-1'"
    assert shown("east\n1 ") == "'east\\n1 '"
    assert shown("x" * 500) == repr("x" * 64)
    assert shown("centre-01632960123") == "'centre-********123'"


def test_the_report_of_each_answer() -> None:
    assert report(CoreSettings("east-1", "22.10.1")) == (
        (logging.INFO, "ami.core_settings asterisk='22.10.1' system_name='east-1'"),
    )
    assert report(CoreSettings("", "22.10.1"))[0][1].endswith("system_name=''")
    _info, error = report(CoreSettings("east 1", "22.10.1"))
    assert error == (
        logging.ERROR,
        "ami.system_name_unfit system_name='east 1': calls are routed but get no contact record "
        f"(their ids cannot be record ids); {FIX}",
    )
    [(level, refused)] = report(CoreSettingsRefused("Permission denied"))
    assert level == logging.WARNING
    assert refused.startswith("ami.core_settings_unavailable error='Permission denied': ")
    assert "'reporting'" in refused
    [(_, silent)] = report(TimeoutError("no AMI reply within 2 s"))
    assert silent.startswith("ami.core_settings_unavailable error='no AMI reply within 2 s': ")
    [(_, odd)] = report(KeyError("Caller 01632960123"))  # said by type only
    assert odd.startswith("ami.core_settings_unavailable error=KeyError: ")


# --- the consumer, against the fake AMI over TCP and a real Redis ---------------------------

Start = Callable[..., Awaitable[tuple[FakeAmi, AmiConsumer]]]


@pytest.fixture
async def running(redis: Redis, keys: RedisKeys) -> AsyncIterator[Start]:
    """``await start(system_name, denied=..., unanswered=..., **settings)``: a fake AMI and a
    started consumer on it; both stopped at the end."""
    made: list[tuple[FakeAmi, AmiConsumer]] = []

    async def start(
        system_name: str = "", *, denied: bool = False, unanswered: bool = False, **overrides: float
    ) -> tuple[FakeAmi, AmiConsumer]:
        fake = FakeAmi("callrouter", SECRET, system_name=system_name)
        await fake.start()
        if denied:
            fake.denied_actions.add("coresettings")
        if unanswered:
            fake.unanswered_actions.add("coresettings")
        settings = fast_settings(fake, **overrides)
        lease = WriterLease(redis, "a", settings.lease_ttl_s, keys)
        consumer = AmiConsumer(settings, QueueStateStore(redis, "a", keys), lease)
        made.append((fake, consumer))
        await consumer.start()
        return fake, consumer

    yield start
    for fake, consumer in made:
        await consumer.stop()
        await fake.close()


def said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """The consumer's lines about CoreSettings, in order."""
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    return [
        (level, line) for level, line in lines if line.startswith(("ami.core_settings", "ami.system_name"))
    ]


async def test_a_fitting_name_is_said_at_info_only(running: Start, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "routing.ami")
    _fake, consumer = await running("harborough-ast1")
    await wait_until(lambda: consumer.core_settings is not None)
    assert consumer.core_settings == CoreSettings("harborough-ast1", "22.10.1")
    assert said(caplog) == [
        (logging.INFO, "ami.core_settings asterisk='22.10.1' system_name='harborough-ast1'")
    ]


async def test_no_name_is_said_at_info_only(running: Start, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "routing.ami")
    _fake, consumer = await running("")
    await wait_until(lambda: consumer.core_settings is not None)
    assert said(caplog) == [(logging.INFO, "ami.core_settings asterisk='22.10.1' system_name=''")]


async def test_an_unfit_name_is_one_error_even_across_reconnects(
    running: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "routing.ami")
    fake, consumer = await running("east 1")
    await wait_until(lambda: consumer.core_settings is not None)
    fake.drop_connections()
    await wait_until(lambda: consumer.stats.connects >= 2 and fake.actions.count("CoreSettings") >= 2)
    await wait_until(lambda: consumer.connected)
    errors = [line for level, line in said(caplog) if level == logging.ERROR]
    assert errors == [
        "ami.system_name_unfit system_name='east 1': calls are routed but get no contact record "
        f"(their ids cannot be record ids); {FIX}"
    ]
    assert [level for level, _ in said(caplog)] == [logging.INFO, logging.ERROR]


async def test_a_refusal_is_one_warning_and_the_consumer_goes_on(
    running: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "routing.ami")
    fake, consumer = await running(denied=True)
    await wait_until(lambda: bool(said(caplog)))
    fake.drop_connections()
    await wait_until(lambda: consumer.stats.connects >= 2 and fake.actions.count("CoreSettings") >= 2)
    caller = fake.caller_joins("council-revenues").channel
    assert caller is not None
    await wait_until(lambda: consumer.stats.events_applied > 0 and consumer.stats.reconciles_applied > 0)
    [(level, line)] = said(caplog)
    assert level == logging.WARNING
    assert line.startswith("ami.core_settings_unavailable error='Permission denied': ")
    assert consumer.core_settings is None


async def test_silence_is_one_warning_after_the_action_deadline_and_blocks_nothing(
    running: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """An Asterisk that never answers CoreSettings: events, keepalive and reconcile go on while it
    is awaited; after ``action_timeout_s`` one warning, and the consumer is still connected."""
    caplog.set_level(logging.INFO, "routing.ami")
    fake, consumer = await running(unanswered=True, action_timeout_s=1.5)
    await wait_until(lambda: "CoreSettings" in fake.actions)
    fake.caller_joins("council-revenues")
    await wait_until(lambda: consumer.stats.events_applied > 0 and consumer.stats.reconciles_applied > 0)
    pings = fake.actions.count("Ping")
    await wait_until(lambda: bool(said(caplog)))
    assert fake.actions.count("Ping") > pings, "keepalive went on while CoreSettings was unanswered"
    [(level, line)] = said(caplog)
    assert level == logging.WARNING
    assert line.startswith("ami.core_settings_unavailable error='no AMI reply within 1.5 s': ")
    assert consumer.connected
    assert consumer.stats.keepalive_failures == 0


@pytest.mark.parametrize("conf", ["dialplans/manager.conf.sample", "deploy/asterisk/manager.conf"])
def test_the_shipped_ami_user_may_ask_core_settings(conf: str) -> None:
    """manager.c registers CoreSettings with ``system`` and ``reporting`` and checks an action
    against the user's ``write`` classes; the shipped user has ``reporting``, not ``system``."""
    [line] = [
        raw
        for raw in (ROOT / conf).read_text(encoding="utf-8").splitlines()
        if raw.partition("=")[0].strip() == "write"
    ]
    classes = {c.strip() for c in line.partition("=")[2].partition(";")[0].split(",")}
    assert "reporting" in classes
    assert "system" not in classes
