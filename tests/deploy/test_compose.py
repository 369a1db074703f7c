"""docker-compose.yml, checked without a Docker engine: valid against the Compose Specification's
JSON Schema (tests/fixtures/compose-spec/), every path it mounts or builds from in the repo
(secrets excepted: the operator creates them in ./secrets, which git ignores), no
host.docker.internal, and its commands and CALLROUTER_* variables ones callrouter knows."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ivr import static_dialplan
from routing.plan_file import load_plan
from tests.deploy.support import ROOT, parse_command, setting_variables

COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"
CALLROUTER_SERVICES = {"controller": "serve", "web": "web", "deliver": "records", "crm": "simulate-crm"}
# What `docker compose` would be given by the operator (.env or the environment).
ENVIRONMENT = {"CRM_SECRET": "test-only CRM secret"}

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return ""

    return _VARIABLE.sub(one, value)


def resolved(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolved(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolved(value, env) for key, value in node.items()}
    return node


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = resolved(yaml.safe_load(COMPOSE.read_text()), ENVIRONMENT)
    return data


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert problems == []


def test_the_schema_check_catches_a_mistake(compose: dict[str, Any]) -> None:
    """The schema is strict enough to matter: a misspelt key is refused."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["controller"]["enviroment"] = {"X": "1"}
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert any("enviroment" in e.message for e in validator.iter_errors(broken))


def test_a_required_secret_variable_is_said() -> None:
    with pytest.raises(AssertionError, match="CRM_SECRET"):
        resolved(yaml.safe_load(COMPOSE.read_text()), {})


def bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif volume.get("type") == "bind":
            sources.append(volume["source"])
    return sources


def test_every_mounted_or_built_path_exists(compose: dict[str, Any]) -> None:
    missing = []
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not (context / dockerfile).is_file():
                missing.append(f"{name}: build {context / dockerfile}")
        for source in bind_sources(service):
            assert source.startswith("./"), f"{name}: {source} is not inside the repo"
            if not (ROOT / source).exists():
                missing.append(f"{name}: {source}")
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/", "~")):
                assert volume.split(":", 1)[0] in named, f"{name}: volume {volume} is not declared"
    assert missing == []


