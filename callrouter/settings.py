"""Settings for every ``callrouter`` command, in one model.

Each setting is taken from the first of: its command-line flag, its environment variable, the
settings file (TOML or YAML, named by ``--config`` or ``CALLROUTER_CONFIG``), its default. So
``serve``, ``toggle`` and ``state`` always agree on which Redis and which plan they use.

Secrets (the AMI secret, the Redis password) come from the environment (``..._SECRET``,
``..._PASSWORD``) or from a file named by ``..._FILE`` (or by ``*_file`` in the settings file);
never from the command line, never in the settings file itself, never in ``repr()`` or logs.

:func:`rows` lists every setting with its flag, variable, file key, default and meaning;
``docs/settings.md`` holds the same table (:func:`table`), and a test keeps the two in step.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from redis.asyncio import Redis

from callrouter.redis_client import DEFAULT_SERVICE, RedisTarget, connect, parse_sentinel
from records.builder import MIN_KEY_BYTES
from routing.ami.settings import AmiSettings
from routing.partner_link import PartnerConfig, PartnerKeyError, load_config
from routing.redis_keys import DEFAULT_TAG, RedisKeys, check_tag
from routing.replicas import ReplicaWait
from routing.toggle_mac import ToggleKeyError, ToggleKeyring, load_keyring

ENV_PREFIX = "CALLROUTER_"
CONFIG_ENV = "CALLROUTER_CONFIG"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
MIN_HASH_KEY_BYTES = MIN_KEY_BYTES


class SettingsError(ValueError):
    """A setting that cannot be used; the message names where it came from."""


# --- the model --------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RedisSettings(_Section):
    url: str = Field(DEFAULT_REDIS, description="live state, toggles and the audit trail")
    enabled: bool = Field(True, description="whether serve uses Redis; false: live state unknown")
    password: SecretStr | None = Field(None, description="the Redis password (AUTH), if it has one")
    sentinels: tuple[str, ...] = Field(
        (),
        description="Redis Sentinel addresses (HOST:PORT; environment: comma separated); set: the primary "
        "is the one they name, and url gives only the database number",
    )
    cluster: bool = Field(
        False,
        description="Redis Cluster: url names one node (a seed), the client finds the others and "
        "follows slot moves and failovers (docs/redis.md); not with sentinels",
    )
    service_name: str = Field(
        DEFAULT_SERVICE,
        min_length=1,
        max_length=200,
        description="the primary's name in Sentinel (its monitor)",
    )
    sentinel_username: str | None = Field(None, description="user for the sentinels (ACL), if they need one")
    sentinel_password: SecretStr | None = Field(None, description="the sentinels' password, if they have one")
    wait_replicas: int = Field(
        0,
        ge=0,
        le=16,
        description="replicas that must hold each toggle and contact record before it counts as written "
        "(WAIT); 0: the primary alone (single server)",
    )
    wait_timeout_ms: int = Field(
        500,
        ge=1,
        le=60_000,
        description="longest wait (ms) for those replicas; then the write is reported unconfirmed",
    )
    key_tag: str = Field(
        DEFAULT_TAG,
        description="the hash tag in every key name, `callrouter:{<tag>}:...`: one per centre, so "
        "centres can share one Redis or cluster (1 to 64 letters, digits, `_.-`); the same for every "
        "command of a centre (docs/redis.md)",
    )

    @field_validator("sentinels", mode="before")
    @classmethod
    def _sentinels(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        found = []
        for item in items:
            if not str(item).strip():
                continue
            host, port = parse_sentinel(str(item))  # ValueError: pydantic names the setting
            found.append(f"{host}:{port}")
        return tuple(found)

    @model_validator(mode="after")
    def _cluster_alone(self) -> RedisSettings:
        if self.cluster and self.sentinels:
            raise ValueError("cluster and sentinels: pick one (a Redis Cluster elects its own primaries)")
        if self.cluster and urlsplit(self.url).scheme == "unix":
            raise ValueError("cluster with a unix:// url: a cluster's nodes are reached over TCP (redis://)")
        return self

    @field_validator("key_tag")
    @classmethod
    def _key_tag(cls, value: str) -> str:
        return check_tag(value)  # ValueError: pydantic names the setting

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        try:
            scheme = urlsplit(value).scheme
        except ValueError:
            scheme = ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected redis://HOST:PORT/DB (or rediss://, unix://)")
        return value


class AgiSettings(_Section):
    host: str = Field("127.0.0.1", description="address the FastAGI server listens on")
    port: int = Field(4573, ge=0, le=65535, description="FastAGI port (0: any free port)")
    max_sessions: int = Field(1000, ge=1, description="FastAGI sessions at once; more are refused")
    call_timeout_s: float = Field(300.0, gt=0, description="longest FastAGI session (seconds)")
    drain_timeout_s: float = Field(30.0, ge=0, description="on SIGTERM, how long calls may finish (seconds)")
    allowed_peers: tuple[str, ...] = Field(
        ("127.0.0.1/32", "::1/128"),
        description="networks Asterisk may connect from (CIDR; environment: comma separated)",
    )
    max_sessions_per_peer: int = Field(1000, ge=1, description="FastAGI sessions at once from one address")
    max_pending: int = Field(
        128, ge=1, description="connections still sending their environment block (the oldest closed first)"
    )

    @field_validator("allowed_peers", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        networks = []
        for item in items:
            try:
                networks.append(str(ipaddress.ip_network(str(item).strip(), strict=True)))
            except ValueError as exc:
                raise ValueError(f"{str(item).strip()!r} is not a network: {exc}") from None
        if not networks:
            raise ValueError("no peer allowed, so no Asterisk could connect (any: 0.0.0.0/0 and ::/0)")
        return tuple(networks)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="least level logged")
    console: bool = Field(False, description="human-readable logs instead of JSON lines")

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class RecordsSettings(_Section):
    caller_hash_key: SecretStr | None = Field(
        None,
        description="key (16 bytes or more) of the contact records' caller hash; unset: no records",
    )
    outbox: Path | None = Field(
        None,
        description="JSON Lines file each contact record version is also appended to, "
        "after the records stream when Redis is set (unset: none)",
    )
    journal: Path | None = Field(
        None,
        description="folder of serve's fact journal: what a controller killed mid-call had not yet "
        "appended is replayed from it on start (unset: none)",
    )
    archive_dir: Path | None = Field(
        None,
        description="the owner's archive of every record version: written by records deliver, "
        "read by records export, find, archive and purge, by report and by web (the records API)",
    )

    @field_validator("caller_hash_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode("utf-8")) < MIN_HASH_KEY_BYTES:
            raise ValueError(f"the caller hash key must be at least {MIN_HASH_KEY_BYTES} bytes")
        return value


class CallbackSettings(_Section):
    enabled: bool = Field(True, description="whether serve's AMI lease holder dials queued callbacks")
    interval_s: float = Field(2.0, gt=0, le=60, description="seconds between the callback dialler's sweeps")
    adviser_wait_s: float | None = Field(
        None,
        gt=0,
        le=7200,
        description="seconds a callback's adviser leg may wait in the queue (unset: the queue's timeout_s)",
    )
    lost_after_s: float = Field(
        30.0,
        gt=0,
        description="seconds past the adviser wait after which a dial nobody saw end is dialled again once",
    )
    talk_bound_s: float = Field(
        14400.0,
        gt=0,
        description="the same, once an adviser answered (the caller may be talking)",
    )


class WebSettings(_Section):
    host: str = Field("127.0.0.1", description="address `callrouter web` listens on")
    port: int = Field(8080, ge=0, le=65535, description="`callrouter web` port (0: any free port)")
    tls_cert: Path | None = Field(
        None, description="PEM certificate (chain) for HTTPS; unset: plain HTTP (behind a TLS proxy)"
    )
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    cookie_secure: bool = Field(
        True, description="session cookie marked Secure; false only for plain-HTTP tests on loopback"
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body; larger: 413")
    session_idle_s: float = Field(1800.0, gt=0, description="a web session ends after this long unused")
    session_absolute_s: float = Field(43200.0, gt=0, description="a web session ends this long after login")
    login_failures_per_user: int = Field(
        5, ge=1, description="failed logins of one user per window; then 429"
    )
    login_failures_per_address: int = Field(
        50, ge=1, description="failed logins from one client address per window; then 429"
    )
    login_window_s: int = Field(900, ge=1, description="the failed-login window (seconds)")
    trust_forwarded_for: bool = Field(
        False,
        description="behind a reverse proxy: the client address is the last X-Forwarded-For entry "
        "(the proxy's own); never set it when clients reach the service directly",
    )
    live_interval_s: float = Field(
        0.2,
        gt=0,
        le=5,
        description="the live view is read at least this often (seconds; also at each change)",
    )
    live_streams_max: int = Field(
        200, ge=1, description="live event streams (SSE) open at once in all; more: 503"
    )
    live_streams_per_user: int = Field(
        5, ge=1, description="live event streams (SSE) open at once per user; more: 429"
    )
    live_stream_max_s: float = Field(
        300.0,
        gt=0,
        description="a live event stream ends after this long; the browser reconnects, authenticated again",
    )


class OpsSettings(_Section):
    host: str = Field("127.0.0.1", description="address of the ops listener (/metrics, /health, /ready)")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="port of the ops listener of serve, records deliver and web (unset: no listener; 0: any)",
    )


class PartnerSettings(_Section):
    centre: str = Field(
        "",
        max_length=64,
        description="this centre's id, as its partners' plans name it; empty: no snapshot exchange",
    )
    peers: tuple[str, ...] = Field(
        (),
        description="partner centres as id=https://their-web-service (environment: comma separated): "
        "`callrouter web` sends each this centre's capacity snapshot and accepts theirs",
    )
    key_dir: Path | None = Field(
        None,
        description="folder holding one shared secret per partnership, `<partner id>.key` (mode 600)",
    )
    ca_file: Path | None = Field(
        None, description="PEM certificates that partners' HTTPS is checked against (unset: the system's)"
    )
    interval_s: float = Field(1.0, gt=0, le=10, description="seconds between snapshots sent to each partner")
    timeout_s: float = Field(
        0.8, gt=0, le=10, description="a partner that has not answered within this many seconds is skipped"
    )
    stale_age_s: float = Field(
        30.0, gt=0, description="a received snapshot older than this is not kept (as serve's ami.stale_age_s)"
    )

    @field_validator("peers", mode="before")
    @classmethod
    def _peers(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        peers = []
        for item in (str(i).strip() for i in items):
            if not item:
                continue
            name, sep, url = item.partition("=")
            if not sep or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name.strip()):
                raise ValueError(f"{item!r} is not id=URL")
            if not url.strip().startswith(("https://", "http://")):
                raise ValueError(f"{item!r}: the URL must start with https:// (http:// only for tests)")
            peers.append(f"{name.strip()}={url.strip().rstrip('/')}")
        return tuple(peers)

    def urls(self) -> dict[str, str]:
        return dict(p.partition("=")[::2] for p in self.peers)


class Settings(_Section):
    """Every setting of every command. ``ami`` is None when no AMI host is set."""

    plan: Path | None = Field(None, description="the routing plan (file or folder) in force")
    plan_source: Literal["file", "store"] = Field(
        "file",
        description="where serve (and web's live view) take the plan: file (--plan, reloaded when it "
        "changes) or store (the version published in Redis; --plan seeds an empty store)",
    )
    watch_interval_s: float = Field(2.0, gt=0, description="seconds between checks of the plan file")
    live_timeout_s: float = Field(0.25, gt=0, description="seconds a decision waits for live state")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="serve's worker processes on the one FastAGI port (SO_REUSEPORT) under a supervisor "
        "that restarts them; 1: one process, no supervisor (docs/operations.md)",
    )
    toggle_key_file: Path | None = Field(
        None,
        description="file (mode 600) holding the key that signs supervisor toggles, and the previous "
        "key while rotating; unset: serve obeys no toggle and toggle writes none",
    )
    redis: RedisSettings = RedisSettings()
    agi: AgiSettings = AgiSettings()
    log: LogSettings = LogSettings()
    records: RecordsSettings = RecordsSettings()
    callbacks: CallbackSettings = CallbackSettings()
    web: WebSettings = WebSettings()
    ops: OpsSettings = OpsSettings()
    partners: PartnerSettings = PartnerSettings()
    ami: AmiSettings | None = None

    def require_plan(self) -> Path:
        if self.plan is None:
            raise SettingsError(
                f"no plan: give --plan PLAN, set {ENV_PREFIX}PLAN, or set plan in the settings file"
            )
        return self.plan

    def toggle_keyring(self) -> ToggleKeyring | None:
        """The toggle keys (None when no key file is set); :class:`SettingsError` if the file
        cannot be used (unreadable, readable by others, no key in it)."""
        if self.toggle_key_file is None:
            return None
        try:
            return load_keyring(self.toggle_key_file)
        except ToggleKeyError as exc:
            raise SettingsError(str(exc)) from None

    def partner_config(self) -> PartnerConfig | None:
        """The snapshot exchange with partner centres (None: none); :class:`SettingsError` if a
        partnership's secret file cannot be used."""
        p = self.partners
        if p.ca_file is not None and not p.ca_file.is_file():
            raise SettingsError(f"partners.ca_file {p.ca_file}: not a readable file")
        try:
            return load_config(
                p.centre,
                p.urls(),
                p.key_dir,
                interval_s=p.interval_s,
                timeout_s=p.timeout_s,
                stale_age_s=p.stale_age_s,
                ca_file=p.ca_file,
            )
        except PartnerKeyError as exc:
            raise SettingsError(str(exc)) from None

    def redis_target(self) -> RedisTarget:
        """Where Redis is (a URL, or the sentinels), with its secrets."""
        r = self.redis
        return RedisTarget(
            url=r.url,
            password=r.password.get_secret_value() if r.password else None,
            sentinels=tuple(parse_sentinel(s) for s in r.sentinels),
            service_name=r.service_name,
            sentinel_username=r.sentinel_username,
            sentinel_password=r.sentinel_password.get_secret_value() if r.sentinel_password else None,
            cluster=r.cluster,
        )

    def redis_keys(self) -> RedisKeys:
        """The key schema of this centre (``redis.key_tag``): every command that names a Redis key
        takes it from here, so they all read and write the same keys."""
        return RedisKeys(tag=self.redis.key_tag)

    def replica_wait(self) -> ReplicaWait:
        """How many replicas each toggle and record waits for (``routing/replicas.py``)."""
        return ReplicaWait(self.redis.wait_replicas, self.redis.wait_timeout_ms)

    def redis_client(self, connect_timeout: float, timeout: float, *, pool_size: int | None = None) -> Redis:
        """A client of ``redis.url`` or of the primary the sentinels name. ``pool_size``: at most
        that many connections, a command waiting up to ``timeout`` for a free one (without it,
        redis-py's pool refuses a command outright past 100 connections in use)."""
        return connect(
            self.redis_target(), connect_timeout=connect_timeout, timeout=timeout, pool_size=pool_size
        )


