"""An adviser's disposition given after the call, over another channel than AMI (pure).

A disposition reaches the record builder of the controllers, which makes the next version while
it holds the call: from AMI (the ``CallDisposition`` UserEvent) or from the web service's
``POST .../records/{id}/disposition`` through the dispositions stream (``records.dispositions``).
:func:`checked` is the web service's check of such a request. For a call no controller holds any
more, the web service's archive consumer has the stored latest version instead: :func:`disposed`
makes the next version from it, with the same rules as the builder (``records.builder``):

- ``avoidable`` names a reason from the tenant's list in the plan
  (``avoidable_contact_reasons``); ``back_office`` names the team (a plain name);
  ``resolved`` and ``complaint`` take neither;
- the same disposition given again changes nothing (no new version).

The new version goes to the centre's records stream like any other (``records.appender``), so
the delivery worker sends it to the council's CRM and archives it. Here, unlike the builder,
input outside the rules is refused (:class:`DispositionError`), never kept as a problem: the
caller of the API is there to correct it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime
from typing import cast, get_args

from records.model import TEXT_MAX, ContactRecord, Disposition, DispositionKind

KINDS: tuple[str, ...] = get_args(DispositionKind)
TEAM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""A back-office team: a plain name, as the builder keeps it."""


class DispositionError(ValueError):
    """A disposition the rules refuse; the message says which rule."""


def checked(
    kind: str, team: str | None, reason: str | None, reasons: Collection[str]
) -> tuple[DispositionKind, str | None, str | None]:
    """``(kind, team, reason)`` if they follow the rules (``reasons``: the tenant's list)."""
    if kind not in KINDS:
        raise DispositionError(f"kind must be one of {', '.join(KINDS)}")
    if kind == "back_office":
        if team is None or not TEAM.match(team):
            raise DispositionError(
                "back_office needs team: the back-office team's name (lower case, digits, - and _)"
            )
    elif team is not None:
        raise DispositionError(f"team is only for back_office, not {kind}")
    if kind == "avoidable":
        if not reasons:
            raise DispositionError("the tenant has no avoidable contact reasons in the plan")
        if reason not in reasons:
            raise DispositionError(f"reason must be one of the tenant's list: {', '.join(sorted(reasons))}")
    elif reason is not None:
        raise DispositionError(f"reason is only for avoidable, not {kind}")
    return cast(DispositionKind, kind), team, reason


def disposed(
    latest: ContactRecord,
    kind: str,
    *,
    team: str | None,
    reason: str | None,
    by: str,
    at: datetime,
    reasons: Collection[str],
) -> ContactRecord | None:
    """The next version of ``latest`` with the disposition, or None when it holds that
    disposition already. ``by`` (the authenticated identity) is kept as the disposition's
    ``by``; ``at`` is when it was given."""
    if at.tzinfo is None:
        raise ValueError("at needs its time zone")
    found, team, reason = checked(kind, team, reason, reasons)
    held = latest.disposition
    if held is not None and (held.kind, held.team, held.reason) == (found, team, reason):
        return None
    disposition = Disposition(kind=found, team=team, reason=reason, by=by[:TEXT_MAX], at=at)
    return latest.model_copy(
        update={
            "version": latest.version + 1,
            "updated_at": max(at, latest.updated_at),
            "disposition": disposition,
        }
    )