def test_secrets_are_files_the_operator_creates_outside_git(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    for name, secret in declared.items():
        assert secret["file"].startswith("./secrets/"), name
    # ./secrets, and .env, where docs/deploy.md has the operator put CRM_SECRET.
    for private in ("secrets/toggle.key", ".env"):
        ignored = subprocess.run(["git", "check-ignore", "-q", private], cwd=ROOT, check=False, timeout=30)
        assert ignored.returncode == 0, f"./{private} is not ignored by git"
    for name, service in compose["services"].items():
        for used in service.get("secrets", []):
            assert used in declared, f"{name}: secret {used} is not declared"


def test_no_host_docker_internal(compose: dict[str, Any]) -> None:
    assert "host.docker.internal" not in COMPOSE.read_text()
    for name, service in compose["services"].items():
        assert not service.get("extra_hosts"), name
        mode = service.get("network_mode", "")
        assert mode in ("", "none") or mode.removeprefix("service:") in compose["services"], name
        assert mode != "host", f"{name}: the host's network"


def test_services_reach_each_other_by_name(compose: dict[str, Any]) -> None:
    controller = compose["services"]["controller"]["environment"]
    assert controller["CALLROUTER_AMI_HOST"] == "asterisk"
    for name in ("controller", "web", "deliver"):
        assert compose["services"][name]["environment"]["CALLROUTER_REDIS"] == "redis://redis:6379/0"
    # FastAGI is accepted from the Asterisk container's address alone.
    asterisk_ip = compose["services"]["asterisk"]["networks"]["callrouter"]["ipv4_address"]
    assert controller["CALLROUTER_AGI_ALLOWED_PEERS"] == f"{asterisk_ip}/32"
    extensions = (ROOT / "deploy" / "asterisk" / "extensions.conf").read_text()
    assert "CR_AGI=agi://controller:4573" in extensions


def test_callrouter_services_run_from_the_image_with_known_commands_and_settings(
    compose: dict[str, Any],
) -> None:
    known = setting_variables()
    for name, command in CALLROUTER_SERVICES.items():
        service = compose["services"][name]
        assert service["build"] == "."
        assert service["image"].startswith("callrouter:")
        args = parse_command(service["command"])
        assert args.command == command, name
        assert "pip" not in json.dumps(service), f"{name}: installs at start"
        for variable in service.get("environment", {}):
            if variable.startswith("CALLROUTER_"):
                assert variable in known, f"{name}: {variable} is no setting of callrouter"


def test_redis_keeps_an_append_only_file(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    conf = (ROOT / "redis.conf").read_text().splitlines()
    assert "appendonly yes" in conf
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "ports" not in redis  # the stack's network only


def test_asterisk_is_a_pinned_asterisk_22_with_the_projects_dialplans(compose: dict[str, Any]) -> None:
    asterisk = compose["services"]["asterisk"]
    image, _, tag = asterisk["image"].partition(":")
    assert image == "andrius/asterisk"
    assert tag.startswith("22.")  # a pinned Asterisk 22 release, not latest
    assert "./dialplans:/etc/asterisk/callrouter:ro" in asterisk["volumes"]
    extensions = (ROOT / "deploy" / "asterisk" / "extensions.conf").read_text()
    for included in re.findall(r'#include "callrouter/([^"]+)"', extensions):
        assert (ROOT / "dialplans" / included).is_file(), included


def test_the_stacks_plan_is_the_example_with_the_fake_crm() -> None:
    """deploy/compose/plan.yaml differs from examples/plan.yaml only in its CRM webhooks, which
    point at the fake CRM on the delivery worker's loopback."""
    loaded = load_plan(ROOT / "deploy" / "compose" / "plan.yaml")
    assert loaded.ok, loaded.problems
    stack, example = loaded.plan, load_plan(ROOT / "examples" / "plan.yaml").plan
    assert stack is not None
    assert example is not None
    urls = {
        name: tenant.crm.sinks["crm"].url for name, tenant in stack.tenants.items() if tenant.crm is not None
    }
    assert urls == {
        "harborough": "http://127.0.0.1:8090/harborough",
        "charnwood": "http://127.0.0.1:8090/charnwood",
    }
    assert stack.centre == example.centre
    assert set(stack.tenants) == set(example.tenants)
    for name, tenant in stack.tenants.items():
        other = example.tenants[name]
        if tenant.crm is None:
            assert other.crm is None
            continue
        assert other.crm is not None
        sinks = {k: v for k, v in tenant.crm.sinks.items() if k != "crm"}
        assert sinks == {k: v for k, v in other.crm.sinks.items() if k != "crm"}
        assert tenant.model_copy(update={"crm": None}) == other.model_copy(update={"crm": None})


def test_the_deploy_guide_names_the_images_and_files_the_stack_uses(compose: dict[str, Any]) -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert f"`{compose['services']['asterisk']['image']}`" in guide
    assert compose["services"]["redis"]["image"] in guide
    for secret in compose["secrets"].values():
        assert secret["file"].rsplit("/", 1)[-1] in guide, secret["file"]
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        assert unit.stem in guide, unit.name


def mounts(service: dict[str, Any]) -> dict[str, bool]:
    """Where a service's container sees something other than the image: target -> writable."""
    found: dict[str, bool] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            _, target, *mode = volume.split(":")
            found[target] = "ro" not in mode
        else:
            found[volume["target"]] = not volume.get("read_only", False)
    tmpfs = service.get("tmpfs", [])
    for target in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        found[target] = True
    for secret in service.get("secrets", []):
        name = secret if isinstance(secret, str) else secret["source"]
        target = name if isinstance(secret, str) else secret.get("target", name)
        found[target if target.startswith("/") else f"/run/secrets/{target}"] = False
    return found


# Settings a callrouter process writes below: on a read-only container they need a writable mount.
WRITTEN = {"controller": {"CALLROUTER_RECORDS_JOURNAL"}, "deliver": {"CALLROUTER_RECORDS_ARCHIVE_DIR"}}
# Settings that name a secret: its file must be one of the service's secrets.
SECRET_FILES = re.compile(r"_FILE$|^CALLROUTER_WEB_TLS_(CERT|KEY)$")


def mount_problems(compose: dict[str, Any]) -> list[str]:
    """Every path a service is told about that its container would not have: a CALLROUTER_* path
    outside every mount of a callrouter service (or a secret not among its secrets, or a folder it
    writes mounted read-only), and an Asterisk configuration file or secret it includes that is
    not mounted where Asterisk reads it."""
    problems = []
    for name in ("controller", "web", "deliver"):
        service = compose["services"][name]
        where = mounts(service)
        for variable, value in service.get("environment", {}).items():
            if not variable.startswith("CALLROUTER_") or not str(value).startswith("/"):
                continue
            path = Path(value)
            if SECRET_FILES.search(variable):
                if where.get(value) is not False or not value.startswith("/run/secrets/"):
                    problems.append(f"{name}: {variable}={value} is not one of its secrets")
                continue
            under = [t for t in where if path.is_relative_to(t)]
            if not under:
                problems.append(f"{name}: {variable}={value} is not mounted")
            elif variable in WRITTEN.get(name, set()) and not where[max(under, key=len)]:
                problems.append(f"{name}: {variable}={value} is written but mounted read-only")
    asterisk = compose["services"]["asterisk"]
    where = mounts(asterisk)
    for conf in sorted((ROOT / "deploy" / "asterisk").glob("*.conf")):
        if f"/etc/asterisk/{conf.name}" not in where:
            problems.append(f"asterisk: deploy/asterisk/{conf.name} is not mounted in /etc/asterisk")
        for included in re.findall(r'^#include "([^"]+)"', conf.read_text(), flags=re.MULTILINE):
            path = Path(included if included.startswith("/") else f"/etc/asterisk/{included}")
            if not any(path.is_relative_to(t) for t in where):
                problems.append(f"asterisk: {conf.name} includes {included}, which is not mounted")
    return problems


def test_every_path_a_service_is_given_is_mounted_where_it_looks(compose: dict[str, Any]) -> None:
    assert mount_problems(compose) == []


@pytest.mark.parametrize(
    ("service", "index", "wrong"),
    [
        ("controller", 0, "./deploy/compose/plan.yaml:/etc/callrouter/plan.yml:ro"),  # target misspelt
        ("controller", 1, "controller-journal:/var/lib/callrouter:ro"),  # journal not writable
        ("deliver", 1, "records-archive:/var/lib/callrouter/archives"),  # archive elsewhere
        ("asterisk", 1, "./deploy/asterisk/extensions.conf:/etc/asterisk/extension.conf:ro"),
    ],
)
def test_the_mount_check_catches_a_wrong_mount(
    compose: dict[str, Any], service: str, index: int, wrong: str
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"][service]["volumes"][index] = wrong
    assert mount_problems(broken) != []


def test_the_mount_check_catches_a_secret_a_service_is_not_given(compose: dict[str, Any]) -> None:
    for service, secret in (("controller", "ami_secret"), ("web", "web_key"), ("asterisk", "ami_user")):
        broken = json.loads(json.dumps(compose))
        broken["services"][service]["secrets"].remove(secret)
        assert mount_problems(broken) != [], (service, secret)


def test_web_has_the_caller_hash_key_for_a_search_by_number(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    assert web["environment"]["CALLROUTER_RECORDS_CALLER_HASH_KEY_FILE"] == "/run/secrets/records_hash_key"
    assert "records_hash_key" in web["secrets"]


def test_the_static_dialplan_asterisk_mounts_is_the_stacks_plans(compose: dict[str, Any]) -> None:
    """The route of last resort in the Asterisk container (dialplans/callrouter-static.conf) is
    the one generated from the plan the stack's controller serves (docs/deploy.md says to
    regenerate it when another plan is mounted)."""
    assert "./dialplans:/etc/asterisk/callrouter:ro" in compose["services"]["asterisk"]["volumes"]
    volumes = compose["services"]["controller"]["volumes"]
    served = next(v.split(":")[0] for v in volumes if ":/etc/callrouter/plan.yaml" in v)
    loaded = load_plan(ROOT / served)
    assert loaded.plan is not None
    assert static_dialplan.render(loaded.plan) == (ROOT / "dialplans" / "callrouter-static.conf").read_text()