_AMI_MEANINGS = {
    "host": "Asterisk's AMI host; unset: no AMI, live state unknown unless another instance writes it",
    "port": "Asterisk's AMI port",
    "username": "AMI user (manager.conf)",
    "secret": "the AMI user's secret",
    "ping_interval_s": "seconds between AMI Pings",
    "pong_deadline_s": "seconds a Pong may take before the link counts as dead",
    "reconcile_interval_s": "seconds between full QueueStatus reconciles",
    "stale_age_s": "age (seconds) after which live figures count as unknown",
    "connect_timeout_s": "seconds to connect to AMI",
    "login_timeout_s": "seconds for the AMI login",
    "action_timeout_s": "seconds for one AMI action's answer",
    "reconnect_initial_s": "first wait (seconds) before reconnecting; doubles each time",
    "reconnect_max_s": "longest wait (seconds) between reconnects",
    "lease_ttl_s": "seconds the live-state writer's lease lasts unless renewed",
    "queue_maxsize": "AMI events held waiting to be applied",
    "batch_max": "AMI events applied to Redis in one step",
    "centre": "this centre's id in the published snapshot (default: the plan's centre)",
    "publish_queue": "the Asterisk queue whose figures partner centres see",
    "publish_interval_s": "seconds between published snapshots",
}


