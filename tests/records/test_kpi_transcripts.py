"""From Asterisk to the council's figures: records built from the recorded AMI sessions (Asterisk
22.10.1), filed in the owner's archive with their later versions, read back and counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from records.archive import Archive
from records.kpi import KpiSettings, figures
from records.model import ContactRecord
from tests.records.support import ami_events, builder, feed

SESSIONS = (
    "ami_queue_answered_call.txt",  # answered after 2 s, 6 s of talk
    "ami_queue_caller_abandon.txt",  # abandoned after 4 s
    "ami_queue_timeout.txt",  # timed out after 8 s
    "ami_queue_status_summary_withdraw.txt",  # two callers withdrawn for the partner
    "ami_queue_call_disposition.txt",  # answered after 1 s, 5 s of talk, resolved
    "ami_transfer_blind_refer.txt",  # answered after 1 s, 2 s of talk, transferred
    "ami_hold_reinvite.txt",  # answered after 1 s, 8 s of talk with hold
)


def records_of(name: str) -> list[ContactRecord]:
    events = ami_events(name)
    b = builder(grace_s=2.0)
    epoch = feed(b, events)
    made = b.due(epoch + events[-1].seconds + 2.0)
    if name == "ami_transfer_blind_refer.txt":  # the desktop sends the disposition a minute later
        end = epoch + events[-1].seconds + 2.0
        b.feed_ami({"Event": "UserEvent", "UserEvent": "CallDisposition", "Linkedid": made[0].id,
                    "Disposition": "back_office:council-tax"}, end + 60)  # fmt: skip
        made += b.due(end + 63)
    return made


def test_the_recorded_calls_counted_from_the_archive(tmp_path: Path) -> None:
    made = [r for name in SESSIONS for r in records_of(name)]
    assert len(made) == 9  # eight calls, one of them in two versions
    archive = Archive(tmp_path)
    assert archive.append_many(made) == 9
    assert archive.append_many(made) == 0  # delivered again: stored once
    start, end = datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
    stored = list(archive.records("harborough", start, end))
    assert len(stored) == 8
    assert [r.version for r in stored if r.disposition and r.disposition.kind == "back_office"] == [2]
    result = figures(stored, KpiSettings())
    assert result["accessibility"] == {
        "offered": 8,
        "answered": 4,
        "answered_rate": 0.5,
        "answered_within_service_level": 4,
        "service_level_rate": 1.0,
        "abandoned_in_ivr": 0,
        "abandoned_in_ivr_mean_s": None,
        "abandoned_in_queue": 1,
        "abandoned_in_queue_mean_s": 4.0,
        "abandoned_in_queue_p90_s": 4.0,
        "timed_out": 1,
        "overflowed_to_partner": 0,  # withdrawn by the recording's QueueWithdrawCaller; no dial recorded
        "overflowed_from_partner": 0,
        "out_of_hours": 0,
        "emergency_cover": 0,
        "withdrawn": 2,
    }
    assert result["service_levels"] == {
        "wait_mean_s": 1.2,  # (2 + 1 + 1 + 1) / 4 = 1.25, to one decimal half to even
        "wait_p50_s": 1.0,
        "wait_p90_s": 2.0,
        "handle_mean_s": 5.2,  # (6 + 5 + 2 + 8) / 4 = 5.25
        "dispositions": 2,
        "resolved_first_point": 1,
        "fpoc_rate": 0.5,
        "fpoc_target": 0.8,
        "fpoc_met": False,
        "back_office_by_team": {"council-tax": 1},
        "avoidable_by_reason": {},
    }
    assert result["satisfaction"] == {
        "good": 0, "average": 0, "poor": 0, "responses": 0, "net_score": None, "response_rate": 0.0,
        "complaints": 0,
    }  # fmt: skip
