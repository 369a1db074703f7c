"""Session-wide fixtures (a real redis-server on loopback) and the hypothesis profiles.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` (the default) keeps every property test modest and
deterministic, so the suite's run time and result do not vary from run to run; ``fuzz`` is for
a longer, randomised hunt of some minutes, past the per-test timeout:
``HYPOTHESIS_PROFILE=fuzz scripts/test tests/fuzz --timeout 0``. Both set a deadline per
example: a parser that slows down on some input fails the test with that input.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.processes import RUN_MARKER, kill_tree, strays_after
from tests.support.redis_server import RedisServer, running_redis
from tests.support.toggle_keys import key_file

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=timedelta(seconds=2),  # generous: the machine is shared; catches blow-ups only
    derandomize=True,
    database=None,
    print_blob=True,
)
settings.register_profile("fuzz", max_examples=5000, deadline=timedelta(seconds=2), print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


STRAY_GRACE_S = 15.0
"""How long the session's last processes may take to end after its last test (a loaded host)."""


@pytest.fixture(scope="session", autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Every process the tests start carries this run's mark in its environment; at the end of
    the session none may be left running (each test stops what it started, with its children).
    Any left are killed, and the session fails naming them. Set up before, and torn down after,
    every other session fixture."""
    run = secrets.token_urlsafe(9)  # not hex: no long digit run that looks like a card number
    os.environ[RUN_MARKER] = run
    yield
    strays = strays_after(run, STRAY_GRACE_S)
    for pid in strays:
        kill_tree(pid)
    assert not strays, f"processes left running after the tests: {strays}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole test session (127.0.0.1, free port)."""
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def toggle_key_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``CALLROUTER_TOGGLE_KEY_FILE`` naming a key file of the tests' key (mode 600), for
    commands run in this process; unset again after the module."""
    path = key_file(tmp_path_factory.mktemp("toggle-key"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALLROUTER_TOGGLE_KEY_FILE", str(path))
        yield path
