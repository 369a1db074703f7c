"""Live inputs to a decision: queue snapshots and supervisor toggles (pure data).

The adapters (AMI consumer, Redis store, CLI) build these; the decision engine only reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """What is known about one Asterisk queue at ``observed_at`` (an aware datetime).

    ``longest_wait_s`` is the wait of the caller who has waited longest right now
    (0 when nobody waits); ``logged_in`` counts members logged in (paused or not);
    ``available`` counts members free to take a call now (logged in, not paused,
    not in a call, not ringing)."""

    queue: str
    waiting: int
    longest_wait_s: float
    logged_in: int
    available: int
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class Toggle:
    """A supervisor switch that is on until ``expires_at`` (an aware datetime)."""

    reason: str
    by: str
    expires_at: datetime
    service: str | None = None  # None: the whole tenant

    def active(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(frozen=True, slots=True)
class Toggles:
    """Every supervisor toggle in force, keyed by tenant id."""

    emergency: dict[str, Toggle] = field(default_factory=dict)
    closure: dict[str, Toggle] = field(default_factory=dict)
    announcement: dict[str, Toggle] = field(default_factory=dict)


NO_TOGGLES = Toggles()


@dataclass(frozen=True, slots=True)
class LiveState:
    """Queue snapshots keyed by Asterisk queue name, partner centres' published
    snapshots keyed by centre id, and the overflow latches.

    ``overflowing`` names the plan queues (``tenant/queue``) whose overflow policy was in its
    "overflowing" state at the last decision (the hysteresis memory). ``max_age_s``
    is how old a snapshot may be before it counts as unknown."""

    queues: dict[str, QueueSnapshot] = field(default_factory=dict)
    partners: dict[str, QueueSnapshot] = field(default_factory=dict)
    overflowing: frozenset[str] = frozenset()
    max_age_s: float = 30.0

    def snapshot(self, queue: str, now: datetime) -> QueueSnapshot | None:
        """The fresh snapshot of an Asterisk queue of this centre, or None if unknown or stale."""
        return self._fresh(self.queues.get(queue), now)

    def partner(self, centre: str, now: datetime) -> QueueSnapshot | None:
        """The fresh snapshot a partner centre published, or None if missing or stale."""
        return self._fresh(self.partners.get(centre), now)

    def _fresh(self, snap: QueueSnapshot | None, now: datetime) -> QueueSnapshot | None:
        if snap is None or now.timestamp() - snap.observed_at.timestamp() > self.max_age_s:
            return None
        return snap


UNKNOWN_LIVE_STATE = LiveState()
