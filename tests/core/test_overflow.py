"""Overflow while callers wait: who is withdrawn, and only while the partner has room."""

from __future__ import annotations

from datetime import UTC, datetime

from routing.core.live import QueueSnapshot
from routing.core.overflow import due_for_withdrawal
from routing.core.plan import OverflowPolicy

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
T = NOW.timestamp()
POLICY = OverflowPolicy.model_validate(
    {"enter": {"waiting": 5}, "to": {"type": "external", "centre": "harborough"}, "max_wait_s": 300}
)
WAITING = {"a.1": T - 400, "b.2": T - 320, "c.3": T - 100, "d.4": T - 600}


def partner(available: int, waiting: int = 0, fresh: bool = True) -> QueueSnapshot | None:
    return QueueSnapshot("harborough", waiting, 0, available + 1, available, NOW) if fresh else None


def test_longest_waiters_first_up_to_the_partners_free_advisers() -> None:
    """Three waited over 300 s; the partner has two free: the two longest go."""
    chosen, why = due_for_withdrawal(POLICY, WAITING, T, partner(2), partner_is_target=True)
    assert chosen == ["d.4", "a.1"]
    assert "sending 2" in why


def test_no_withdrawal_to_a_full_or_silent_partner() -> None:
    """A partner with nobody free, or with no fresh state, receives nobody."""
    assert due_for_withdrawal(POLICY, WAITING, T, partner(0), partner_is_target=True)[0] == []
    assert due_for_withdrawal(POLICY, WAITING, T, partner(3, waiting=3), partner_is_target=True)[0] == []
    chosen, why = due_for_withdrawal(POLICY, WAITING, T, None, partner_is_target=True)
    assert chosen == []
    assert "missing or stale" in why


def test_local_target_takes_every_overdue_caller() -> None:
    """Overflow to another local queue needs no partner state."""
    chosen, _ = due_for_withdrawal(POLICY, WAITING, T, None, partner_is_target=False)
    assert chosen == ["d.4", "a.1", "b.2"]


def test_nothing_without_max_wait() -> None:
    """A policy without max_wait_s never withdraws."""
    policy = POLICY.model_copy(update={"max_wait_s": None})
    assert due_for_withdrawal(policy, WAITING, T, partner(5), partner_is_target=True) == (
        [],
        "no max_wait_s in the policy",
    )