# --- where each setting comes from ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    const: Any = None  # a flag that takes no value and sets this one
    append: bool = False  # repeatable: each use adds an item
    help: str = ""  # for a flag that takes no value: what it does


_FLAGS: dict[str, Flag] = {
    "plan": Flag("--plan"),
    "plan_source": Flag("--plan-source"),
    "watch_interval_s": Flag("--watch-interval"),
    "live_timeout_s": Flag("--live-timeout"),
    "workers": Flag("--workers"),
    "redis.url": Flag("--redis"),
    "redis.enabled": Flag("--no-redis", const=False, help="run with live state unknown (no Redis)"),
    "agi.host": Flag("--agi-host"),
    "agi.port": Flag("--agi-port"),
    "agi.max_sessions": Flag("--max-sessions"),
    "agi.call_timeout_s": Flag("--call-timeout"),
    "agi.drain_timeout_s": Flag("--drain-timeout"),
    "agi.allowed_peers": Flag("--agi-allow", append=True),
    "agi.max_sessions_per_peer": Flag("--max-sessions-per-peer"),
    "agi.max_pending": Flag("--max-pending"),
    "log.level": Flag("--log-level"),
    "log.console": Flag("--console-logs", const=True, help="human-readable logs instead of JSON lines"),
    "ami.host": Flag("--ami-host"),
    "ami.port": Flag("--ami-port"),
    "ami.username": Flag("--ami-user"),
    "ami.centre": Flag("--centre"),
    "ami.publish_queue": Flag("--publish-queue"),
    "records.outbox": Flag("--records-outbox"),
    "records.journal": Flag("--records-journal"),
    "records.archive_dir": Flag("--archive"),
    "web.host": Flag("--web-host"),
    "web.port": Flag("--web-port"),
    "web.tls_cert": Flag("--tls-cert"),
    "web.tls_key": Flag("--tls-key"),
    "ops.host": Flag("--ops-host"),
    "ops.port": Flag("--ops-port"),
}
_ENV_NAMES = {"redis.url": "CALLROUTER_REDIS"}  # kept from before this model; the rest are derived
SECRETS = ("redis.password", "redis.sentinel_password", "ami.secret", "records.caller_hash_key")


