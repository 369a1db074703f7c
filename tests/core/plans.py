"""Small plans for core tests, built as the data a YAML file would give."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from routing.core.decide import CompiledPlan
from routing.core.plan import Plan

LONDON = ZoneInfo("Europe/London")
UTC = ZoneInfo("UTC")
NUMBER = "01632 960001"

BASE: dict[str, Any] = {
    "version": 1,
    "centre": "home",
    "centres": {"home": {"name": "Home centre"}, "partner": {"name": "Partner", "number": "01632 960400"}},
    "tenants": {
        "council": {
            "name": "A Council",
            "numbers": [NUMBER],
            "prompts": "council",
            "entry": {"type": "queue", "queue": "main"},
            "out_of_hours": {"type": "external", "number": "01632 960999", "label": "OOH"},
            "emergency_cover": {"type": "queue", "queue": "emergency"},
            "queues": {
                "main": {"asterisk_queue": "council-main", "failover": {"type": "hangup"}},
                "emergency": {"asterisk_queue": "council-emergency", "failover": {"type": "hangup"}},
            },
        }
    },
}


def plan_data(**tenant_fields: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["tenants"]["council"].update(tenant_fields)
    return data


def compiled(**tenant_fields: Any) -> CompiledPlan:
    return CompiledPlan.compile(Plan.model_validate(plan_data(**tenant_fields)))


def london(text: str) -> datetime:
    """``"2026-04-03 10:00[:SS]"`` on London's wall clock."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
