"""Peak overflow: a queue's policy judged against its live snapshot, with hysteresis (pure).

Overflow starts when any ``enter`` threshold is reached, and once started it
stops only when no ``leave`` threshold is reached any more, so a queue hovering
around one figure does not flap. "Callers per available adviser" counts the new
caller: ``(waiting + 1) / available``, infinite when nobody is available.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from routing.core.live import QueueSnapshot
from routing.core.plan import OverflowPolicy, Thresholds


@dataclass(frozen=True, slots=True)
class OverflowVerdict:
    """``overflow``: send this caller on; ``latched``: the hysteresis state to remember."""

    overflow: bool
    latched: bool
    reason: str


def figures(snap: QueueSnapshot) -> str:
    return (
        f"waiting={snap.waiting} longest={round(snap.longest_wait_s)}s "
        f"logged_in={snap.logged_in} available={snap.available}"
    )


def callers_per_available(snap: QueueSnapshot) -> float:
    return (snap.waiting + 1) / snap.available if snap.available else math.inf


def reached(limits: Thresholds, snap: QueueSnapshot) -> list[str]:
    """The thresholds of ``limits`` that ``snap`` reaches, described."""
    hits = []
    if limits.waiting is not None and snap.waiting >= limits.waiting:
        hits.append(f"waiting {snap.waiting} >= {limits.waiting}")
    if limits.longest_wait_s is not None and snap.longest_wait_s >= limits.longest_wait_s:
        hits.append(f"longest wait {round(snap.longest_wait_s)}s >= {limits.longest_wait_s}s")
    ratio = callers_per_available(snap)
    if limits.callers_per_available is not None and ratio >= limits.callers_per_available:
        shown = "no adviser available" if math.isinf(ratio) else f"{ratio:.2f}"
        hits.append(f"callers per available adviser {shown} >= {limits.callers_per_available}")
    if limits.no_adviser and snap.logged_in == 0:
        hits.append("no adviser logged in")
    return hits


def evaluate(policy: OverflowPolicy, snap: QueueSnapshot | None, was_overflowing: bool) -> OverflowVerdict:
    """Judge ``policy`` on ``snap`` (None: unknown or stale) given the previous latch."""
    if snap is None:
        overflow = policy.when_unknown == "overflow"
        return OverflowVerdict(
            overflow, was_overflowing, f"live state unknown: plan default '{policy.when_unknown}'"
        )
    if was_overflowing:
        hits = reached(policy.leave or policy.enter, snap)
        if hits:
            return OverflowVerdict(True, True, f"still overflowing ({'; '.join(hits)}) [{figures(snap)}]")
        return OverflowVerdict(False, False, f"overflow ends: below every leave threshold [{figures(snap)}]")
    hits = reached(policy.enter, snap)
    if hits:
        return OverflowVerdict(True, True, f"overflow starts ({'; '.join(hits)}) [{figures(snap)}]")
    return OverflowVerdict(False, False, f"no overflow: below every enter threshold [{figures(snap)}]")


def partner_has_capacity(policy: OverflowPolicy, partner: QueueSnapshot | None) -> tuple[bool, str]:
    """A partner receives overflow only when its published state is fresh and has capacity."""
    if partner is None:
        return False, "partner state missing or stale: no overflow there"
    if partner.available < policy.partner_min_available:
        return False, f"partner full ({figures(partner)}): no overflow there"
    return True, f"partner has capacity ({figures(partner)})"


def due_for_withdrawal(
    policy: OverflowPolicy,
    waiting: Mapping[str, float],
    now_ts: float,
    partner: QueueSnapshot | None,
    partner_is_target: bool,
) -> tuple[list[str], str]:
    """Which waiting callers (uniqueid -> join time, Unix s) to withdraw for overflow now.

    Callers who have waited ``max_wait_s`` or longer, longest first; when the target is a
    partner centre, only while its fresh published state shows capacity, and no more callers
    than it has advisers free, so one sweep cannot swamp the partner."""
    if policy.max_wait_s is None:
        return [], "no max_wait_s in the policy"
    overdue = sorted((joined, uid) for uid, joined in waiting.items() if now_ts - joined >= policy.max_wait_s)
    if not overdue:
        return [], f"nobody has waited {policy.max_wait_s}s"
    if not partner_is_target:
        return [uid for _, uid in overdue], f"{len(overdue)} waited over {policy.max_wait_s}s"
    ok, why = partner_has_capacity(policy, partner)
    if not ok or partner is None:
        return [], why
    room = max(partner.available - partner.waiting, 0)
    chosen = [uid for _, uid in overdue[:room]]
    return chosen, f"{len(overdue)} waited over {policy.max_wait_s}s; {why}; sending {len(chosen)}"