@dataclass(frozen=True, slots=True)
class Row:
    """One setting: where it comes from, its default and what it means."""

    key: str  # the settings file's key (``section.name``); a secret's file key ends in ``_file``
    flag: Flag | None
    env: str
    default: Any
    meaning: str
    secret: bool = False

    @property
    def file_key(self) -> str:
        return f"{self.key}_file" if self.secret else self.key

    @property
    def env_file(self) -> str:
        return f"{self.env}_FILE"


def _env_name(key: str) -> str:
    return _ENV_NAMES.get(key, ENV_PREFIX + key.replace(".", "_").upper())


def _model_rows(model: type[BaseModel], prefix: str = "") -> Iterator[Row]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _model_rows(annotation, f"{name}.")
            continue
        if name == "ami":
            continue
        key = prefix + name
        yield Row(key, _FLAGS.get(key), _env_name(key), info.default, info.description or "", key in SECRETS)


def rows() -> list[Row]:
    """Every setting, in the order of the documentation table."""
    found = list(_model_rows(Settings))
    for f in dataclasses.fields(AmiSettings):
        key = f"ami.{f.name}"
        default = None if f.name == "host" or f.default == "" else f.default
        meaning = _AMI_MEANINGS[f.name]
        found.append(Row(key, _FLAGS.get(key), _env_name(key), default, meaning, key in SECRETS))
    return found


