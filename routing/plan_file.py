"""Load a routing plan from YAML: one file, or a folder of per-council files.

Loading runs both validation stages and returns every problem at once, each with
its path and, where known, its file and line. YAML 1.1 turns ``18:00`` into 1080
and drops a leading ``+``; the loader remembers the text each scalar was written
as, so a wrong-typed value is reported as "quote this value" with the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from routing.core import validate
from routing.core.plan import DESTINATION_TYPES, Plan
from routing.core.problems import PathPart, Problem, errors, format_path

SourceKey = tuple[PathPart, ...]


@dataclass(frozen=True, slots=True)
class Scalar:
    """Where and how a scalar was written in the YAML source."""

    text: str
    source: str
    plain: bool  # written without quotes


@dataclass(frozen=True)
class LoadResult:
    plan: Plan | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return self.plan is not None and not errors(self.problems)


class _Reader:
    """Builds Python data from YAML nodes and records every scalar's source."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.sources: dict[SourceKey, Scalar] = {}
        self.problems: list[Problem] = []

    def read(self, text: str) -> Any:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            return None if node is None else self._build(loader, node, ())
        finally:
            loader.dispose()

    def _where(self, node: yaml.Node) -> str:
        return f"{self.filename}:{node.start_mark.line + 1}"

    def _build(self, loader: yaml.SafeLoader, node: yaml.Node, path: SourceKey) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(loader, node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self._build(loader, child, (*path, i)) for i, child in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        self.sources[path] = Scalar(str(node.value), self._where(node), node.style is None)
        return loader.construct_object(node, deep=True)

    def _mapping(self, loader: yaml.SafeLoader, node: yaml.MappingNode, path: SourceKey) -> Any:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            child = (*path, str(key))
            self.sources[(*child, "[key]")] = Scalar(
                str(key_node.value), self._where(key_node), key_node.style is None
            )
            if key in result:
                self.problems.append(
                    Problem(
                        format_path(child),
                        "duplicate key: the later value would silently win",
                        source=self._where(key_node),
                    )
                )
            result[key] = self._build(loader, value_node, child)
        return result


def _yaml_problem(filename: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    where = f"{filename}:{mark.line + 1}" if mark is not None else filename
    detail = getattr(exc, "problem", None) or str(exc)
    return Problem("(plan)", f"not valid YAML: {detail}", source=where)


def read_yaml(text: str, filename: str) -> tuple[Any, dict[SourceKey, Scalar], list[Problem]]:
    reader = _Reader(filename)
    try:
        data = reader.read(text)
    except yaml.YAMLError as exc:
        return None, {}, [_yaml_problem(filename, exc)]
    return data, reader.sources, reader.problems


# --- turning pydantic errors into engineer-readable problems ----------------------------

_TYPE_WORDS = {int: "a number", float: "a number", bool: "true/false", type(None): "empty"}


def _walk(data: Any, loc: Sequence[PathPart | str]) -> tuple[list[PathPart], bool]:
    """Map a pydantic ``loc`` onto the data: drop union tags; report a ``[key]`` error."""
    path: list[PathPart] = []
    is_key = False
    node = data
    for part in loc:
        if part == "[key]":
            is_key = True
            break
        if isinstance(node, dict):
            if part in node:
                node = node[part]
                path.append(str(part))
            elif node.get("type") == part:
                continue
            else:
                path.append(part)
                node = None
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            path.append(part)
        else:
            path.append(part)
            node = None
    return path, is_key


def _quote_hint(value: Any, scalar: Scalar | None, is_key: bool) -> str:
    what = "key" if is_key else "value"
    kind = _TYPE_WORDS.get(type(value), type(value).__name__)
    if scalar is not None and scalar.plain:
        return f'YAML read {scalar.text} as {kind}: quote this {what}: "{scalar.text}"'
    return f"expected text, got {kind}: quote this {what}"


def _message(err: ErrorDetails, path: list[PathPart], scalar: Scalar | None, is_key: bool) -> str:
    kind = err["type"]
    value = err.get("input")
    if kind == "string_type":
        return _quote_hint(value, scalar, is_key)
    if kind == "missing":
        return f"missing required field '{path[-1]}'"
    if kind == "extra_forbidden":
        return f"unknown field '{path[-1]}'"
    if kind == "union_tag_invalid":
        tag = value.get("type") if isinstance(value, dict) else value
        return f"unknown destination type '{tag}' (known: {', '.join(DESTINATION_TYPES)})"
    if kind == "union_tag_not_found":
        return f"a destination needs a 'type' (one of: {', '.join(DESTINATION_TYPES)})"
    if kind in ("int_type", "float_type", "bool_type") and isinstance(value, str):
        return f"expected {'true/false' if kind == 'bool_type' else 'a number'}, got '{value}'"
    if kind in ("dict_type", "model_type"):
        return f"expected a mapping of fields, got {_TYPE_WORDS.get(type(value), type(value).__name__)}"
    return str(err["msg"]).removeprefix("Value error, ")


def shape_problems(exc: ValidationError, data: Any, sources: dict[SourceKey, Scalar]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path, is_key = _walk(data, err["loc"])
        scalar = sources.get((*path, "[key]") if is_key else tuple(path))
        source = scalar.source if scalar else _nearest_source(path, sources)
        problems.append(Problem(format_path(path), _message(err, path, scalar, is_key), source=source))
    return problems


def _nearest_source(path: list[PathPart], sources: dict[SourceKey, Scalar]) -> str | None:
    for cut in range(len(path), 0, -1):
        scalar = sources.get((*path[:cut], "[key]"))
        if scalar is not None:
            return scalar.source
    return None


# --- files and folders -------------------------------------------------------------------


def _merge(into: dict[str, Any], part: dict[str, Any], filename: str, problems: list[Problem]) -> None:
    """Merge one file of a folder plan: top-level maps are merged, other keys set once."""
    for key, value in part.items():
        if key not in into:
            into[key] = value
        elif isinstance(into[key], dict) and isinstance(value, dict):
            for name in value.keys() & into[key].keys():
                problems.append(
                    Problem(format_path([key, name]), "defined in more than one file", source=filename)
                )
            into[key] = {**into[key], **value}
        elif into[key] != value:
            problems.append(
                Problem(format_path([key]), "set differently in more than one file", source=filename)
            )


def _read_sources(path: Path) -> tuple[Any, dict[SourceKey, Scalar], list[Problem]]:
    if not path.is_dir():
        return read_yaml(path.read_text(encoding="utf-8"), path.name)
    data: dict[str, Any] = {}
    sources: dict[SourceKey, Scalar] = {}
    problems: list[Problem] = []
    for file in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
        part, part_sources, part_problems = read_yaml(file.read_text(encoding="utf-8"), file.name)
        problems += part_problems
        if isinstance(part, dict):
            _merge(data, part, file.name, problems)
            sources.update(part_sources)
        elif part is not None:
            problems.append(Problem("(plan)", "a plan file must be a mapping", source=file.name))
    return data, sources, problems


def parse_plan(data: Any, sources: dict[SourceKey, Scalar], problems: list[Problem]) -> LoadResult:
    if not isinstance(data, dict):
        if errors(problems):
            return LoadResult(None, problems)
        return LoadResult(None, [*problems, Problem("(plan)", "a plan must be a mapping with 'version: 1'")])
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        return LoadResult(None, [*problems, *shape_problems(exc, data, sources)])
    return LoadResult(plan, [*problems, *validate.relations(plan)])


def load_plan(path: str | Path) -> LoadResult:
    """Read and validate a plan file or folder; never raises for bad content."""
    target = Path(path)
    if not target.exists():
        return LoadResult(None, [Problem("(plan)", f"no such file or folder: {target}")])
    try:
        data, sources, problems = _read_sources(target)
    except (OSError, UnicodeDecodeError) as exc:
        return LoadResult(None, [Problem("(plan)", f"cannot read: {exc}")])
    return parse_plan(data, sources, problems)


def load_plan_text(text: str, filename: str = "plan.yaml") -> LoadResult:
    data, sources, problems = read_yaml(text, filename)
    return parse_plan(data, sources, problems)
