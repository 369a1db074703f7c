"""Stopping the processes a test starts, with everything they started, bounded in time::

    stop_tree(process)               # a subprocess.Popen: SIGTERM, wait, then SIGKILL the tree
    await stop_tree_async(process)   # the same for an asyncio subprocess
    kill_tree(process.pid)           # SIGKILL it and every descendant, now

Most processes run under ``timeout``, which forwards a SIGTERM to its command but, killed with
SIGKILL, leaves the command running (an orphan that outlives the test). The descendants are
read from ``/proc`` before anything is killed, so a command whose parent dies first is still
found. The session's stray check (``tests/conftest.py``) finds any process of this test run
still alive at the end: every process a test starts inherits :data:`RUN_MARKER` in its
environment, whatever its parent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

RUN_MARKER = "TEST_RUN_OF_CALLROUTER"
"""The environment variable that names this test run in every process it starts."""

_PROC = Path("/proc")


def _parents() -> dict[int, int]:
    """Process id -> parent id, for every process readable in /proc."""
    found = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # "pid (command) state ppid ...": the command may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = int(fields[1])
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first, then theirs)."""
    parents = _parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant (found first, so none escapes to init)."""
    for target in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)


def stop_tree(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> bool:
    """SIGTERM to ``process`` (if still running), then wait up to ``timeout_s``; past that, SIGKILL
    it with its descendants. Returns True if it had to be killed."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    return wait_or_kill(process, timeout_s)


def wait_or_kill(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> bool:
    """Wait up to ``timeout_s`` for ``process`` (already asked to stop); past that, SIGKILL it with
    its descendants. Returns True if it had to be killed."""
    try:
        process.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        process.wait(timeout=10)
        return True


async def stop_tree_async(process: asyncio.subprocess.Process, timeout_s: float = 20.0) -> bool:
    """:func:`stop_tree` for an asyncio subprocess."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    return await wait_or_kill_async(process, timeout_s)


async def wait_or_kill_async(process: asyncio.subprocess.Process, timeout_s: float = 20.0) -> bool:
    """:func:`wait_or_kill` for an asyncio subprocess."""
    try:
        async with asyncio.timeout(timeout_s):
            await process.wait()
        return False
    except TimeoutError:
        kill_tree(process.pid)
        async with asyncio.timeout(10):
            await process.wait()
        return True


def marked_processes(run: str) -> dict[int, str]:
    """Process id -> command line of every live process (not this one) whose environment names
    ``run`` in :data:`RUN_MARKER`. Zombies (ended, not yet reaped) have no environment: not listed."""
    wanted = f"{RUN_MARKER}={run}".encode()
    found = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile, or not ours
            continue
        found[int(entry.name)] = command.strip()[:200]
    return found


def strays_after(run: str, grace_s: float) -> dict[int, str]:
    """The processes of ``run`` still alive after up to ``grace_s`` (they may be ending)."""
    deadline = time.monotonic() + grace_s
    while (found := marked_processes(run)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_ended(pids: list[int], timeout_s: float) -> list[int]:
    """Wait up to ``timeout_s`` for every process of ``pids`` to end; those still running."""
    deadline = time.monotonic() + timeout_s
    while (running := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running