def _shown_default(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, tuple):
        return ", ".join(f"`{v}`" for v in value)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def table() -> str:
    """The markdown table of every setting (``docs/settings.md`` holds it verbatim)."""
    lines = ["| file key | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for row in rows():
        flag = "—"
        if row.flag is not None:
            flag = (
                f"`{row.flag.name}`"
                if row.flag.const is not None
                else f"`{row.flag.name} {_metavar(row.key)}`"
            )
            flag += " (repeatable)" if row.flag.append else ""
        env = f"`{row.env}`, `{row.env_file}`" if row.secret else f"`{row.env}`"
        lines.append(f"| `{row.file_key}` | {flag} | {env} | {_shown_default(row.default)} | {row.meaning} |")
    return "\n".join(lines)


# --- reading them -----------------------------------------------------------------------------


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in data.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield prefix + str(name), value


def read_file(path: Path) -> dict[str, Any]:
    """A settings file (TOML by its ``.toml`` name, YAML by ``.yaml``/``.yml``) as a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"settings file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise SettingsError(f"settings file {path}: name it .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SettingsError(f"settings file {path}: not valid {path.suffix[1:].upper()}: {first}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path}: expected a mapping of settings")
    return data


def _read_secret(path: str, where: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"{where} {path!r}: {exc.strerror}") from None


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def redacted(url: str) -> str:
    """``url`` without its password, fit for logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return "(a URL that cannot be read)"
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True, slots=True)
class _Value:
    value: Any
    source: str  # where it came from, for error messages


