"""One settings model for every command: precedence, files, secrets, errors, the docs table."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from callrouter import settings
from callrouter.cli import build_parser
from callrouter.service import ServeOptions
from callrouter.settings import SettingsError, load
from tests.support.redis_server import free_port, start_redis

ROOT = Path(__file__).parents[2]


def test_defaults_are_local_and_safe() -> None:
    found = load({}, {})
    assert found.redis.url == "redis://127.0.0.1:6379/0"
    assert (found.agi.host, found.agi.port, found.agi.allowed_peers) == (
        "127.0.0.1",
        4573,
        ("127.0.0.1/32", "::1/128"),
    )
    assert (found.plan, found.ami, found.redis.password) == (None, None, None)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("callrouter.toml", 'plan = "from-file.yaml"\n[agi]\nport = 4001\nmax_sessions = 50\n'),
        ("callrouter.yaml", "plan: from-file.yaml\nagi:\n  port: 4001\n  max_sessions: 50\n"),
    ],
)
def test_flag_over_environment_over_file_over_default(tmp_path: Path, name: str, text: str) -> None:
    """The same setting from each source: the flag wins, then the environment, then the file."""
    config = tmp_path / name
    config.write_text(text)
    from_file = load({}, {"CALLROUTER_CONFIG": str(config)})
    assert (from_file.agi.port, from_file.agi.max_sessions, from_file.plan) == (
        4001,
        50,
        Path("from-file.yaml"),
    )
    env = {"CALLROUTER_CONFIG": str(config), "CALLROUTER_AGI_PORT": "4002"}
    assert load({}, env).agi.port == 4002
    both = load({"agi.port": "4003"}, env)
    assert (both.agi.port, both.agi.max_sessions) == (4003, 50)
    assert load({}, {}).agi.port == 4573


def test_config_flag_over_config_variable(tmp_path: Path) -> None:
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text("[agi]\nport = 1111\n")
    two.write_text("[agi]\nport = 2222\n")
    assert load({}, {"CALLROUTER_CONFIG": str(one)}, config=two).agi.port == 2222


def test_every_command_reads_the_same_settings(tmp_path: Path) -> None:
    """serve, toggle and state take the plan and Redis from the same places (the bug was
    serve ignoring CALLROUTER_REDIS)."""
    env = {"CALLROUTER_REDIS": "redis://10.0.0.7:6380/2", "CALLROUTER_PLAN": "examples/plan.yaml"}
    parser = build_parser()
    for argv in (["serve"], ["toggle", "closure", "charnwood", "--off"], ["state"]):
        found = settings.from_args(parser.parse_args(argv), env)
        assert (found.redis.url, found.plan) == ("redis://10.0.0.7:6380/2", Path("examples/plan.yaml"))
    options = ServeOptions.from_settings(settings.from_args(parser.parse_args(["serve"]), env), "hdc")
    assert (options.redis, options.plan) == ("redis://10.0.0.7:6380/2", Path("examples/plan.yaml"))


def test_peers_from_flags_and_environment() -> None:
    assert load({}, {"CALLROUTER_AGI_ALLOWED_PEERS": "10.1.0.0/16, ::1"}).agi.allowed_peers == (
        "10.1.0.0/16",
        "::1/128",
    )
    args = build_parser().parse_args(["serve", "--agi-allow", "192.0.2.10", "--agi-allow", "10.0.0.0/8"])
    assert settings.from_args(args, {}).agi.allowed_peers == ("192.0.2.10/32", "10.0.0.0/8")
    with pytest.raises(SettingsError, match=r"'10.0.0.5/8' is not a network: 10.0.0.5/8 has host bits set"):
        load({"agi.allowed_peers": ["10.0.0.5/8"]}, {})


@pytest.mark.parametrize(
    ("flags", "env", "file", "message"),
    [
        ({"agi.port": "x"}, {}, None, "--agi-port 'x': Input should be a valid integer"),
        ({}, {"CALLROUTER_AGI_PORT": "70000"}, None, "CALLROUTER_AGI_PORT '70000': Input should be less"),
        ({}, {}, "[agi]\nprot = 1\n", "unknown setting 'agi.prot' (known: agi.allowed_peers, "),
        ({}, {}, "[ami]\nsecret = 'x'\n", "ami.secret: a secret does not go in the settings file"),
        ({}, {}, 'agi = "x"\n', "unknown setting 'agi' (known: "),
        ({}, {}, "[agi\n", "not valid TOML: "),
        ({"redis.url": "redis://:pw@h:6379/0"}, {}, None, "--redis: no password in the Redis URL here"),
        ({}, {"CALLROUTER_AMI_HOST": "pbx"}, None, "AMI host set but no secret: set CALLROUTER_AMI_SECRET"),
        ({}, {"CALLROUTER_LOG_LEVEL": "loud"}, None, "CALLROUTER_LOG_LEVEL 'loud': Input should be 'debug'"),
        (
            {},
            {"CALLROUTER_REDIS": "localhost:6379"},
            None,
            "CALLROUTER_REDIS 'localhost:6379': Value error, expected redis://",
        ),
        (
            {},
            {"CALLROUTER_REDIS": "http://:pw@h/0"},
            None,
            "CALLROUTER_REDIS 'http://:\\*\\*\\*@h/0': Value error",
        ),
        ({"ami.port": "5039"}, {}, None, "--ami-port given but no AMI host: add --ami-host"),
    ],
)
def test_bad_settings_name_their_source(
    tmp_path: Path, flags: dict[str, object], env: dict[str, str], file: str | None, message: str
) -> None:
    config = None
    if file is not None:
        config = tmp_path / "callrouter.toml"
        config.write_text(file)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(flags, env, config)


def test_secrets_from_environment_or_files_never_shown(tmp_path: Path) -> None:
    """The AMI secret and the Redis password: from the environment or a file named there or in
    the settings file; not in repr(), not in an error."""
    secret, password = tmp_path / "ami-secret", tmp_path / "redis-password"
    secret.write_text("s3cret-ami\n")
    password.write_text("pa55word\n")
    config = tmp_path / "callrouter.yaml"
    config.write_text(f"ami:\n  host: pbx\n  secret_file: {secret}\nredis:\n  password_file: {password}\n")
    found = load({}, {"CALLROUTER_CONFIG": str(config)})
    assert found.ami is not None
    assert (found.ami.secret, found.redis.password and found.redis.password.get_secret_value()) == (
        "s3cret-ami",
        "pa55word",
    )
    assert "s3cret-ami" not in repr(found)
    assert "pa55word" not in repr(found)
    env = {"CALLROUTER_AMI_HOST": "pbx", "CALLROUTER_AMI_SECRET_FILE": str(tmp_path / "missing")}
    with pytest.raises(SettingsError, match=r"CALLROUTER_AMI_SECRET_FILE '.*missing': No such file"):
        load({}, env)
    assert load({}, {"CALLROUTER_AMI_HOST": "pbx", "CALLROUTER_AMI_SECRET": "e"}).ami.secret == "e"  # type: ignore[union-attr]


def test_no_secret_on_the_command_line() -> None:
    """There is no flag for a secret: argparse refuses one (exit 2)."""
    for flag in ("--ami-secret", "--redis-password"):
        with pytest.raises(SystemExit) as stopped:
            build_parser().parse_args(["serve", flag, "x"])
        assert stopped.value.code == 2


def test_the_redis_password_is_used(tmp_path: Path) -> None:
    """A Redis that asks for a password: `state` works with CALLROUTER_REDIS_PASSWORD_FILE."""
    server = start_redis(free_port(), tmp_path, "--requirepass", "pa55word", max_lifetime_s=60)
    password = tmp_path / "password"
    password.write_text("pa55word\n")
    try:
        argv = [sys.executable, "-m", "callrouter.cli", "state", "--direct", "--plan", "examples/plan.yaml"]
        env = {"PATH": "/usr/bin:/bin", "CALLROUTER_REDIS": server.url}
        refused = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert refused.returncode == 3
        assert refused.stderr.startswith(f"callrouter: Redis at {server.url} refused: "), refused.stderr
        env["CALLROUTER_REDIS_PASSWORD_FILE"] = str(password)
        done = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert "pa55word" not in done.stdout
    finally:
        server.stop()


def test_docs_table_lists_every_setting() -> None:
    """docs/settings.md holds the table of every setting, as the code defines them."""
    assert settings.table() in (ROOT / "docs" / "settings.md").read_text()


def test_every_flag_is_a_setting_or_a_command_option() -> None:
    """serve's flags are settings (in the table) except the rehearsal clock's."""
    parser = build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    flags = {s for a in serve._actions for s in a.option_strings if s.startswith("--")}
    table_flags = {row.flag.name for row in settings.rows() if row.flag}
    assert flags - table_flags == {"--help", "--config", "--clock-start", "--clock-speed"}


def test_the_caller_hash_key_from_a_file_or_the_environment_never_shown(tmp_path: Path) -> None:
    """records.caller_hash_key: a secret (environment or a file), at least 16 bytes, never
    echoed in an error; serve gets it as bytes with the outbox path."""
    key_file = tmp_path / "hash.key"
    key_file.write_text("a-file-key-of-more-than-16-bytes\n")
    env = {
        "CALLROUTER_RECORDS_CALLER_HASH_KEY_FILE": str(key_file),
        "CALLROUTER_RECORDS_OUTBOX": "/srv/r.jsonl",
        "CALLROUTER_PLAN": "examples/plan.yaml",
    }
    found = load({}, env)
    options = ServeOptions.from_settings(found, "hdc")
    assert options.records_key == b"a-file-key-of-more-than-16-bytes"
    assert options.records_outbox == Path("/srv/r.jsonl")
    assert "a-file-key" not in repr(found) + repr(options)
    with pytest.raises(SettingsError, match="at least 16 bytes") as refused:
        load({}, {"CALLROUTER_RECORDS_CALLER_HASH_KEY": "too-short"})
    assert "too-short" not in str(refused.value)
    with pytest.raises(SettingsError, match="is a secret"):
        load({"records.caller_hash_key": "x" * 32}, {})
    assert load({}, {}).records.caller_hash_key is None
