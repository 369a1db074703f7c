"""The packages are layers: each imports only the ones below it, so a newcomer can read them
bottom-up and no change can tie two subsystems into a cycle.

    callrouter            the application: CLI, serve wiring, settings, logging
    web                   the supervisors' and engineers' HTTP service and web page
    emulator, agi_scripts the Asterisk emulator; the classic fail-static fallback (peers)
    ivr                   the call side: FastAGI server, routes, menu driver, dialplan contract
    records               contact records: model, builder, stream, delivery, archive, KPIs
    routing               the decision and live state: plan, decide, overflow, AMI to Redis
    routing.core          pure: plan models, validation, schedules, menus, decide (no I/O)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each package may import from the project (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "routing": set(),
    "records": {"routing"},
    "ivr": {"records", "routing"},
    "agi_scripts": {"ivr", "records", "routing"},
    "emulator": {"ivr", "records", "routing"},
    "web": {"records", "routing"},
    "callrouter": {"web", "emulator", "agi_scripts", "ivr", "records", "routing"},
}
PURE_CORE_MAY_IMPORT = {"routing.core"}


def _project_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return [(line, name) for line, name in found if name.split(".")[0] in ALLOWED]


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _modules(package)
        for line, name in _project_imports(path)
        if name.split(".")[0] not in ALLOWED[package] | {package}
    ]
    assert wrong == []


def test_the_decision_core_imports_nothing_but_itself() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _modules("routing/core")
        for line, name in _project_imports(path)
        if not any(name == p or name.startswith(p + ".") for p in PURE_CORE_MAY_IMPORT)
    ]
    assert wrong == []


def test_every_package_is_in_the_layer_table() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert packages == set(ALLOWED)
