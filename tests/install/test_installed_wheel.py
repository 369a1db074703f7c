"""callrouter installed from its wheel, away from any source checkout: the wheel carries the
dialplans (``[tool.setuptools.data-files]``), ``callrouter simulate`` finds them where they were
installed and runs calls through them; without them it says where it looked.

The wheel is built from a copy of the sources (nothing is written into the checkout) and
installed into a fresh virtualenv with no dependencies of its own: they come from the
environment running the tests (its site folders, by a ``.pth`` file)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.dialplan import DIALPLAN_FILES, INSTALLED, DialplansNotFound, find_dialplans

ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT_S = 120  # each build, install or command, on a shared, loaded machine


@dataclass(frozen=True)
class Installed:
    venv: Path
    away: Path  # a working folder outside any source tree, holding the plan

    @property
    def callrouter(self) -> Path:
        return self.venv / "bin" / "callrouter"

    @property
    def dialplans(self) -> Path:
        return self.venv / INSTALLED


def _run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(a) for a in argv],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
    )


def _checked(argv: list[str | Path], cwd: Path) -> str:
    done = _run(argv, cwd)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _source_copy(into: Path) -> Path:
    """What a wheel is built from: pyproject.toml's packages and data files, and its metadata."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [name.rstrip("*") for name in config["packages"]["find"]["include"]]
    folders = {pattern.split("/")[0] for patterns in config["data-files"].values() for pattern in patterns}
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, into / name)
    for folder in sorted({*packages, *folders}):
        shutil.copytree(ROOT / folder, into / folder, ignore=ignore)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    source = _source_copy(tmp_path_factory.mktemp("source"))
    dist, venv, away = tmp / "dist", tmp / "venv", tmp / "away"
    away.mkdir()
    shutil.copy2(ROOT / "examples" / "plan.yaml", away / "plan.yaml")
    python = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _checked([*python, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source], tmp)
    (wheel,) = dist.glob("callrouter-*.whl")
    _checked([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], tmp)
    (venv_site,) = (venv / "lib").glob("python3*/site-packages")
    here = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    (venv_site / "callrouter-test-deps.pth").write_text("\n".join(here) + "\n")
    _checked([*python, "--python", venv / "bin" / "python", "install", "--no-deps", "-q", wheel], tmp)
    return Installed(venv, away)


@pytest.mark.slow
@pytest.mark.timeout(STEP_TIMEOUT_S * 5)
def test_simulate_from_the_installed_wheel_runs_calls_through_the_installed_dialplans(
    installed: Installed,
) -> None:
    for name in DIALPLAN_FILES:
        assert (installed.dialplans / name).read_bytes() == (ROOT / "dialplans" / name).read_bytes()
    where = _checked(
        [
            installed.venv / "bin" / "python",
            "-c",
            "import emulator.dialplan as d; print(d.__file__); print(d.find_dialplans())",
        ],
        installed.away,
    ).splitlines()
    assert Path(where[0]).is_relative_to(installed.venv), "the installed package, not the checkout's"
    assert Path(where[1]) == installed.dialplans.resolve()

    out = _checked(
        [installed.callrouter, "simulate", "--plan", "plan.yaml", "--calls", "3", "--rate", "0"],
        installed.away,
    )
    calls = [line for line in out.splitlines() if line.startswith("#")]
    assert [line[:4] for line in calls] == ["#001", "#002", "#003"], out
    assert all("->" in line for line in calls), out  # each went somewhere through the dialplan


@pytest.mark.slow
@pytest.mark.timeout(STEP_TIMEOUT_S * 5)
def test_simulate_without_the_installed_dialplans_names_both_places(installed: Installed) -> None:
    hidden = installed.dialplans.with_name("dialplans.hidden")
    installed.dialplans.rename(hidden)
    try:
        done = _run(
            [installed.callrouter, "simulate", "--plan", "plan.yaml", "--calls", "1", "--rate", "0"],
            installed.away,
        )
    finally:
        hidden.rename(installed.dialplans)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    site_packages = next((installed.venv / "lib").glob("python3*/site-packages"))
    assert str(site_packages.resolve() / "dialplans") in done.stderr  # beside the packages
    assert str(installed.dialplans.resolve()) in done.stderr  # where the wheel puts them
    assert "Traceback" not in done.stderr


def test_find_dialplans_takes_the_first_place_holding_every_file(tmp_path: Path) -> None:
    partial, whole, later = tmp_path / "partial", tmp_path / "whole", tmp_path / "later"
    for place in (partial, whole, later):
        place.mkdir()
    (partial / DIALPLAN_FILES[0]).write_text("[x]\n")
    for place in (whole, later):
        for name in DIALPLAN_FILES:
            (place / name).write_text("[x]\n")
    assert find_dialplans([partial, whole, later]) == whole


def test_find_dialplans_names_every_place_it_looked_in(tmp_path: Path) -> None:
    beside, installed = tmp_path / "beside", tmp_path / "share" / "callrouter" / "dialplans"
    with pytest.raises(DialplansNotFound) as raised:
        find_dialplans([beside, installed])
    message = str(raised.value)
    assert f"looked in {beside}, then {installed}" in message
    assert all(name in message for name in DIALPLAN_FILES)


def test_a_source_checkout_finds_its_own_dialplans() -> None:
    assert find_dialplans() == ROOT / "dialplans"