def _from_file(path: Path, known: dict[str, Row]) -> dict[str, _Value]:
    values: dict[str, _Value] = {}
    by_file_key = {row.file_key: row for row in known.values()}
    for key, value in _flatten(read_file(path)):
        if key in SECRETS:
            row = known[key]
            raise SettingsError(
                f"settings file {path}: {key}: a secret does not go in the settings file; "
                f"name a file holding it ({row.file_key}) or set {row.env}"
            )
        if key not in by_file_key:
            raise SettingsError(
                f"settings file {path}: unknown setting {key!r} (known: {', '.join(sorted(by_file_key))})"
            )
        values[by_file_key[key].key] = _Value(value, f"settings file {path}: {key}")
    return values


def _secret(row: Row, env: Mapping[str, str], file_values: dict[str, _Value]) -> _Value | None:
    if env.get(row.env):
        return _Value(env[row.env], row.env)
    if env.get(row.env_file):
        return _Value(_read_secret(env[row.env_file], row.env_file), row.env_file)
    named = file_values.pop(row.key, None)
    if named is not None:
        return _Value(_read_secret(str(named.value), named.source), named.source)
    return None


def load(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config: str | Path | None = None,
) -> Settings:
    """The settings: ``flags`` (file key -> value given on the command line) over ``env`` over
    the settings file ``config`` (or ``CALLROUTER_CONFIG``) over the defaults."""
    env = os.environ if env is None else env
    flags = flags or {}
    known = {row.key: row for row in rows()}
    config = config or env.get(CONFIG_ENV) or None
    file_values = _from_file(Path(config), known) if config else {}
    values = dict(file_values)
    for row in known.values():
        if row.secret:
            secret = _secret(row, env, values)
            if secret is not None:
                values[row.key] = secret
            continue
        raw = env.get(row.env)
        if raw is not None and raw != "":
            values[row.key] = _Value(raw, row.env)
    for key, value in flags.items():
        if key in SECRETS:
            raise SettingsError(f"{key} is a secret: set {known[key].env} or {known[key].env_file}")
        flag = known[key].flag
        values[key] = _Value(value, flag.name if flag else key)
    url = values.get("redis.url")
    if url is not None and url.source != known["redis.url"].env and _has_password(str(url.value)):
        raise SettingsError(
            f"{url.source}: no password in the Redis URL here; set CALLROUTER_REDIS_PASSWORD "
            "or CALLROUTER_REDIS_PASSWORD_FILE"
        )
    return _validated(values)


