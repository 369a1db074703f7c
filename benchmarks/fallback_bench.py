"""Start-up cost of the fail-static classic AGI script (one Python process per call).

Run ``python -m benchmarks.fallback_bench [--runs N]``. Each run starts the script as Asterisk
does, feeds it the environment block and the replies of a real session on its pipes (the
emulator plays Asterisk), and times spawn to exit. Side by side: a bare ``python -c pass``,
and a script that only imports pyst2 and reads the environment block.

Then the plan load alone (``load_plan`` + compile, best of 5, in this process) for plans of 2,
12 and 42 tenants (the example's Harborough copied under other numbers): with the start-up, it
is what the dialplan's bound before the script's first command (``FALLBACK_START_S``) must cover.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.classic import run_classic
from routing.core.decide import CompiledPlan
from routing.plan_file import load_plan

PLAN = Path(__file__).parents[1] / "examples" / "plan.yaml"
PYST2_ONLY = "import sys; from asterisk.agi import AGI; AGI(stderr=open('/dev/null', 'w'))"


def open_plan(folder: Path) -> Path:
    """The example plan open around the clock, so every run takes the menu path."""
    data = yaml.safe_load(PLAN.read_text())
    data["tenants"]["harborough"].update(
        hours={"weekdays": ["00:00-24:00"], "weekend": ["00:00-24:00"]},
        bank_holidays="none",
        closures=[],
        special_openings=[],
    )
    target = folder / "plan.yaml"
    target.write_text(yaml.safe_dump(data, default_style='"'))
    return target


def plan_of(folder: Path, extra: int) -> Path:
    """The example plan with ``extra`` more tenants, each a copy of Harborough."""
    data = yaml.safe_load(PLAN.read_text())
    for i in range(extra):
        tenant = copy.deepcopy(data["tenants"]["harborough"])
        tenant.update(numbers=[f"01632 960{600 + i:03d}"], name=f"Council {i}")
        data["tenants"][f"council{i}"] = tenant
    target = folder / f"plan-{extra}.yaml"
    target.write_text(yaml.safe_dump(data, default_style='"'))
    return target


def time_load(path: Path, runs: int = 5) -> float:
    """Best of ``runs``: load, validate and compile the plan file, in ms."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = load_plan(path)
        if result.plan is None or not result.ok:
            raise SystemExit(f"{path}: the plan does not load: {result}")
        CompiledPlan.compile(result.plan)
        best = min(best, time.perf_counter() - started)
    return best * 1000


async def time_runs(argv: list[str], args: list[str], runs: int, steps: bool) -> list[float]:
    samples = []
    for _ in range(runs):
        script = CallerScript(dial="01632960001", steps=[PressAfterPrompt("1")] if steps else [])
        started = time.perf_counter()
        await run_classic(argv, script, args)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"| {name} | {len(samples)} | {statistics.median(ordered):.0f} | {p90:.0f} |"


async def main_async(runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        plan = open_plan(Path(folder))
        bare = await time_runs([sys.executable, "-c", "pass"], [], runs, steps=False)
        pyst2 = await time_runs([sys.executable, "-c", PYST2_ONLY], [], runs, steps=False)
        script = [sys.executable, "-m", "agi_scripts.route_fallback"]
        full = await time_runs(script, ["01632960001", str(plan)], runs, steps=True)
    print("| process | runs | median ms | p90 ms |")
    print("|---|---|---|---|")
    print(row("python -c pass", bare))
    print(row("pyst2 import + environment block", pyst2))
    print(row("route_fallback: load plan, decide, run the menu, set CR_ROUTE", full))
    print()
    print("| tenants | plan file KB | load + compile ms (best of 5) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for extra in (0, 10, 40):
            path = plan_of(Path(folder), extra)
            print(f"| {extra + 2} | {path.stat().st_size // 1024} | {time_load(path):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main_async(parser.parse_args().runs))


if __name__ == "__main__":
    main()
