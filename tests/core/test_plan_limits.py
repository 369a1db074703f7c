"""Hostile plans: refused with a clear message, quickly and in little memory.

Each case runs ``callrouter plan check`` in a fresh Python process that measures its own
time and peak memory around the check (after the imports), so one case cannot hide
another's cost and a runaway case is killed by the subprocess timeout, not the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from routing.plan_file import Limits, load_plan, load_plan_text

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "plan.yaml"

MEASURE = """
import contextlib, io, json, sys, time
from callrouter.cli import main

def status(field):  # kB, of this process image (getrusage's ru_maxrss survives exec)
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))

before = status("VmRSS:")
start = time.perf_counter()
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["plan", "check", "--json", sys.argv[1]])
seconds = time.perf_counter() - start
growth = status("VmHWM:") - before
print(json.dumps({"code": code, "seconds": seconds, "growth": growth, "result": json.loads(out.getvalue())}))
"""

MB = 1_000_000


def measured_check(target: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def assert_refused(target: Path, words: str) -> dict[str, Any]:
    """Exit 1 with one problem saying ``words``, in at most 2 s and 100 MB more memory."""
    found = measured_check(target)
    assert found["code"] == 1
    problems = found["result"]["problems"]
    assert len(problems) == 1, problems
    assert words in problems[0]["message"], problems[0]
    assert found["seconds"] <= 2.0, found
    assert found["growth"] <= 100 * MB, found
    return dict(problems[0])


BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)),
        "version: 1",
    ]
)


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    """Nine levels of nine aliases (387 million values if expanded) are refused at once."""
    target = tmp_path / "plan.yaml"
    target.write_text(BILLION_LAUGHS + "\n")
    problem = assert_refused(target, "aliases (*name) repeat more than 100,000 values")
    assert problem["source"] == "plan.yaml:6"


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    target = tmp_path / "plan.yaml"
    with target.open("w") as out:
        out.write("version: 1\n")
        out.write("# padding\n" * 3_000_000)  # 30 MB
    problem = assert_refused(target, "the plan is 30.0 MB, over the limit of 8.0 MB")
    assert problem["source"] is None


@pytest.mark.parametrize("nested", ["[" * 100_000 + "]" * 100_000, "{a: " * 100_000 + "}" * 100_000])
def test_deeply_nested_flow_collections_are_refused(tmp_path: Path, nested: str) -> None:
    """Refused at 64 levels (libyaml's scanner may stop a flow list first, at its own limit)."""
    target = tmp_path / "plan.yaml"
    target.write_text(f"version: 1\ncentre: {nested}\n")
    problem = assert_refused(target, "nest")
    assert problem["source"] == "plan.yaml:2"


def test_a_very_long_value_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "plan.yaml"
    target.write_text('version: 1\ncentre: "' + "x" * 7_000_000 + '"\n')
    problem = assert_refused(target, "a value longer than 4,096 characters")
    assert problem["source"] == "plan.yaml:2"


def test_a_folder_of_many_files_is_refused(tmp_path: Path) -> None:
    for i in range(5000):
        (tmp_path / f"part-{i:05d}.yaml").write_text(f"tenants: {{t{i}: {{}}}}\n")
    assert_refused(tmp_path, "the folder has 5000 plan files, over the limit of 1000")


def test_aliases_are_counted_across_the_files_of_a_folder(tmp_path: Path) -> None:
    """Each file repeats about 70,000 values: under the limit alone, over it together."""
    many_a, many_b = ", ".join(["*a"] * 100), ", ".join(["*b"] * 100)
    for i in range(2):
        (tmp_path / f"part-{i}.yaml").write_text(
            f'a: &a ["x", "x", "x", "x", "x", "x"]\nb: &b [{many_a}]\nc: [{many_b}]\n'
        )
    problem = assert_refused(tmp_path, "aliases (*name) repeat more than 100,000 values")
    assert problem["source"] == "part-1.yaml:3"


# --- the limits themselves, in process -------------------------------------------------------


def test_a_reasonable_alias_is_fine() -> None:
    """Sharing a value with an anchor is ordinary YAML, and problems inside it find their line."""
    text = EXAMPLE.read_text().replace(
        '    hours:\n      weekdays: ["08:30-17:30"]',
        '    hours: &office\n      weekdays: ["08:30-17:30"]',
        1,
    )
    assert load_plan_text(text).ok
    charnwood = '    bank_holidays: "england-and-wales"\n    entry: {type: menu'
    shared = text.replace(charnwood, "    hours: *office\n" + charnwood, 1)
    assert load_plan_text(shared).ok
    broken = shared.replace('weekdays: ["08:30-17:30"]', "weekdays: [18:00]", 1)
    found = {(p.path, p.source) for p in load_plan_text(broken).problems}
    assert ("tenants.harborough.hours.weekdays[0]", "plan.yaml:34") in found
    assert ("tenants.charnwood.hours.weekdays[0]", "plan.yaml:34") in found


def test_a_plan_over_the_value_limit_is_refused() -> None:
    text = "version: 1\nlist: [" + ", ".join(["1"] * 2000) + "]\n"
    found = load_plan_text(text, limits=Limits(max_nodes=1000)).problems
    assert [(p.message, p.source) for p in found] == [
        ("refused: more than 1,000 values (aliases counted as what they repeat)", "plan.yaml:2")
    ]


def test_reading_too_long_is_refused() -> None:
    text = "version: 1\nlist: [" + ", ".join(['"x"'] * 20_000) + "]\n"
    found = load_plan_text(text, limits=Limits(max_seconds=0)).problems
    assert len(found) == 1
    assert found[0].message == "refused: reading the plan took more than 0 s: it is too large"


def test_the_example_plan_loads_under_limits_far_below_the_defaults() -> None:
    assert load_plan(EXAMPLE, Limits(max_bytes=10_000, max_nodes=2000, max_depth=8, max_scalar=80)).ok


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\n---\nversion: 1\n", "a plan file holds one YAML document: found a second"),
        ("a: &x {b: 1}\nc:\n  <<: *x\n", "merge keys (<<) are not supported: write the fields out"),
        ("a: !!python/object:os.system {}\n", "the tag tag:yaml.org,2002:python/object:os.system is not"),
        ("a: *nowhere\n", "unknown alias *nowhere (an alias must follow its &anchor)"),
        ("? [a, b]\n: 1\n", "a key must be a plain value, not a mapping or a list"),
    ],
)
def test_yaml_the_reader_refuses(text: str, message: str) -> None:
    found = load_plan_text(text).problems
    assert len(found) == 1
    assert found[0].message.startswith("refused: " + message), found


def test_a_recursive_alias_is_refused() -> None:
    """An anchor is known once its value is complete: an alias inside it is unknown."""
    found = load_plan_text("version: &a [*a]\n").problems
    assert [(p.message, p.source) for p in found] == [
        ("refused: unknown alias *a (an alias must follow its &anchor)", "plan.yaml:1")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nclosures:\n  - date: 2026-02-30\n", "cannot read '2026-02-30' as timestamp"),
        ("version: 1\nx: 2026-01-01 25:00:00\n", "cannot read '2026-01-01 25:00:00' as timestamp"),
        ("version: !!int\n", "cannot read '' as int"),
        ("version: !!int 0x\n", "cannot read '0x' as int"),
        ("version: !!float 1e\n", "cannot read '1e' as float"),
        ("version: !!bool x\n", "cannot read 'x' as bool"),
    ],
)
def test_a_value_yaml_cannot_read_is_a_problem_with_its_line(text: str, message: str) -> None:
    found = load_plan_text(text).problems
    assert [(p.message, p.source) for p in found] == [
        (f"not valid YAML: {message}: quote it if it is text", f"plan.yaml:{text.count(chr(10))}")
    ]
