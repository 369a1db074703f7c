"""Benchmark: what the language choice costs the controller's CPU, and ``plan check --prompts``.

Run ``.venv/bin/python -m benchmarks.language_bench``. Side by side in the same run, rounds
interleaved so a busy machine slows both sides alike:

1. per call, ``decide()`` alone against ``decide()`` plus what ``route`` now adds for the language
   (``offered`` and, when no choice is offered, ``unchosen``), on the example plan (both
   councils English only) and on the same plan with Harborough in Welsh and English;
2. the route's facts into a record builder, without and with the language fact
   (:func:`benchmarks.route_bench.facts_cost`);
3. ``plan check`` of the example plan made bilingual, without and with ``--prompts`` over a
   sound folder as an Asterisk install has it (``--files`` recordings per language, two languages).

The caller's own time at the choice (the recordings and the wait) is not CPU: it is the plan's
``timeout_s`` and the length of the recordings.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from benchmarks.route_bench import facts_cost
from callrouter.cli import main as cli
from routing.core.decide import Call, CompiledPlan, decide
from routing.core.language import offered, unchosen
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE
from routing.core.prompts import tenant_prompts
from routing.plan_file import load_plan

PLAN = Path(__file__).parents[1] / "examples" / "plan.yaml"
LONDON = ZoneInfo("Europe/London")


def bilingual(folder: Path) -> Path:
    data = yaml.safe_load(PLAN.read_text())
    data["tenants"]["harborough"]["languages"] = ["cy", "en"]
    target = folder / "plan.yaml"
    target.write_text(yaml.safe_dump(data, default_style='"', sort_keys=False))
    return target


def compiled(path: Path) -> CompiledPlan:
    loaded = load_plan(path).plan
    assert loaded is not None
    return CompiledPlan.compile(loaded)


def per_call(plan: CompiledPlan, calls: int, rounds: int) -> tuple[list[float], list[float]]:
    """us per call: decide alone, and decide with the language step, interleaved rounds."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=LONDON)
    work = [
        (
            Call(rng.choice(["01632 960001", "01632960100"])),
            start + timedelta(seconds=rng.randrange(86400 * 365)),
        )
        for _ in range(calls)
    ]

    def alone() -> None:
        for call, now in work:
            decide(call, plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, now)

    def with_language() -> None:
        for call, now in work:
            decision = decide(call, plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, now)
            if decision.tenant is not None:  # as route does it
                known = plan.choices[decision.tenant]
                if offered(known, decision.destination, bool(decision.prelude)) is None:
                    unchosen(plan.plan.tenants[decision.tenant], known)

    return timed_pairs(alone, with_language, calls, rounds)


def timed_pairs(
    a: Callable[[], object], b: Callable[[], object], per: int, rounds: int
) -> tuple[list[float], list[float]]:
    first: list[float] = []
    second: list[float] = []
    for _ in range(rounds):
        for fn, out in ((a, first), (b, second)):
            started = time.perf_counter()
            fn()
            out.append((time.perf_counter() - started) / per * 1e6)
    return first, second


def sound_folder(root: Path, plan: Path, files: int) -> None:
    """Every prompt of the plan in each language, plus ``files`` other recordings per language
    (Asterisk's own sounds), in the formats an install has."""
    loaded = load_plan(plan).plan
    assert loaded is not None
    for language in ("cy", "en"):
        for n in range(files):
            target = (
                root
                / language
                / ("digits" if n % 5 == 0 else "")
                / f"sound-{n}.{('gsm', 'ulaw', 'wav')[n % 3]}"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        for tenant in loaded.tenants.values():
            for _, prompt in tenant_prompts(tenant):
                target = root / language / f"{prompt}.wav"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()


def check_times(plan: Path, sounds: Path, rounds: int) -> tuple[list[float], list[float]]:
    """ms per ``plan check``, without and with ``--prompts``, interleaved."""

    def run(*extra: str) -> Callable[[], object]:
        def go() -> object:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return cli(["plan", "check", str(plan), *extra])

        return go

    plain, prompts = timed_pairs(run(), run("--prompts", str(sounds)), 1, rounds)
    return [t / 1000 for t in plain], [t / 1000 for t in prompts]


def show(label: str, unit: str, base: list[float], new: list[float]) -> None:
    b, n = statistics.median(base), statistics.median(new)
    print(
        f"{label}: {b:.2f} {unit} -> {n:.2f} {unit} (+{n - b:.2f} {unit}; "
        f"rounds {min(base):.2f}-{max(base):.2f} / {min(new):.2f}-{max(new):.2f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--files", type=int, default=1_500, help="other recordings per language")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="language-bench-") as folder:
        plan = bilingual(Path(folder))
        for name, path in (("example plan (English only)", PLAN), ("Harborough in cy and en", plan)):
            base, new = per_call(compiled(path), args.calls, args.rounds)
            show(f"decide per call, {name}, without -> with the language step", "us", base, new)
        base_facts, with_facts = [], []
        for _ in range(args.rounds):
            base_facts.append(facts_cost(args.calls, language=False)[1])
            with_facts.append(facts_cost(args.calls, language=True)[1])
        show(
            "route's facts into the record builder, without -> with the language fact",
            "us",
            base_facts,
            with_facts,
        )
        sounds = Path(folder) / "sounds"
        sound_folder(sounds, plan, args.files)
        plain, prompts = check_times(plan, sounds, args.rounds)
        show(
            f"plan check, without -> with --prompts ({2 * args.files} other recordings)", "ms", plain, prompts
        )


if __name__ == "__main__":
    main()
