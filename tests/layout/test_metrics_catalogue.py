"""Every metric is named in ``routing/metrics.py``'s catalogue, exposed as catalogued, and listed
in ``docs/operations.md`` (the table there is the catalogue's, verbatim)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from routing import metrics
from routing.core.plan import QueueDest

ROOT = Path(__file__).resolve().parents[2]


def test_docs_hold_the_table_of_every_metric() -> None:
    assert metrics.table() in (ROOT / "docs" / "operations.md").read_text()


def test_every_metric_exposed_is_catalogued_with_its_labels() -> None:
    """With every probe answering and each metric touched, the scrape holds exactly the
    catalogue's metrics, each with the catalogue's type and labels."""
    metrics.set_info("test")
    metrics.RoutedCalls().routed("harborough", QueueDest(type="queue", queue="revenues"), "open")
    metrics.RoutedCalls().decided("route", 0.0002)
    metrics.SinkMetrics("harborough/crm").latency.observe(0.3)
    metrics.WebRequests().answered("/api/v1/whoami", "GET", 200, 0.002)
    metrics.login("ok")
    metrics.toggle_changed("emergency", True)
    metrics.plan_changed("publish")
    metrics.watch(
        sessions=lambda: metrics.SessionFigures(3, {"completed": 3}, {"timeout": 0}, 1),
        ami=lambda: metrics.AmiFigures({"QueueCallerJoin": 2}, 0.5, 0.01, True),
        live_age_s=lambda: 0.2,
        toggles=lambda: [("harborough", "emergency")],
        records_pending=lambda: 0,
        sse_streams=lambda: 2,
    )
    try:
        text = metrics.render()[0].decode()
    finally:
        metrics.watch(
            sessions=None, ami=None, live_age_s=None, toggles=None, records_pending=None, sse_streams=None
        )
    exposed = {}
    for family in text_string_to_metric_families(text):
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        exposed[family.name] = (family.type, labels)
    # the text format shows an info metric as a gauge of value 1
    catalogued = {s.name: ("gauge" if s.kind == "info" else s.kind, set(s.labels)) for s in metrics.CATALOGUE}
    assert exposed == catalogued


def test_no_label_takes_caller_input() -> None:
    assert metrics.destination_kind(QueueDest(type="queue", queue="revenues")) == "queue"
    types = metrics.AmiTypes()
    for n in range(metrics.AMI_TYPES_MAX + 50):
        types.count(f"Event{n}")
    assert len(types.counts) == metrics.AMI_TYPES_MAX + 1
    assert types.counts["other"] == 50
