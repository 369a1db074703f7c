"""docs/deploy.md, checked as an engineer follows it: every ``callrouter`` command it gives is one
the CLI accepts, every CALLROUTER_* variable and setting it names exists, every file the systemd
units read is one the guide has the engineer create, and the guide's settings files with each
unit's environment load as settings for that unit's command (the three units side by side on one
host: no shared ops port, no AMI host for a command without the AMI secret)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from callrouter import settings
from tests.deploy.support import ROOT, parse_command, setting_variables
from tests.deploy.test_systemd_units import NAMES, UNITS, parse_unit, values
from tests.support.redis_server import free_port, start_redis

GUIDE = ROOT / "docs" / "deploy.md"
# Variables the guide may name that are not settings: the settings file's own, and the one
# docker-compose.yml reads to mount another plan.
OTHER_VARIABLES = {settings.CONFIG_ENV, "CALLROUTER_PLAN_FILE"}
FILE_SUFFIXES = {"conf", "md", "yaml", "toml", "env", "acl", "key", "crt", "service", "password", "secret"}
# A ``callrouter`` command word: bare, or the installed one under /opt/callrouter/venv*/bin/.
_COMMAND = re.compile(r"(?<![\w/.-])(?:/opt/callrouter/venv[\w.-]*/bin/)?callrouter (?=[a-z])")
_SHELL_END = re.compile(r"\s(?:#|>|\||&&|;)|\s*$")


@dataclass(frozen=True)
class Block:
    before: str  # the paragraph just above the fence
    info: str  # the fence's info string (sh, toml, ...)
    body: str


def blocks(text: str) -> list[Block]:
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            start = i
            while start > 0 and lines[start - 1].strip():
                start -= 1
            before = " ".join(lines[start:i]) if start < i else " ".join(lines[max(0, i - 3) : i])
            found.append(Block(before, line[3:].strip(), "\n".join(x.strip() for x in lines[i + 1 : end])))
            i = end
        i += 1
    return found


def prose(text: str) -> str:
    """The guide without its fenced blocks."""
    return re.sub(r"```.*?```", "", text, flags=re.DOTALL)


def commands(text: str) -> list[str]:
    """Every ``callrouter`` command line in the guide: in shell blocks, and in inline code (which
    may wrap over a line end), up to a shell operator or a comment."""
    shell = [line for b in blocks(text) if b.info == "sh" for line in b.body.splitlines()]
    lines = [re.sub(r"(^|\s)#.*$", "", line) for line in shell]  # comments are prose
    lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose(text))]
    found = []
    for line in lines:
        for match in _COMMAND.finditer(line):
            rest = line[match.end() :]
            end = _SHELL_END.search(rest)
            found.append(rest[: end.start() if end else len(rest)])
    return found


def file_block(name: str) -> Block:
    """The block the guide gives as the content of ``/etc/callrouter/<name>``."""
    found = [b for b in blocks(GUIDE.read_text()) if f"`/etc/callrouter/{name}`" in b.before]
    assert found, f"the guide gives no content for /etc/callrouter/{name}"
    return found[0]


def env_lines(body: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in body.splitlines() if line and not line.startswith("#"))
    return {key: value for key, _, value in pairs}


def test_the_command_finder_itself() -> None:
    text = (
        "Run `callrouter plan\ncheck /x.yaml` and\n\n```sh\n"
        "/opt/callrouter/venv-0.2.0/bin/callrouter serve --agi-port 1  # a comment\n"
        "docker compose exec web callrouter users add admin > out\n"
        "/opt/callrouter/venv/bin/callrouter-agi-fallback\n```\n"
    )
    assert commands(text) == ["serve --agi-port 1", "users add admin", "plan check /x.yaml"]


def test_every_callrouter_command_of_the_guide_is_accepted_by_the_cli() -> None:
    found = commands(GUIDE.read_text())
    assert len(found) >= 10, found
    for command in found:
        argv = shlex.split(command)
        if argv in (["serve"], ["web"], ["records", "deliver"]) or len(argv) > 1:
            parse_command(argv)  # AssertionError with argparse's message if not


def test_every_variable_and_setting_the_guide_names_exists() -> None:
    text = GUIDE.read_text()
    known = setting_variables() | OTHER_VARIABLES
    for variable in sorted(set(re.findall(r"\bCALLROUTER_[A-Z0-9_]+", text))):
        assert variable in known, f"docs/deploy.md names {variable}: no such setting"
    keys = {row.key for row in settings.rows()} | {row.file_key for row in settings.rows()}
    sections = {key.split(".", 1)[0] for key in keys if "." in key}
    for span in re.findall(r"`([a-z_]+\.[a-z_]+)`", text):
        if span.split(".", 1)[0] in sections and span.split(".", 1)[1] not in FILE_SUFFIXES:
            assert span in keys, f"docs/deploy.md names the setting {span}: no such setting"


def test_the_guide_has_the_engineer_create_every_file_the_units_read() -> None:
    text = GUIDE.read_text()
    for name in NAMES:
        unit = parse_unit((UNITS / name).read_text())
        needed = [v.lstrip("-") for v in values(unit, "Service", "EnvironmentFile")]
        needed += [v.split(":", 1)[1] for v in values(unit, "Service", "LoadCredential")]
        for path in needed:
            file = Path(path).name
            assert path in text or f"> {file}" in text or f"`{file}`" in text, (
                f"{name} reads {path}: the guide never says to create it"
            )


def unit_environment(name: str, tmp_path: Path) -> dict[str, str]:
    """What systemd hands ``name``'s process, from the guide's files: its EnvironmentFile=s (the
    guide's blocks, the settings file written to ``tmp_path``) and Environment=s, with ``%d``
    (the credentials) a folder of made-up secrets."""
    unit = parse_unit((UNITS / name).read_text())
    credentials = tmp_path / f"credentials-{name}"
    credentials.mkdir()
    for source in values(unit, "Service", "LoadCredential"):
        credential = credentials / source.split(":", 1)[0]
        credential.write_text("0123456789abcdef" * 4 + "\n")
        credential.chmod(0o600)
    settings_file = tmp_path / "callrouter.toml"
    settings_file.write_text(file_block("callrouter.toml").body)
    env: dict[str, str] = {}
    for assignment in values(unit, "Service", "Environment"):
        variable, _, value = assignment.partition("=")
        env[variable] = value.replace("%d", str(credentials))
    for path in values(unit, "Service", "EnvironmentFile"):  # these win over Environment=
        if path.lstrip("-") == "/etc/callrouter/deliver.env":
            env["HDC_CRM_SECRET"] = "made up"  # the guide describes it, with the CRMs' secrets
            continue
        env.update(env_lines(file_block(Path(path.lstrip("-")).name).body))
    assert env.pop(settings.CONFIG_ENV) == "/etc/callrouter/callrouter.toml"
    env[settings.CONFIG_ENV] = str(settings_file)
    return env


def test_the_guides_settings_load_for_each_unit_and_the_units_share_no_port(tmp_path: Path) -> None:
    ports: dict[int, str] = {}
    for name in NAMES:
        env = unit_environment(name, tmp_path)
        try:
            loaded = settings.load(env=env)
        except settings.SettingsError as exc:
            pytest.fail(f"{name} with the guide's settings: {exc}")
        assert loaded.plan == Path("/etc/callrouter/plan.yaml")
        port = loaded.ops.port
        assert port, f"{name}: no ops port"
        assert port not in ports, f"{name} and {ports[port]} both listen on ops port {port}"
        ports[port] = name
        if name == "callrouter-serve.service":
            assert loaded.ami is not None, "the controller has no AMI host"
            assert loaded.agi.allowed_peers != settings.Settings().agi.allowed_peers
        else:
            assert loaded.ami is None, f"{name} is given the AMI host"
    # The checks the guide gives ask the controller's port.
    controller = next(p for p, n in ports.items() if n == "callrouter-serve.service")
    assert f"http://127.0.0.1:{controller}/ready" in GUIDE.read_text()


def test_the_guides_redis_steps_give_every_user_a_password_that_works(tmp_path: Path) -> None:
    """Step 3 as written, on a copy of deploy/redis/users.acl: its loop sets each user's
    password hash (a line it fails to match would leave that user with no password it can use),
    and a real redis-server with the guide's settings lets each user in with its clear password
    file, and nobody without one."""
    text = GUIDE.read_text()
    step = next(b for b in blocks(text) if b.info == "sh" and "for user in" in b.body).body
    loop = step[step.index("for user in") : step.index("done") + len("done")]
    etc = tmp_path / "etc"
    etc.mkdir()
    acl = tmp_path / "users.acl"
    shutil.copy(ROOT / "deploy" / "redis" / "users.acl", acl)
    script = loop.replace("/etc/callrouter/", f"{etc}/").replace("/etc/redis/users.acl", str(acl))
    subprocess.run(["bash", "-euc", script], check=True, timeout=60)
    conf_block = next(b for b in blocks(text) if "aclfile" in b.body and b.info == "").body
    conf = [line for line in conf_block.splitlines() if not line.startswith(("bind ", "aclfile "))]
    assert "appendonly yes" in conf
    (tmp_path / "redis.conf").write_text("\n".join([*conf, f"aclfile {acl}", ""]))
    users = re.findall(r"^for user in ([\w ]+);", loop)[0].split()
    server = start_redis(free_port(), tmp_path, conf=tmp_path / "redis.conf", max_lifetime_s=120)
    try:
        for user in users:
            password = (etc / f"redis-{user}.password").read_text().strip()
            with redis.Redis(port=server.port, username=user, password=password) as client:
                assert client.ping(), user
        with redis.Redis(port=server.port) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        admin_password = (etc / "redis-admin.password").read_text().strip()
        with redis.Redis(port=server.port, username="admin", password=admin_password) as admin:
            assert admin.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        server.stop()
