"""Load a routing plan from YAML: one file, or a folder of per-council files.

Loading runs both validation stages and returns every problem at once, each with
its path and, where known, its file and line. YAML 1.1 turns ``18:00`` into 1080
and drops a leading ``+``; the loader remembers the text each scalar was written
as, so a wrong-typed value is reported as "quote this value" with the original.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from routing.core import validate
from routing.core.plan import DESTINATION_TYPES, Plan
from routing.core.problems import PathPart, Problem, errors, format_path
from routing.plan_partial import relations_of_the_rest
from routing.plan_yaml import (
    DEFAULT_LIMITS,
    Budget,
    LimitReached,
    Limits,
    Reader,
    Scalar,
    SourceKey,
    SourceMap,
)

__all__ = [
    "DEFAULT_LIMITS",
    "LimitReached",
    "Limits",
    "LoadResult",
    "PlanSource",
    "load_plan",
    "load_plan_text",
]


@dataclass(frozen=True)
class LoadResult:
    plan: Plan | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return self.plan is not None and not errors(self.problems)


def _yaml_problem(filename: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    where = f"{filename}:{mark.line + 1}" if mark is not None else filename
    detail = getattr(exc, "problem", None) or str(exc)
    return Problem("(plan)", f"not valid YAML: {detail}", source=where)


def _read_text(text: str, filename: str, budget: Budget) -> tuple[Any, SourceMap, list[Problem]]:
    reader = Reader(filename, budget)
    try:
        data = reader.read(text)
    except yaml.YAMLError as exc:
        return None, SourceMap(), [_yaml_problem(filename, exc)]
    duplicates = [
        Problem(format_path(path), "duplicate key: the later value would silently win", source=where)
        for path, where in reader.duplicates
    ]
    return data, reader.sources, duplicates


def read_yaml(
    text: str, filename: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[Any, SourceMap, list[Problem]]:
    """The data of one YAML document, every scalar's source, and the problems found reading it.

    Raises :class:`LimitReached` when the text asks too much of the reader."""
    if len(text) > limits.max_bytes:
        raise LimitReached(_too_big(len(text), limits), filename)
    return _read_text(text, filename, Budget(limits))


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


def shape_problems(exc: ValidationError, data: Any, sources: SourceMap) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path, is_key = _walk(data, err["loc"])
        scalar = sources.get((*path, "[key]") if is_key else tuple(path))
        source = scalar.source if scalar else sources.nearest(tuple(path))
        problems.append(Problem(format_path(path), _message(err, path, scalar, is_key), source=source))
    return problems


def _located(problems: list[Problem], sources: SourceMap) -> list[Problem]:
    """Problems found on the validated plan, given the line of the value (or key) at fault."""
    return [
        replace(p, source=sources.nearest(p.parts)) if p.source is None and p.parts is not None else p
        for p in problems
    ]


# --- files and folders -------------------------------------------------------------------


def plan_files(path: Path) -> list[Path]:
    """The files of a plan: the file itself, or every ``*.yaml`` / ``*.yml`` of a folder, in order."""
    if not path.is_dir():
        return [path]
    return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])


@dataclass(frozen=True)
class PlanSource:
    """A plan's files as read once: what is hashed is exactly what is parsed."""

    path: str
    files: tuple[tuple[str, bytes], ...]  # (file name, contents) in order
    folder: bool = False

    def digest(self) -> str:
        """sha256 over the files' names and contents: equal digests, equal plans."""
        sha = hashlib.sha256()
        for name, body in self.files:
            sha.update(f"{name}\0{len(body)}\0".encode())
            sha.update(body)
        return sha.hexdigest()


def _too_big(size: int, limits: Limits) -> str:
    return (
        f"the plan is {size / 1e6:.1f} MB, over the limit of {limits.max_bytes / 1e6:.1f} MB: "
        "is this the right file?"
    )


