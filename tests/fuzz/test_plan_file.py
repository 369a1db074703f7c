"""Property tests of the plan loader over arbitrary text and arbitrary structures.

Documented (``routing.plan_file``): loading "never raises for bad content" and "returns every
problem at once, each with its path and, where known, its file and line". So whatever the
text, the result is a :class:`LoadResult`; without a plan it holds at least one error; every
problem names a path and a message, and a line that exists in the text.

The crashes the first runs found (complex keys, recursive aliases, deep nesting, scalars PyYAML
cannot construct, aliases expanding without limit) have a test each below, naming its input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from routing.core.problems import errors
from routing.plan_file import LimitReached, LoadResult, load_plan_text, parse_plan, read_yaml
from tests.fuzz.strategies import LINE_TEXT, fewer_examples

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "plan.yaml").read_text(encoding="utf-8")
EXAMPLE_LINES = EXAMPLE.splitlines()
EXAMPLE_DATA = yaml.safe_load(EXAMPLE)

# YAML-ish pieces: indentation, flow collections, tags, scalars YAML 1.1 reads as non-text.
# Anchors/aliases and "?" complex keys have their own tests below.
PIECES = ["\n", "  ", "- ", ": ", "key: ", "{", "}", "[", "]", ", ", "#", "'", '"', "|", ">", "!!str "]
PIECES += ["!!int ", "!!binary ", "!!python/name:os.system ", "18:00", "+44", "0o17", "1e3", "~", "null"]
PIECES += ["yes", "No", "2026-11-24", "version: 1\n", "tenants:\n", "type: ", "queue", "menu", "\t", "\x00"]
PIECES += ["\ufeff", "%", "\r", "\u2028"]
YAML_PIECE = st.sampled_from(PIECES)
YAML_TEXT = st.lists(st.one_of(YAML_PIECE, LINE_TEXT), max_size=20).map("".join)
HAS_ALIAS = re.compile(r"[&*]")  # aliases repeat what they name: bounded by the alias limits, not the text


def _mutated_example(edits: list[tuple[int, str]]) -> str:
    lines = list(EXAMPLE_LINES)
    for index, replacement in edits:
        where = index % len(lines)
        indent = lines[where][: len(lines[where]) - len(lines[where].lstrip())]
        lines[where] = indent + replacement
    return "\n".join(lines) + "\n"


MUTATED_EXAMPLE = st.lists(st.tuples(st.integers(min_value=0), YAML_TEXT), min_size=1, max_size=3).map(
    _mutated_example
)


def _check(result: LoadResult, text: str | None) -> None:
    assert isinstance(result, LoadResult)
    if result.plan is None:
        assert errors(result.problems)
    assert result.ok == (result.plan is not None and not errors(result.problems))
    for problem in result.problems:
        assert problem.path
        assert problem.message
        if text is not None and problem.source not in (None, "plan.yaml"):
            name, _, line = problem.source.rpartition(":")
            assert name == "plan.yaml"
            assert 1 <= int(line) <= len(text.splitlines()) + 1  # YAML breaks lines at \r too


@given(st.one_of(YAML_TEXT, MUTATED_EXAMPLE))
@fewer_examples(0.5)
def test_any_text_loads_to_a_plan_or_problems(text: str) -> None:
    _check(load_plan_text(text), text)


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    LINE_TEXT,
    st.dates(),
    st.binary(max_size=4),
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(LINE_TEXT, st.integers()), inner, max_size=4)
    ),
    max_leaves=20,
)


def _replace(data: Any, path: list[int], value: Any) -> Any:
    """``data`` with the node reached by ``path`` (child indexes, modulo) replaced."""
    if not path or not isinstance(data, dict | list) or not data:
        return value
    if isinstance(data, list):
        index = path[0] % len(data)
        return [_replace(v, path[1:], value) if i == index else v for i, v in enumerate(data)]
    key = list(data)[path[0] % len(data)]
    return {k: _replace(v, path[1:], value) if k == key else v for k, v in data.items()}


MUTATED_DATA = st.builds(
    _replace, st.just(EXAMPLE_DATA), st.lists(st.integers(min_value=0), max_size=6), JSON_ANY
)


@given(st.one_of(JSON_ANY, MUTATED_DATA))
@fewer_examples(0.5)
def test_any_structure_validates_to_a_plan_or_problems(data: Any) -> None:
    _check(parse_plan(data, {}, []), None)


# --- inputs that once crashed the loader


def test_a_complex_key_is_a_problem_not_a_crash() -> None:
    _check(load_plan_text("? [a, b]\n: c\n"), "? [a, b]\n: c\n")


def test_a_recursive_alias_is_a_problem_not_a_crash() -> None:
    _check(load_plan_text("version: &a [*a]\n"), "version: &a [*a]\n")


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    text = "version: " + "[" * 2000 + "]" * 2000 + "\n"
    _check(load_plan_text(text), text)


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nclosures:\n  - date: 2026-02-30\n",  # ValueError: day is out of range for month
        "version: 1\nx: 2026-01-01 25:00:00\n",  # ValueError: hour must be in 0..23
        "version: " + "9" * 5000 + "\n",  # ValueError: over int()'s 4300-digit limit
        "version: !!int\n",  # IndexError
        "version: !!int 0x\n",  # ValueError
        "version: !!float 1e\n",  # ValueError
        "version: !!bool x\n",  # KeyError: 'x'
        "version: !!timestamp 2026-01-01 99:99\n",  # AttributeError
    ],
)
def test_a_scalar_yaml_cannot_construct_is_a_problem_not_a_crash(text: str) -> None:
    _check(load_plan_text(text), text)


def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_what_is_read_is_bounded_by_the_text() -> None:
    # Each level multiplies by ten; five levels (334 bytes) take about ten seconds to read.
    text = _alias_bomb(3)
    _data, sources, problems = read_yaml(text, "plan.yaml")
    assert len(sources) + len(problems) <= len(text)


@given(YAML_TEXT.filter(lambda t: not HAS_ALIAS.search(t)))
@example("version: 1\nversion: 2\n")
@fewer_examples(0.5)
def test_what_is_read_without_aliases_is_bounded_by_the_text(text: str) -> None:
    try:
        _data, sources, problems = read_yaml(text, "plan.yaml")
    except LimitReached:  # documented: the text asks what a plan may not (a tag, a limit)
        return
    assert len(sources) + len(problems) <= 2 * len(text) + 1
