"""A queued callback in the original call's contact record (pure).

The dialler (``ivr/dialler.py``) ends a callback long after its call's record was made, so the
callback reaches the record as the next version, made by whoever numbers the record's versions:
the controller that owns the call while it holds it (the fact :class:`records.facts.
CallbackReported` through its builder), else the archive (:func:`with_callback` on the latest
archived version). Both take the request from the dispositions stream (``records.dispositions``),
where the dialler puts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from records.model import TEXT_MAX, Callback, ContactRecord


def callback_json(
    attempts: Sequence[tuple[float, float, str, str]], outcome: str | None, previous: Callback | None = None
) -> str:
    """The record's ``callback`` sub-object as JSON: each attempt (start, end, outcome, adviser;
    epoch seconds), the outcome; a callback exists, so it was offered and taken. What the IVR
    recorded of the offer (``previous``: the number's kind) is kept."""
    made = Callback.model_validate(
        {
            "offered": True,
            "accepted": True,
            "number_kind": previous.number_kind if previous is not None else None,
            "attempts": [
                {
                    "started_at": datetime.fromtimestamp(start, UTC),
                    "ended_at": datetime.fromtimestamp(end, UTC),
                    "outcome": result,
                    "adviser": adviser[:TEXT_MAX] or None,
                }
                for start, end, result, adviser in attempts
            ],
            "outcome": outcome,
        }
    )
    return made.model_dump_json()


def with_callback(latest: ContactRecord, callback: str, at: datetime) -> ContactRecord | None:
    """The next version of ``latest`` holding ``callback`` (JSON), or None when it holds it
    already. ``at``: when the callback ended (the version's ``updated_at``)."""
    if at.tzinfo is None:
        raise ValueError("at needs its time zone")
    found = Callback.model_validate_json(callback)
    if latest.callback == found:
        return None
    return latest.model_copy(
        update={"callback": found, "version": latest.version + 1, "updated_at": max(at, latest.updated_at)}
    )
