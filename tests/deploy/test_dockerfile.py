"""The Dockerfile, checked without a Docker engine: multi-stage, dependencies exactly as locked
(hashes), an unprivileged user, a health check, nothing but the sources sent to the builder and
no secret in the image; requirements.lock pins every runtime dependency and no development tool;
the health check script answers as the container's HEALTHCHECK needs."""

from __future__ import annotations

import asyncio
import fnmatch
import re
import subprocess
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from callrouter.ops import OpsListener, Readiness
from tests.deploy.support import ROOT
from tests.support.redis_server import free_port

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    found, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for step in steps:
        if step[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(step)
    return out


def dockerignored(path: str, rules: list[str]) -> bool:
    """Whether ``path`` (relative, with /) is left out of the build context: the last matching
    rule wins, ``!`` re-includes, and a rule matching a folder covers what is inside it."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.rstrip("/").removeprefix("**/")
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p.split("/")[-1], pattern)
               for p in prefixes):  # fmt: skip
            ignored = not negate
    return ignored


def ignore_rules() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_multi_stage_with_locked_dependencies() -> None:
    build, run = stages(instructions(DOCKERFILE.read_text()))
    assert build[0][1].endswith(" AS build")
    runs = " && ".join(args for word, args in build if word == "RUN")
    assert "pip install --require-hashes --no-deps -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs  # the project: nothing resolved beyond the lock
    assert re.findall(r"pip install(?! --require-hashes)(?! --no-deps)", runs) == []
    assert ("COPY", "--from=build /opt/callrouter /opt/callrouter") in run
    assert not any(word == "RUN" and "pip install" in args for word, args in run)


def test_runs_unprivileged_with_a_health_check() -> None:
    run = stages(instructions(DOCKERFILE.read_text()))[-1]
    users = [args for word, args in run if word == "USER"]
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0")
    assert uid in ("callrouter", "${CALLROUTER_UID}")
    health = [args for word, args in run if word == "HEALTHCHECK"]
    assert len(health) == 1
    assert "/usr/local/bin/callrouter-healthcheck" in health[0]
    assert ("ENTRYPOINT", '["callrouter"]') in run


def test_no_secret_in_the_image() -> None:
    steps = instructions(DOCKERFILE.read_text())
    for word, args in steps:
        if word in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|_KEY\b|_KEY=", args, re.IGNORECASE), args
    rules = ignore_rules()
    for private in ("secrets/toggle.key", "secrets/web.key", ".venv/bin/python", ".git/config", "var/x"):
        assert dockerignored(private, rules), f"{private} would be sent to the builder"


def test_every_copied_source_exists_and_reaches_the_builder() -> None:
    rules = ignore_rules()
    copies = [args.split() for word, args in instructions(DOCKERFILE.read_text()) if word == "COPY"]
    sources = [s for args in copies if not args[0].startswith("--from") for s in args[:-1]]
    assert "requirements.lock" in sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        assert not dockerignored(source.rstrip("/"), rules), f"{source} is left out by .dockerignore"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in packages["find"]["include"]:
        assert f"{package.rstrip('*')}/" in sources, f"package {package} is not copied"
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    for patterns in data_files.values():
        for pattern in patterns:
            folder = pattern.split("/")[0]
            assert f"{folder}/" in sources, f"{pattern} (a data file of the wheel) is not copied"


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as name -> (version, hashes)."""
    text = LOCK.read_text().replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        spec, *options = line.split()
        name, _, version = spec.partition("==")
        assert version, f"{spec} is not pinned"
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:")]
        pins[canonicalize_name(name)] = (version, hashes)
    return pins


def test_the_lock_pins_every_runtime_dependency_with_hashes_and_no_dev_tool() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash"
    runtime = [Requirement(r) for r in (*project["dependencies"], *project["optional-dependencies"]["fast"])]
    for requirement in runtime:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not locked"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (requirement, pins[name])
    runtime_names = {canonicalize_name(r.name) for r in runtime}
    for dev in project["optional-dependencies"]["dev"]:
        name = canonicalize_name(Requirement(dev).name)
        if name not in runtime_names:
            assert name not in pins, f"development tool {name} is in the runtime lock"


# The Pythons the lock must serve: Debian 12's own python3 (bare metal, docs/deploy.md) and a
# later 3.11 release (the image's python:3.11-slim-bookworm follows 3.11's latest).
TARGET_PYTHONS = ("3.11.2", "3.11.14")


def test_the_lock_holds_every_dependency_of_what_it_locks_on_debian_12s_python() -> None:
    """Each locked package's own requirements are locked too, for every target Python: a
    dependency needed on 3.11.2 only (redis's async-timeout, before 3.11.3) is missed by a lock
    compiled on a later 3.11. Read from the installed packages' metadata."""
    pins = locked()
    for name in sorted(pins):
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed in this environment: nothing to read its requirements from
        for line in requires:
            requirement = Requirement(line)
            for python in TARGET_PYTHONS:
                environment = {"python_full_version": python, "python_version": "3.11", "extra": ""}
                if requirement.marker is None or requirement.marker.evaluate(environment):
                    needed = canonicalize_name(requirement.name)
                    assert needed in pins, f"{name} needs {requirement} on Python {python}: not locked"


def run_healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=20, check=False
    )


async def test_the_health_check_script_against_a_real_ops_listener() -> None:
    ops = OpsListener("127.0.0.1", 0, Readiness({"not_draining": False}))  # alive, not ready
    await ops.start()
    try:
        healthy = await asyncio.to_thread(run_healthcheck, f"http://127.0.0.1:{ops.port}/health")
        assert healthy.returncode == 0, healthy.stderr
        not_ready = await asyncio.to_thread(run_healthcheck, f"http://127.0.0.1:{ops.port}/ready")
        assert not_ready.returncode == 1  # a 503 is not healthy
    finally:
        await ops.stop()
    closed = await asyncio.to_thread(run_healthcheck, f"http://127.0.0.1:{free_port()}/health")
    assert closed.returncode == 1
    assert "healthcheck:" in closed.stderr
    elsewhere = await asyncio.to_thread(run_healthcheck, "http://192.0.2.1:9100/health")
    assert elsewhere.returncode == 2


def test_dockerignore_matcher_itself() -> None:
    rules = ["*", "!callrouter/", "**/__pycache__"]
    assert dockerignored("secrets/x", rules)
    assert not dockerignored("callrouter/cli.py", rules)
    assert dockerignored("callrouter/__pycache__/cli.pyc", rules)
