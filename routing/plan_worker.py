"""Check a plan in a separate process, with a memory cap and a deadline: the hard backstop.

The reader's limits (:mod:`routing.plan_yaml`) refuse every hostile input we know of
quickly. This is for the ones we do not: the controller hands the plan's bytes to a fresh
``python -m routing.plan_worker``, which caps its own address space (``RLIMIT_AS``) and CPU
time (``RLIMIT_CPU``) before reading anything, validates, and writes back the result. The
controller kills it at the deadline. Whatever the plan does to the worker (runs out of
memory, runs forever, crashes the parser), the controller's memory, its event loop and the
calls in progress are untouched, and the reload is refused with a message saying why.

Running in another process also keeps the parsing (seconds of Python for a large plan)
from holding the controller's interpreter lock while calls are being answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import pickle
import resource
import sys
from dataclasses import dataclass

from routing.core.problems import Problem
from routing.plan_file import DEFAULT_LIMITS, Limits, LoadResult, PlanSource, load_source

EXIT_OUT_OF_MEMORY = 3


@dataclass(frozen=True)
class WorkerLimits:
    """The backstop: far above what the largest plan allowed by :class:`Limits` needs."""

    deadline_s: float = 60.0  # wall clock, start-up included
    memory_bytes: int = 1024**3  # address space the worker may add to what it has after start-up


DEFAULT_WORKER_LIMITS = WorkerLimits()


@dataclass(frozen=True)
class Checked:
    """The worker's answer: the problems and, for a clean plan, the plan in pieces.

    Each tenant is pickled on its own, so the controller can rebuild a large plan a tenant at
    a time between calls rather than in one long step."""

    problems: list[Problem]
    shell: bytes | None = None  # the plan without its tenants, pickled
    tenants: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, result: LoadResult) -> Checked:
        if not result.ok or result.plan is None:
            return cls(result.problems)
        plan = result.plan
        shell = pickle.dumps(plan.model_copy(update={"tenants": {}}), protocol=pickle.HIGHEST_PROTOCOL)
        tenants = tuple(
            (tid, pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL)) for tid, t in plan.tenants.items()
        )
        return cls(result.problems, shell, tenants)


def _refused(message: str) -> Checked:
    return Checked([Problem("(plan)", f"refused: {message}")])


async def check_in_worker(
    source: PlanSource, limits: Limits = DEFAULT_LIMITS, worker: WorkerLimits = DEFAULT_WORKER_LIMITS
) -> Checked:
    """Validate ``source`` in a worker process: its problems and, if clean, the plan in pieces."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "routing.plan_worker",
        str(worker.memory_bytes),
        str(worker.deadline_s),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(worker.deadline_s):
            out, err = await process.communicate(pickle.dumps((source, limits)))
    except TimeoutError:
        return _refused(f"checking the plan took more than {worker.deadline_s:g} s")
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode == EXIT_OUT_OF_MEMORY:
        return _refused(
            f"checking the plan needed more than {worker.memory_bytes / 2**20:,.0f} MiB more memory"
        )
    if process.returncode != 0 or not out:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return _refused(f"the plan checker stopped (exit {process.returncode}): {last[0][:200]}")
    checked = pickle.loads(out)  # noqa: S301 - our own worker's answer, over a private pipe
    assert isinstance(checked, Checked)
    return checked


def _cap(memory_bytes: int, deadline_s: float) -> None:
    os.nice(10)  # on a busy core, the controller answering calls goes first
    with open("/proc/self/statm") as statm:  # the size after start-up (Linux, as RLIMIT_AS is)
        size = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + memory_bytes, size + memory_bytes))
    cpu = int(deadline_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # in case nobody is left to kill us


def main(argv: list[str]) -> int:
    _cap(int(argv[0]), float(argv[1]))
    try:
        source, limits = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from the controller that started us
        assert isinstance(source, PlanSource)
        assert isinstance(limits, Limits)
        payload = pickle.dumps(Checked.of(load_source(source, limits)), protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    # Run as the importable module, not as __main__, so its answer unpickles in the controller.
    raise SystemExit(importlib.import_module("routing.plan_worker").main(sys.argv[1:]))
