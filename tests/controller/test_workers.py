"""``serve --workers``: the supervisor's decisions (pure), each worker's options, and the
supervisor itself over real (tiny) processes."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from callrouter import settings as settings_module
from callrouter.cli import main
from callrouter.service import ServeOptions, check_workers, for_worker, server_config
from callrouter.workers import (
    RestartPolicy,
    Supervisor,
    clean_exit,
    gives_up,
    recent,
    restart_delay,
    worker_command,
)

POLICY = RestartPolicy(first_delay_s=0.2, max_delay_s=1.0, max_per_minute=3, window_s=60.0)


def test_restart_delay_doubles_up_to_the_most() -> None:
    assert [restart_delay(n, POLICY) for n in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_restarts_are_counted_within_the_window_only() -> None:
    assert recent([0.0, 30.0, 59.0, 100.0], now=110.0, window_s=60.0) == [59.0, 100.0]
    assert not gives_up(2, POLICY)
    assert gives_up(3, POLICY)


def test_a_worker_stopped_by_the_sigterm_itself_is_a_clean_exit() -> None:
    assert clean_exit(0)
    assert clean_exit(-signal.SIGTERM)
    assert not clean_exit(1)
    assert not clean_exit(-signal.SIGKILL)


def test_a_worker_is_the_same_command_line_with_its_index() -> None:
    argv = ["serve", "--plan", "plan.yaml", "--workers", "2"]
    assert worker_command(argv, 1) == [sys.executable, "-m", "callrouter.cli", *argv, "--worker-index", "1"]


def test_each_worker_has_its_own_ops_port_and_journal_and_shares_the_fastagi_port() -> None:
    options = ServeOptions(plan=Path("plan.yaml"), agi_port=4573, ops_port=9100, records_journal=Path("/j"))
    second = for_worker(options, 1)
    assert (second.worker, second.agi_port, second.ops_port) == (1, 4573, 9101)
    assert second.records_journal == Path("/j/worker-1")
    assert server_config(second).reuse_port
    assert not server_config(options).reuse_port  # one process: as before, no SO_REUSEPORT
    assert for_worker(ServeOptions(plan=None), 0).ops_port is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [({"agi": {"port": 0}}, "fixed --agi-port"), ({"ops": {"port": 0}}, "fixed --ops-port")],
)
def test_workers_need_fixed_ports(overrides: dict[str, dict[str, int]], words: str) -> None:
    settings = settings_module.Settings.model_validate({"workers": 2, **overrides})
    with pytest.raises(settings_module.SettingsError, match=words):
        check_workers(settings)
    check_workers(settings.model_copy(update={"workers": 1}))  # one process may pick any port


async def test_the_supervisor_restarts_a_dying_worker_then_gives_up() -> None:
    """A worker that keeps dying is restarted with backoff, then the supervisor gives up."""
    policy = RestartPolicy(first_delay_s=0.01, max_delay_s=0.05, max_per_minute=3, window_s=60.0)
    starts: list[int] = []

    def command(index: int) -> list[str]:
        starts.append(index)
        return [sys.executable, "-c", "raise SystemExit(3)"]

    supervisor = Supervisor(command, 1, policy)
    assert await supervisor.run() == 1
    assert supervisor.gave_up
    assert starts == [0, 0, 0, 0]  # the first start and three restarts
    assert len(supervisor.restarts[0]) == 3


def _count(folder: Path) -> int:
    return len(list(folder.iterdir()))


async def test_the_supervisor_drains_every_worker_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM to each worker; a worker that exits 0 on it is a clean stop."""
    code = (
        "import os, signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
        f"open(os.path.join({str(tmp_path)!r}, str(os.getpid())), 'w').close(); time.sleep(30)"
    )
    supervisor = Supervisor(lambda index: [sys.executable, "-c", code], 2, POLICY)
    running = asyncio.create_task(supervisor.run())
    async with asyncio.timeout(10):
        while _count(tmp_path) < 2:  # both have set their SIGTERM handler
            await asyncio.sleep(0.02)
        supervisor.stop()
        assert await running == 0
    assert [p.returncode for p in supervisor.processes.values()] == [0, 0]


def test_serve_with_workers_on_any_port_is_refused_before_starting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = Path(__file__).parents[2] / "examples" / "plan.yaml"
    argv = ["serve", "--plan", str(plan), "--workers", "2", "--agi-port", "0", "--no-redis"]
    assert main(argv) == 2
    assert "--workers needs a fixed --agi-port" in capsys.readouterr().err


def test_workers_do_not_inherit_systemds_notify_socket_or_watchdog() -> None:
    """Under systemd (NotifyAccess=main) only the supervisor may say READY and ping the watchdog."""
    from callrouter.workers import worker_environ

    env = worker_environ(
        {"NOTIFY_SOCKET": "@/x", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1", "CALLROUTER_REDIS": "r"}
    )
    assert env == {"CALLROUTER_REDIS": "r"}