def read_source(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> PlanSource:
    """Read a plan file or folder within ``limits.max_bytes`` and ``max_files``.

    Raises :class:`LimitReached` (too big, too many files) or :class:`OSError`."""
    target = Path(path)
    files = plan_files(target)
    if len(files) > limits.max_files:
        raise LimitReached(f"the folder has {len(files)} plan files, over the limit of {limits.max_files}")
    if sum(f.stat().st_size for f in files) > limits.max_bytes:
        raise LimitReached(_too_big(sum(f.stat().st_size for f in files), limits))
    read: list[tuple[str, bytes]] = []
    left = limits.max_bytes
    for file in files:
        with file.open("rb") as stream:
            body = stream.read(left + 1)  # a file growing while read is still bounded
        left -= len(body)
        if left < 0:
            raise LimitReached(_too_big(limits.max_bytes + 1, limits))
        read.append((file.name, body))
    return PlanSource(str(target), tuple(read), target.is_dir())


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


def _read_files(source: PlanSource, limits: Limits) -> tuple[Any, SourceMap, list[Problem]]:
    budget = Budget(limits)
    if not source.folder:
        name, body = source.files[0]
        return _read_text(body.decode("utf-8"), name, budget)
    data: dict[str, Any] = {}
    sources = SourceMap()
    problems: list[Problem] = []
    for name, body in source.files:
        part, part_sources, part_problems = _read_text(body.decode("utf-8"), name, budget)
        problems += part_problems
        if isinstance(part, dict):
            _merge(data, part, name, problems)
            sources.update(part_sources)
        elif part is not None:
            problems.append(Problem("(plan)", "a plan file must be a mapping", source=name))
    return data, sources, problems


def parse_plan(
    data: Any,
    sources: SourceMap | dict[SourceKey, Scalar],
    problems: list[Problem],
    more_checks: Callable[[Plan], list[Problem]] | None = None,
) -> LoadResult:
    """``more_checks``: further checks of a valid plan (e.g. its prompts against a folder of
    recordings), whose problems are located in the files as the relation problems are."""
    if not isinstance(sources, SourceMap):
        sources = SourceMap(dict(sources))
    if not isinstance(data, dict):
        if errors(problems):
            return LoadResult(None, problems)
        return LoadResult(None, [*problems, Problem("(plan)", "a plan must be a mapping with 'version: 1'")])
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        shape = shape_problems(exc, data, sources)
        rest = relations_of_the_rest(data, exc, _walk) or []  # every problem at once
        return LoadResult(None, [*problems, *shape, *_located(rest, sources)])
    found = validate.relations(plan) + (more_checks(plan) if more_checks is not None else [])
    return LoadResult(plan, [*problems, *_located(found, sources)])


def load_source(
    source: PlanSource,
    limits: Limits = DEFAULT_LIMITS,
    more_checks: Callable[[Plan], list[Problem]] | None = None,
) -> LoadResult:
    """Validate a plan already read; never raises for bad content."""
    try:
        data, sources, problems = _read_files(source, limits)
    except LimitReached as exc:
        return unreadable(exc)
    except UnicodeDecodeError as exc:
        return LoadResult(None, [Problem("(plan)", f"not UTF-8 text: {exc.reason} at byte {exc.start}")])
    return parse_plan(data, sources, problems, more_checks)


def load_plan(
    path: str | Path,
    limits: Limits = DEFAULT_LIMITS,
    more_checks: Callable[[Plan], list[Problem]] | None = None,
) -> LoadResult:
    """Read and validate a plan file or folder; never raises for bad content."""
    target = Path(path)
    if not target.exists():
        return LoadResult(None, [Problem("(plan)", f"no such file or folder: {target}")])
    try:
        source = read_source(target, limits)
    except (LimitReached, OSError) as exc:
        return unreadable(exc)
    return load_source(source, limits, more_checks)


def unreadable(exc: LimitReached | OSError) -> LoadResult:
    """The result for a plan that could not be read (too big, too many files, no access)."""
    if isinstance(exc, LimitReached):
        return LoadResult(None, [Problem("(plan)", f"refused: {exc}", source=exc.source)])
    return LoadResult(None, [Problem("(plan)", f"cannot read: {exc}")])


def load_plan_text(text: str, filename: str = "plan.yaml", limits: Limits = DEFAULT_LIMITS) -> LoadResult:
    return load_source(PlanSource(filename, ((filename, text.encode("utf-8")),)), limits)
