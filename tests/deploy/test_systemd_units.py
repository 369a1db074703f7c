"""The systemd units of a bare-metal install (deploy/systemd/): notify with a watchdog, restart,
a dedicated user, hardening; their commands and variables are ones callrouter knows; and
``systemd-analyze verify`` finds nothing to say about them where it is installed."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callrouter.settings import AgiSettings
from routing.plan_file import load_plan
from tests.deploy.support import ROOT, parse_command, setting_variables

UNITS = ROOT / "deploy" / "systemd"
NAMES = ("callrouter-serve.service", "callrouter-web.service", "callrouter-deliver.service")
EXEC = "/opt/callrouter/venv/bin/callrouter"

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """A unit file as section -> [(key, value)] in order (keys may repeat, as systemd allows)."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"line {number}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: {line!r} is not KEY=VALUE"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}: {found}"
    return found[0]


def seconds(value: str) -> float:
    assert value.endswith("s"), f"{value!r}: expected N s"
    assert value[:-1].isdigit(), f"{value!r}: expected N s"
    return float(value[:-1])


@pytest.fixture(params=NAMES)
def unit(request: pytest.FixtureRequest) -> tuple[str, Unit]:
    name: str = request.param
    return name, parse_unit((UNITS / name).read_text())


def test_notify_watchdog_restart_and_user(unit: tuple[str, Unit]) -> None:
    _, u = unit
    assert one(u, "Service", "Type") == "notify"
    assert one(u, "Service", "NotifyAccess") == "main"
    assert 1 <= seconds(one(u, "Service", "WatchdogSec")) <= 30
    assert one(u, "Service", "Restart") in ("always", "on-failure", "on-watchdog")
    assert seconds(one(u, "Service", "RestartSec")) > 0
    assert one(u, "Unit", "StartLimitIntervalSec") == "0"  # never give up: fail-static meanwhile
    assert one(u, "Service", "User") == "callrouter"
    assert one(u, "Service", "Group") == "callrouter"
    assert values(u, "Install", "WantedBy") == ["multi-user.target"]


def test_hardening(unit: tuple[str, Unit]) -> None:
    _, u = unit
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictSUIDSGID": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert one(u, "Service", key) == value, key
    assert "@system-service" in values(u, "Service", "SystemCallFilter")


def test_commands_and_variables_are_callrouters(unit: tuple[str, Unit]) -> None:
    name, u = unit
    argv = shlex.split(one(u, "Service", "ExecStart").replace("%H", "host"))
    assert argv[0] == EXEC
    args = parse_command(argv[1:])
    assert args.command == {"callrouter-serve.service": "serve", "callrouter-web.service": "web",
                            "callrouter-deliver.service": "records"}[name]  # fmt: skip
    known = setting_variables()
    credentials = {v.split(":", 1)[0] for v in values(u, "Service", "LoadCredential")}
    for assignment in values(u, "Service", "Environment"):
        variable, _, value = assignment.partition("=")
        if variable.startswith("CALLROUTER_"):
            assert variable in known, f"{name}: {variable} is no setting of callrouter"
        if value.startswith("%d/"):  # a credential: loaded by this unit
            assert value[3:] in credentials, f"{name}: {value} is not a LoadCredential"
    for source in values(u, "Service", "LoadCredential"):
        assert source.split(":", 1)[1].startswith("/etc/callrouter/")


def test_serve_keeps_its_secrets_as_credentials_and_its_journal_writable() -> None:
    u = parse_unit((UNITS / "callrouter-serve.service").read_text())
    credentials = dict(v.split(":", 1) for v in values(u, "Service", "LoadCredential"))
    assert set(credentials) == {"toggle.key", "ami.secret", "records-hash.key", "redis.password"}
    assert credentials["redis.password"] == "/etc/callrouter/redis-controller.password"
    env = dict(v.split("=", 1) for v in values(u, "Service", "Environment"))
    journal = Path(env["CALLROUTER_RECORDS_JOURNAL"])
    writable = [Path(p) for p in one(u, "Service", "ReadWritePaths").split()]
    assert any(journal.is_relative_to(p) for p in writable)
    assert one(u, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"  # SIGHUP reloads the plan
    # The drain (agi.drain_timeout_s) fits before systemd's SIGKILL.
    drain = AgiSettings().drain_timeout_s
    assert seconds(one(u, "Service", "TimeoutStopSec")) >= drain + 5
    assert one(u, "Service", "KillMode") == "mixed"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    """systemd's own checker, on copies whose ExecStart names this checkout's callrouter (verify
    insists the program exists)."""
    here = str(Path(sys.executable).parent / "callrouter")
    for name in NAMES:
        (tmp_path / name).write_text((UNITS / name).read_text().replace(EXEC, here))
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n in NAMES)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_systemd_rates_the_exposure_low(name: str, tmp_path: Path) -> None:
    """``systemd-analyze security``: 0 is locked down, 10 is exposed; below 2 is its "OK"."""
    copy = tmp_path / name
    copy.write_text((UNITS / name).read_text().replace(EXEC, str(Path(sys.executable).parent / "callrouter")))
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze cannot rate unit files offline (systemd < 250)")
    found = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) < 2.0


@pytest.mark.parametrize("plan", ["examples/plan.yaml", "deploy/compose/plan.yaml"])
def test_the_delivery_worker_may_write_where_the_plans_file_sinks_write(plan: str) -> None:
    """ProtectSystem=strict leaves the delivery worker its ReadWritePaths= alone: a file sink
    elsewhere would fail every delivery (docs/deploy.md says so)."""
    u = parse_unit((UNITS / "callrouter-deliver.service").read_text())
    writable = [Path(p) for v in values(u, "Service", "ReadWritePaths") for p in v.split()]
    loaded = load_plan(ROOT / plan).plan
    assert loaded is not None
    directories = [
        Path(sink.directory)
        for tenant in loaded.tenants.values()
        if tenant.crm is not None
        for sink in tenant.crm.sinks.values()
        if getattr(sink, "type", None) == "file"
    ]
    assert directories, f"{plan} has no file sink to check"
    for directory in directories:
        assert any(directory.is_relative_to(p) for p in writable), f"{plan}: {directory} is read-only"


def test_web_has_the_caller_hash_key_for_a_search_by_number() -> None:
    """The records API's search by caller hashes the number with serve's key (docs/web.md);
    without it that search answers 503."""
    u = parse_unit((UNITS / "callrouter-web.service").read_text())
    credentials = dict(v.split(":", 1) for v in values(u, "Service", "LoadCredential"))
    assert credentials["records-hash.key"] == "/etc/callrouter/records-hash.key"
    env = dict(v.split("=", 1) for v in values(u, "Service", "Environment"))
    assert env["CALLROUTER_RECORDS_CALLER_HASH_KEY_FILE"] == "%d/records-hash.key"
