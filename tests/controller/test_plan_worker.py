"""The reload's backstop: a plan checked in a capped worker process, and rebuilt between calls."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from callrouter.service import rebuild
from routing.plan_file import PlanSource, load_plan, read_source
from routing.plan_worker import WorkerLimits, check_in_worker
from tests.controller.conftest import EXAMPLE


def many_tenants(count: int) -> PlanSource:
    data = yaml.safe_load(EXAMPLE.read_text())
    for i in range(count):
        tenant = copy.deepcopy(data["tenants"]["harborough"])
        tenant["numbers"] = [f"020 7{i:07d}"]
        data["tenants"][f"council-{i:04d}"] = tenant
    body = yaml.safe_dump(data, sort_keys=False).encode()
    return PlanSource("plan.yaml", (("plan.yaml", body),))


async def test_a_clean_plan_comes_back_whole() -> None:
    """The plan rebuilt from the worker's pieces is the plan the loader reads, compiled."""
    checked = await check_in_worker(read_source(EXAMPLE))
    assert checked.problems == []
    assert [tid for tid, _ in checked.tenants] == ["harborough", "charnwood"]
    result, compiled = await rebuild(checked)
    assert result.ok
    assert result.plan == load_plan(EXAMPLE).plan
    assert compiled is not None
    assert compiled.tenant_for("01632 960001") == "harborough"


async def test_a_plan_with_errors_comes_back_with_its_problems(tmp_path: Path) -> None:
    target = tmp_path / "plan.yaml"
    target.write_text(EXAMPLE.read_text().replace("queue: waste}", "queue: bins}", 1))
    checked = await check_in_worker(read_source(target))
    assert checked.shell is None
    assert [(p.source, p.message) for p in checked.problems] == [
        ("plan.yaml:70", "unknown queue 'bins' (known: charnwood_assist, emergency, revenues, waste)")
    ]
    result, compiled = await rebuild(checked)
    assert (result.ok, compiled) == (False, None)


async def test_a_worker_over_its_memory_cap_is_a_refusal() -> None:
    """300 tenants need far more than 20 MiB to check: the worker stops, the reload is refused."""
    checked = await check_in_worker(many_tenants(300), worker=WorkerLimits(memory_bytes=20 * 2**20))
    assert [p.message for p in checked.problems] == [
        "refused: checking the plan needed more than 20 MiB more memory"
    ]


async def test_a_worker_past_its_deadline_is_killed() -> None:
    """Start-up alone takes longer than 0.1 s: the worker is killed and the reload refused."""
    checked = await check_in_worker(read_source(EXAMPLE), worker=WorkerLimits(deadline_s=0.1))
    assert [p.message for p in checked.problems] == ["refused: checking the plan took more than 0.1 s"]
