"""Every call the commands (``callrouter/``), the web service (``web/``) and the packages below
them make to a function or class that takes the key schema (a ``keys`` parameter, defaulting to
the ``main`` tag) passes it, so no path, tested on a real Redis or not, silently falls back to
``main`` when ``redis.key_tag`` names another tag. Static: each module's calls are read from its
source and resolved to what its names are bound to at import time (a method of an object built
with the keys is not a call here). And none of them names a key with ``KEYS`` (the ``main`` tag's
schema) or hands it on: the keys come from the settings (``Settings.redis_keys``)."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).parents[2]
PACKAGES = ("callrouter", "web", "ivr", "records", "routing", "emulator", "agi_scripts")


def modules() -> Iterator[tuple[Path, ModuleType]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield path, importlib.import_module(name)


def _resolve(module: ModuleType, node: ast.expr) -> Any:
    """What ``node`` (a name or a dotted name) is bound to in ``module``; None if not found."""
    if isinstance(node, ast.Name):
        return getattr(module, node.id, None)
    if isinstance(node, ast.Attribute):
        owner = _resolve(module, node.value)
        if isinstance(owner, ModuleType) or inspect.isclass(owner):
            return getattr(owner, node.attr, None)
    return None


def _keys_position(target: Any) -> int | None:
    """The index of the positional ``keys`` parameter of ``target`` (-1: keyword only); None when
    it has no ``keys`` parameter with a default."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.name == "keys" and parameter.default is not inspect.Parameter.empty:
            return -1 if parameter.kind is inspect.Parameter.KEYWORD_ONLY else index
    return None


def missing_keys(path: Path, module: ModuleType, root: Path = ROOT) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        target = _resolve(module, node.func)
        if target is None or not callable(target):
            continue
        position = _keys_position(target)
        if position is None:
            continue
        passed = any(k.arg == "keys" for k in node.keywords) or (0 <= position < len(node.args))
        if not passed and not any(isinstance(a, ast.Starred) for a in node.args):
            yield f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node.func)}(...) without keys"


def fixed_schema_uses(path: Path, root: Path = ROOT) -> Iterator[str]:
    """Where ``KEYS`` (the ``main`` tag's schema) names a key or is handed on: only a parameter's
    default may name it, which the callers then override."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        handed = isinstance(node, ast.Call) and [
            a
            for a in [*node.args, *(k.value for k in node.keywords)]
            if isinstance(a, ast.Name) and a.id == "KEYS"
        ]
        named = (
            isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "KEYS"
        )
        if handed or named:
            yield f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:60]}"


def test_no_command_names_a_key_of_the_fixed_tag() -> None:
    found = [problem for path, _ in modules() for problem in fixed_schema_uses(path)]
    assert found == []


def test_every_call_that_takes_the_key_schema_is_given_it() -> None:
    found = [problem for path, module in modules() for problem in missing_keys(path, module)]
    assert found == []


def test_the_check_finds_a_call_without_the_keys(tmp_path: Path) -> None:
    """The check itself: a call that leaves ``keys`` out is reported, one that passes it is not."""
    source = tmp_path / "sample.py"
    source.write_text(
        "from routing import plan_store\n"
        "from routing.live.store import QueueStateStore\n"
        "async def f(redis, keys):\n"
        "    await plan_store.live(redis)\n"
        "    await plan_store.live(redis, keys=keys)\n"
        "    QueueStateStore(redis, 'reader')\n"
        "    QueueStateStore(redis, 'reader', keys)\n"
        "    await redis.get(KEYS.plan_in_force())\n"
        "    tenant_callbacks(redis, KEYS, 'harborough')\n"
    )
    sample = ModuleType("sample")
    exec(compile(source.read_text(), str(source), "exec"), sample.__dict__)
    found = sorted(missing_keys(source, sample, tmp_path))
    assert found == [
        "sample.py:4: plan_store.live(...) without keys",
        "sample.py:6: QueueStateStore(...) without keys",
    ]
