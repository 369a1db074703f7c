"""The council's report, rendered: one self-contained HTML page, or the KPI JSON, or a CSV table.

The figures come from :func:`records.kpi.report`; this module only draws and formats them. The
page is a Jinja2 template with autoescaping on (a team name is text, never markup), its charts
PNG images drawn by matplotlib (the Agg backend: no display) and embedded as ``data:`` URIs, so
the page can be mailed to a partnership board as one file.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from records.kpi import csv_rows

TEMPLATES = Path(__file__).parent / "templates"
_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def heat_map(volume: Mapping[str, Any]) -> str:
    """Calls offered by hour of day (columns) and weekday (rows), as a PNG data URI."""
    grid = volume["by_weekday_hour"]
    figure, axes = plt.subplots(figsize=(10, 3.4))
    image = axes.imshow(grid, aspect="auto", cmap="Blues", vmin=0)
    axes.set_yticks(range(len(volume["weekdays"])), volume["weekdays"])
    axes.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    axes.set_xlabel("Hour of the day (local time)")
    peak = max((max(row) for row in grid), default=0)
    for y, row in enumerate(grid):
        for x, count in enumerate(row):
            if count:
                dark = count > peak * 0.6
                axes.text(x, y, str(count), ha="center", va="center", fontsize=7,
                          color="white" if dark else "#1a1a1a")  # fmt: skip
    figure.colorbar(image, ax=axes, label="Calls offered", fraction=0.025, pad=0.01)
    return _png(figure)


def weekly_line(volume: Mapping[str, Any], baseline_per_week: float | None) -> str:
    """Calls offered by week (Monday's date), with the baseline's weekly rate if there is one."""
    weeks = [w["week"] for w in volume["by_week"]]
    counts = [w["offered"] for w in volume["by_week"]]
    figure, axes = plt.subplots(figsize=(10, 3.0))
    axes.plot(weeks, counts, marker="o", color="#1f5fa8", label="Calls offered")
    if baseline_per_week is not None:
        axes.axhline(baseline_per_week, color="#b35900", linestyle="--", label="Baseline (per week)")
    axes.set_ylabel("Calls offered")
    axes.set_xlabel("Week beginning")
    axes.set_ylim(0, max([*counts, baseline_per_week or 0, 1]) * 1.15)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="lower right")
    if len(weeks) > 8:
        axes.tick_params(axis="x", rotation=45)
    return _png(figure)


def hour_bars(counts: Sequence[int], label: str = "Calls offered") -> str:
    """Calls by hour of one day (24 counts, local time) as a bar chart, a PNG data URI."""
    figure, axes = plt.subplots(figsize=(10, 3.0))
    axes.bar(range(24), counts, color="#1f5fa8", label=label)
    axes.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    axes.set_xlabel("Hour of the day (local time)")
    axes.set_ylabel(label)
    axes.set_ylim(0, max([*counts, 1]) * 1.15)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return text + unit


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _target(value: float) -> str:
    return f"{value * 100:g} %"


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


_ENV.filters.update(percent=_percent, number=_number, seconds=_seconds, target=_target, score=_score)


def render_html(data: Mapping[str, Any], tenant_name: str) -> str:
    """The report as one HTML page (``data`` from :func:`records.kpi.report`)."""
    baseline = data["baseline"]
    per_week = None
    if baseline is not None:
        rows = {row["figure"]: row for row in baseline["comparison"]}
        per_week = rows["offered_per_day"]["baseline"] * 7
    charts = {
        "heat_map": heat_map(data["volume"]),
        "weekly": weekly_line(data["volume"], per_week) if data["volume"]["by_week"] else None,
    }
    template = _ENV.get_template("report.html.j2")
    return template.render(data=data, tenant_name=tenant_name, charts=charts, labels=FIGURE_LABELS)


def render_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_csv(data: Mapping[str, Any]) -> str:
    header, rows = csv_rows(data)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue()


FIGURE_LABELS = {
    "offered_per_day": ("Calls offered per day", "number"),
    "answered_rate": ("Answered", "percent"),
    "service_level_rate": ("Answered within the service-level time", "percent"),
    "wait_mean_s": ("Mean wait to answer (s)", "number"),
    "handle_mean_s": ("Mean handle time (s)", "number"),
    "fpoc_rate": ("Resolved at first point of contact", "percent"),
    "net_score": ("Satisfaction net score", "number"),
    "response_rate": ("Survey response rate", "percent"),
}