def _validated(values: dict[str, _Value]) -> Settings:
    if "ami.host" not in values:  # no AMI: its other settings have nothing to apply to
        flag = next(
            (v.source for k, v in values.items() if k.startswith("ami.") and v.source[:2] == "--"), None
        )
        if flag is not None:
            raise SettingsError(f"{flag} given but no AMI host: add --ami-host (or CALLROUTER_AMI_HOST)")
        values = {k: v for k, v in values.items() if not k.startswith("ami.")}
    elif "ami.secret" not in values:
        raise SettingsError(
            "AMI host set but no secret: set CALLROUTER_AMI_SECRET or CALLROUTER_AMI_SECRET_FILE "
            "(or ami.secret_file in the settings file)"
        )
    nested: dict[str, Any] = {}
    for key, item in values.items():
        section, _, name = key.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = item.value
    try:
        return Settings.model_validate(nested)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            given = values.get(key)
            where = given.source if given else key
            value = redacted(str(given.value)) if given and key == "redis.url" else given and given.value
            shown = "" if key in SECRETS or given is None else f" {value!r}"
            problems.append(f"{where}{shown}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None


# --- the command line -------------------------------------------------------------------------

_DEST = "setting:"


def _metavar(key: str) -> str:
    """What a flag's value is, for ``--help`` and the table: ``SECONDS``, ``N``, ``PORT``..."""
    name = key.rpartition(".")[2]
    if name == "allowed_peers":
        return "CIDR"
    if name.endswith("_dir"):
        return "DIR"
    return (
        "SECONDS"
        if name.endswith("_s")
        else "N"
        if name.startswith("max_") or name == "workers"
        else name.upper()
    )


def add_flags(parser: argparse.ArgumentParser, keys: Iterable[str]) -> None:
    """``--config`` and the flags of ``keys`` (file keys); unset flags leave the setting alone."""
    parser.add_argument("--config", metavar="FILE", help=f"settings file, TOML or YAML (or {CONFIG_ENV})")
    known = {row.key: row for row in rows()}
    for key in keys:
        row = known[key]
        flag = row.flag
        if flag is None:
            raise ValueError(f"setting {key} has no flag")
        if flag.const is not None:
            help_text = f"{flag.help} (or {row.env}={str(flag.const).lower()})"
            parser.add_argument(
                flag.name, dest=_DEST + key, action="store_const", const=flag.const, help=help_text
            )
        else:
            metavar = _metavar(key)
            parser.add_argument(
                flag.name,
                dest=_DEST + key,
                action="append" if flag.append else "store",
                metavar=metavar,
                help=f"{row.meaning} (or {row.env})",
            )


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """The settings for a parsed command line (see :func:`add_flags`)."""
    given = {
        name[len(_DEST) :]: value
        for name, value in vars(args).items()
        if name.startswith(_DEST) and value is not None
    }
    return load(given, env, getattr(args, "config", None))
