"""Contact records made directly, for the archive, export and KPI tests: a plain answered call by
default, each test changing only what it is about."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from records.builder import caller_hash
from records.model import SCHEMA_VERSION, ContactRecord
from tests.records.support import KEY


def record(
    call_id: str,
    arrived: datetime,
    *,
    tenant: str | None = "harborough",
    caller: str | None = "01632960123",
    version: int = 1,
    **fields: Any,
) -> ContactRecord:
    """A record as the builder would give it; ``fields`` replace top-level fields (JSON-shaped)."""
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "id": call_id,
        "version": version,
        "updated_at": (arrived + timedelta(minutes=10 + version)).isoformat(),
        "complete": True,
        "tenant": tenant,
        "dialled": "+441632960001",
        "arrived_at": arrived.isoformat(),
        "centre": "charnwood",
        "caller": {
            "number": caller,
            "hash": caller_hash(KEY, caller) if caller else None,
            "withheld": caller is None,
        },
        "ivr": {"menus": [], "invalid": 0, "timeouts": 0, "announcements": [], "abandoned": False,
                "abandoned_in": None},
        "decisions": [],
        "queues": [],
        "answered": None,
        "talk_s": None,
        "hold_s": 0.0,
        "transfers": [],
        "hops": [],
        "hop_from": None,
        "hangup": None,
        "payment": None,
        "survey": None,
        "disposition": None,
        "problems": [],
    }  # fmt: skip
    document.update(fields)
    return ContactRecord.model_validate_json(json.dumps(document))
