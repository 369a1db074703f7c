"""The rendered report: the figures are on the page, text is escaped, charts are embedded PNGs,
and no caller number appears in the page or the KPI JSON."""

from __future__ import annotations

import base64
import json
import re
from datetime import date, timedelta

from records.kpi import Range, report
from records.model import ContactRecord
from records.report import render_csv, render_html, render_json
from tests.records.test_kpi import SETTINGS, a_day, answered_call, at, callback_day, disposition

DAY = Range(date(2026, 11, 24), date(2026, 11, 24))
HOSTILE = "<script>alert(1)</script>"


def hostile_day() -> list[ContactRecord]:
    """The day of calls, and one forwarded to a back-office team whose name is markup."""
    arrived = at(16, 30)
    forwarded = answered_call(30, arrived, "hdc-revenues", 10, 60,
                              disposition=disposition("back_office", arrived, team=HOSTILE))  # fmt: skip
    return [*a_day(), forwarded]


def test_the_page_shows_the_figures_and_the_fpoc_target() -> None:
    data = report("harborough", a_day(), DAY, "day", SETTINGS, generated_at=at(20), baseline=(DAY, a_day()))
    html = render_html(data, "Harborough District Council")
    assert (
        "<title>Harborough District Council: contact centre report, 2026-11-24 to 2026-11-24</title>" in html
    )
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "10 calls offered" in text
    assert "60.0 % answered (6 calls)" in text
    assert "66.7 % of answered calls answered within 20 s" in text
    assert "40.0 % resolved at first point of contact: target 80 %, below target" in text
    assert "First point of contact resolution target: at least 80 %" in text
    assert "+25.0 satisfaction net score (4 responses)" in text
    assert "council-tax 1" in text
    assert "chasing-progress 1" in text
    assert "Service-level time: 20 s; hdc-waste: 30 s." in text
    assert '<th scope="col">Offered</th>' in html
    assert "Against the baseline" in html


def test_text_from_records_is_escaped() -> None:
    data = report("harborough", hostile_day(), DAY, "day", SETTINGS, generated_at=at(20))
    html = render_html(data, "Harborough <b>District</b> Council")
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Harborough &lt;b&gt;District&lt;/b&gt; Council" in html
    assert "<script" not in html


def test_the_charts_are_embedded_pngs() -> None:
    data = report("harborough", a_day(), DAY, "day", SETTINGS, generated_at=at(20))
    images = re.findall(
        r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', render_html(data, "H")
    )
    assert len(images) == 2  # the heat map and the weekly line
    for encoded, alt in images:
        assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")
        assert alt
    # the page loads nothing from elsewhere: no src or href but data URIs
    assert re.search(r'(src|href)="(?!data:)', render_html(data, "H")) is None


def test_no_caller_number_in_the_page_the_json_or_the_csv() -> None:
    records = hostile_day()
    numbers = {r.caller.number for r in records if r.caller.number}
    assert numbers == {"01632960123"}
    data = report("harborough", records, DAY, "week", SETTINGS, generated_at=at(20),
                  baseline=(DAY, records))  # fmt: skip
    for text in (render_html(data, "H"), render_json(data), render_csv(data)):
        assert "01632960123" not in text
        assert "1632960123" not in text
        assert "960123" not in text
    assert json.loads(render_json(data)) == data


def test_an_empty_range_renders() -> None:
    later = Range(DAY.first + timedelta(days=7), DAY.last + timedelta(days=7))
    data = report("harborough", [], later, "day", SETTINGS, generated_at=at(20))
    html = render_html(data, "H")
    assert "No calls in the period." in html
    assert "no dispositions" in html


def test_the_page_shows_the_callbacks_by_period_and_by_queue() -> None:
    data = report("harborough", callback_day(), DAY, "day", SETTINGS, generated_at=at(20))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", render_html(data, "H")))
    assert "Queued callbacks" in text
    assert "Whole period 7 6 4 2 40.0 % 1 1 1 1 300.0 1,380.0" in text
    assert "hdc-revenues 4 3 3 1 50.0 % 1 0 0 1 1,380.0 1,380.0" in text
    assert "hdc-waste 3 3 1 1 33.3 % 0 1 1 0 300.0 300.0" in text
    without = render_html(report("harborough", a_day(), DAY, "day", SETTINGS, generated_at=at(20)), "H")
    assert "No callback was offered." in without
