"""The pure decisions of delivery (backoff, breaker, HTTP answers), the sinks' formats, the
file sink's idempotence and the plan's ``crm`` section."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from records.delivery import Breaker, Policy, backoff_s, retry_delay_s
from records.sinks import (
    FileSink,
    Outcome,
    SecretError,
    WebhookSink,
    cloud_event,
    day_file,
    outcome_for,
    parse_retry_after,
    read_secret,
    verify,
)
from records.stream import Envelope, EnvelopeError
from routing.core.plan import Crm
from routing.core.plan import FileSink as FileSinkConfig
from tests.records.conftest import SECRET, T0, envelope, webhook_config

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    assert backoff_s(0, 0.2, 60, lambda: 0.999) == pytest.approx(0.1998)
    assert backoff_s(3, 0.2, 60, lambda: 0.5) == pytest.approx(0.8)
    assert backoff_s(30, 0.2, 60, lambda: 1.0) == 60
    assert backoff_s(5, 0.2, 60, lambda: 0.0) == 0


def test_retry_after_wins_over_backoff() -> None:
    assert retry_delay_s(9, Outcome("retry", 429, retry_after_s=7.0), Policy(), lambda: 1.0) == 7.0


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, "delivered"), (201, "delivered"), (204, "delivered"), (400, "refused"), (401, "refused"),
     (404, "refused"), (422, "refused"), (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry"),
     (302, "refused")],
)  # fmt: skip
def test_http_answers(status: int, kind: str) -> None:
    assert outcome_for(status, "x" * 2000, None, NOW).kind == kind


def test_a_refusal_keeps_a_bounded_answer_and_retry_after_is_read_both_ways() -> None:
    assert len(outcome_for(400, "x" * 2000, None, NOW).answer) == 512
    assert outcome_for(503, "", "120", NOW).retry_after_s == 120
    assert parse_retry_after("Tue, 24 Nov 2026 10:00:30 GMT", NOW) == 30
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("999999", NOW) == 3600


def test_the_breaker_opens_after_failures_sends_one_probe_and_closes_on_success() -> None:
    breaker = Breaker(threshold=3, open_s=1.0, open_cap_s=8.0)
    for _ in range(3):
        assert breaker.wait_s(100.0) == 0
        breaker.failure(100.0, None, lambda: 1.0)
    assert breaker.state(100.0) == "open"
    assert breaker.wait_s(100.5) == pytest.approx(0.5)
    assert breaker.wait_s(101.0) == 0  # the probe
    assert breaker.wait_s(101.0) > 0  # everyone else waits for it
    breaker.failure(101.0, None, lambda: 1.0)
    assert breaker.open_until == pytest.approx(103.0)  # cool-down doubled
    assert breaker.wait_s(103.0) == 0
    breaker.success()
    assert breaker.state(103.0) == "closed"
    assert breaker.wait_s(103.0) == 0


def test_retry_after_holds_the_whole_sink_even_before_the_breaker_opens() -> None:
    breaker = Breaker(threshold=5)
    breaker.failure(100.0, 30.0, lambda: 1.0)
    assert breaker.wait_s(110.0) == pytest.approx(20.0)


def test_a_cloud_event_is_structured_signed_and_keyed() -> None:
    sink = WebhookSink("harborough/crm", webhook_config("https://crm.example.gov.uk/in"), SECRET)
    body, headers = sink.request(envelope("1795000000.7", 2, caller="07700900123"))
    event = json.loads(body)
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert headers["Idempotency-Key"] == event["id"] == "1795000000.7:2"
    assert verify(SECRET, body, headers["X-Callrouter-Signature-256"])
    assert not verify(b"another secret", body, headers["X-Callrouter-Signature-256"])
    assert {k: event[k] for k in ("specversion", "type", "source", "subject", "time", "recordversion")} == {
        "specversion": "1.0", "type": "uk.gov.council.callrouter.contact.v1",
        "source": "/callrouter/charnwood", "subject": "1795000000.7", "time": "2026-11-24T10:00:02Z",
        "recordversion": 2,
    }  # fmt: skip
    assert event["data"]["caller"] == "07700900123"  # complete in what goes to the CRM only
    assert SECRET.decode() not in repr(sink)
    assert cloud_event(envelope("a"))["tenant"] == "harborough"


def test_secrets_come_from_the_environment_or_a_file_and_errors_never_show_them(tmp_path: Path) -> None:
    config = webhook_config("https://crm.example.gov.uk/in")
    assert read_secret(config, {"CRM_SECRET": "s3cret"}) == b"s3cret"
    with pytest.raises(SecretError, match="CRM_SECRET is not set"):
        read_secret(config, {})
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    from_file = config.model_copy(update={"secret_env": None, "secret_file": str(secret_file)})
    assert read_secret(from_file, {}) == b"from-a-file"


def test_the_plan_refuses_plain_http_to_another_machine_and_a_sink_without_exactly_one_secret() -> None:
    def crm(**sink: object) -> Crm:
        return Crm.model_validate({"sinks": {"main": {"type": "webhook", **sink}}})

    assert crm(url="https://crm.example.gov.uk/in", secret_env="X").sinks["main"].type == "webhook"
    assert crm(url="http://127.0.0.1:8080/in", secret_file="/run/secrets/crm").sinks["main"].type == "webhook"
    for bad, message in [
        ({"url": "http://crm.example.gov.uk/in", "secret_env": "X"}, "not an https:// URL"),
        ({"url": "https://crm.example.gov.uk/in"}, "exactly one of 'secret_env' or 'secret_file'"),
        ({"url": "https://x.example/in", "secret_env": "X", "secret_file": "/f"}, "exactly one"),
        ({"url": "https://x.example/in", "secret_env": "not an env name"}, "environment variable name"),
        ({"url": "https://x.example/in", "secret_env": "X", "secret": "hunter2"}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=message):
            crm(**bad)


def test_envelopes_refuse_what_cannot_be_delivered() -> None:
    with pytest.raises(EnvelopeError):
        Envelope("has space", 1, "t", "c", T0, T0)
    with pytest.raises(EnvelopeError):
        Envelope("r", 0, "t", "c", T0, T0)
    with pytest.raises(EnvelopeError):
        Envelope("r", 1, "t", "c", T0.replace(tzinfo=None), T0)
    assert Envelope.from_json(envelope("r", 3).to_json()) == envelope("r", 3)


async def test_the_file_sink_writes_each_version_once_per_day_file_and_cuts_a_torn_line(
    tmp_path: Path,
) -> None:
    london = ZoneInfo("Europe/London")
    sink = FileSink(
        "harborough/archive", FileSinkConfig(type="file", directory=str(tmp_path)), "harborough", london
    )
    late = Envelope("r.2", 1, "harborough", "charnwood", T0, datetime(2026, 11, 25, 0, 30, tzinfo=UTC))
    for item in (envelope("r.1", 1), envelope("r.1", 1), envelope("r.1", 2), late):
        assert (await sink.send(item)).kind == "delivered"
    await sink.flush()
    await sink.close()
    day = tmp_path / "harborough" / "harborough-2026-11-24.jsonl"
    assert [json.loads(line)["version"] for line in day.read_text().splitlines()] == [1, 2]
    assert (tmp_path / "harborough" / "harborough-2026-11-25.jsonl").exists()
    with day.open("ab") as handle:  # a crash in the middle of a line
        handle.write(b'{"record_id": "r.9", "vers')
    again = FileSink(
        "harborough/archive", FileSinkConfig(type="file", directory=str(tmp_path)), "harborough", london
    )
    assert (await again.send(envelope("r.1", 2))).kind == "delivered"  # already there: not written
    assert (await again.send(envelope("r.3", 1))).kind == "delivered"
    await again.close()
    lines = day.read_text().splitlines()
    assert [json.loads(line)["record_id"] for line in lines] == ["r.1", "r.1", "r.3"]
    assert (day.stat().st_mode & 0o777) == 0o600


def test_a_day_is_the_tenants_day() -> None:
    # 23:30 UTC on 31 May is 00:30 on 1 June in London (BST): the record belongs to 1 June
    late = Envelope("r", 1, "t", "c", T0, datetime(2026, 5, 31, 23, 30, tzinfo=UTC))
    assert day_file(Path("/d"), "t", late, ZoneInfo("Europe/London")).name == "t-2026-06-01.jsonl"
    assert day_file(Path("/d"), "t", late, ZoneInfo("UTC")).name == "t-2026-05-31.jsonl"
