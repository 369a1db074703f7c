"""The pretend contact centre used by the demo builds a peak in one queue only."""

from __future__ import annotations

import random

from emulator.ami import FakeAmi
from emulator.centre import ADVISERS, queues_of, staff, step
from ivr.controller import PlanHolder
from tests.controller.conftest import EXAMPLE


async def test_peak_builds_in_one_queue() -> None:
    """Callers join faster than advisers answer: the waiting count climbs; others stay empty."""
    plan = PlanHolder.load(EXAMPLE).current.plan
    queues = queues_of(plan)
    assert queues == ["hdc-revenues", "hdc-waste", "cbc-assist", "hdc-emergency", "cbc-general"]
    async with FakeAmi("callrouter", "demo") as fake:
        staff(fake, queues)
        answered: list[str] = []
        rng = random.Random(1)
        for _ in range(30):
            step(fake, "hdc-revenues", rng, answered)
        assert len(fake.model.queue("hdc-revenues").waiting) >= 15
        assert all(not fake.model.queue(q).waiting for q in queues[1:])
        assert len(fake.model.queue("cbc-general").members) == ADVISERS
