"""``callrouter web`` (the supervisors' and engineers' service) and ``callrouter users``.

``web`` is its own process, so the call path never shares an event loop with browsers. It binds
``web.host`` (127.0.0.1 by default) and serves HTTPS when ``web.tls_cert`` and ``web.tls_key``
are set; SIGTERM or SIGINT stop it cleanly.

``users`` works directly against Redis on the service host (an administrator's shell): passwords
are read from a prompt or ``--password-file``, never from the command line; a new API token is
printed once and only its SHA-256 is stored. Each change goes to the audit trail, by
``host:<login name>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from callrouter import settings as settings_module
from callrouter import systemd
from callrouter.logs import configure_logging
from callrouter.ops import OpsListener, Readiness
from callrouter.settings import Settings, SettingsError
from records.archive import Archive
from routing import plan_store
from routing.core.plan import Plan
from routing.metrics import set_info
from routing.plan_file import load_plan
from routing.supervisor import audit
from web.app import create_app, run_kwargs
from web.context import WebConfig
from web.identity import IdentityError, IdentityStore, check_password, parse_roles
from web.records import RECORDS, RecordsSource

EXIT_REFUSED, EXIT_UNREACHABLE = 2, 3
WEB_SETTINGS = (
    "plan",
    "plan_source",
    "records.archive_dir",
    "redis.url",
    "web.host",
    "web.port",
    "web.tls_cert",
    "web.tls_key",
    "ops.host",
    "ops.port",
    "log.level",
    "log.console",
)
DEFAULT_TOKEN_DAYS = 90
WEB_REDIS_CONNECTIONS = 50
"""The web service's Redis connections at most; a request waits for a free one (up to the
command timeout). redis-py's default pool refused every command past 100 connections with a 503
when 100 dashboards polled at once (``benchmarks/web_bench.py``)."""


def web_config(settings: Settings) -> WebConfig:
    """The web package's configuration from the settings; plain-HTTP cookies only on loopback."""
    w = settings.web
    if not w.cookie_secure and not _loopback(w.host):
        raise SettingsError(
            f"web.cookie_secure is false but web.host is {w.host}: a cookie without Secure is allowed "
            "only on a loopback address (tests, local development)"
        )
    if (w.tls_cert is None) != (w.tls_key is None):
        raise SettingsError("set both web.tls_cert and web.tls_key (or neither, behind a TLS proxy)")
    return WebConfig(
        redis_wait=settings.replica_wait(),
        keys=settings.redis_keys(),
        cookie_secure=w.cookie_secure,
        max_body_bytes=w.max_body_bytes,
        session_idle_s=w.session_idle_s,
        session_absolute_s=w.session_absolute_s,
        login_failures_per_user=w.login_failures_per_user,
        login_failures_per_address=w.login_failures_per_address,
        login_window_s=w.login_window_s,
        trust_forwarded_for=w.trust_forwarded_for,
        toggle_keyring=settings.toggle_keyring(),
        plan_path=settings.plan,
        plan_from_store=settings.plan_source == "store",
        live_interval_s=w.live_interval_s,
        live_streams_max=w.live_streams_max,
        live_streams_per_user=w.live_streams_per_user,
        live_stream_max_s=w.live_stream_max_s,
        partners=settings.partner_config(),
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.web.tls_cert is None or settings.web.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.web.tls_cert, settings.web.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"web.tls_cert/web.tls_key: cannot load: {exc}") from None
    return context


async def serve_web(settings: Settings, config: WebConfig, stop: asyncio.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set)."""
    from aiohttp import web  # noqa: PLC0415 - only this command needs the server part

    tls = _tls(settings)
    redis = settings.redis_client(connect_timeout=2, timeout=5, pool_size=WEB_REDIS_CONNECTIONS)
    app = create_app(config, redis)
    records = records_source(settings, redis)
    if records is not None:
        app[RECORDS] = records
    runner = web.AppRunner(app, **run_kwargs())
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    notifier = systemd.Notifier.from_environ()

    def stopping() -> None:
        notifier.stopping()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    readiness = Readiness({"listening": False, "not_stopping": True})
    ops = None
    if settings.ops.port is not None:  # the unauthenticated /metrics, /health, /ready (docs/web.md)
        ops = OpsListener(settings.ops.host, settings.ops.port, readiness)
    try:
        site = web.TCPSite(runner, settings.web.host, settings.web.port, ssl_context=tls)
        try:
            await site.start()
            if ops is not None:
                await ops.start()
        except OSError as exc:
            print(f"callrouter: cannot listen: {exc.strerror}", file=sys.stderr)
            return EXIT_UNREACHABLE
        readiness.set("listening", True)
        set_info("web", f"{socket.gethostname()}:{os.getpid()}:{runner.addresses[0][1]}")
        for address in runner.addresses:
            print(
                f"callrouter web: listening on {'https' if tls else 'http'}://{address[0]}:{address[1]}",
                file=sys.stderr,
                flush=True,
            )
        notifier.ready("serving")  # Type=notify units; watchdog pings from the loop
        await stop.wait()
        readiness.set("not_stopping", False)
    finally:
        if ops is not None:
            await ops.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await notifier.close()
        await runner.cleanup()
        await redis.aclose()
    return 0


class PlanReader:
    """The plan in force for the records API, read again only when it changed: the file's
    modification time (``plan_source = file``) or the live version's sha256 (``store``)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.path, self.store, self.redis = settings.plan, settings.plan_source == "store", redis
        self.keys = settings.redis_keys()
        self._seen: object = None
        self._plan: Plan | None = None

    async def __call__(self) -> Plan:
        if self.store:
            live = await plan_store.live(self.redis, keys=self.keys)
            version = await plan_store.get(self.redis, live.version, keys=self.keys) if live else None
            if version is None:
                raise SettingsError("no plan has been published to the store")
            return self._keep(version.info.sha256, lambda: plan_store.validate(version.text).plan)
        if self.path is None:
            raise SettingsError("no plan: give --plan PLAN")
        path = self.path
        return self._keep(path.stat().st_mtime_ns, lambda: load_plan(path).plan)

    def _keep(self, seen: object, load: Callable[[], Plan | None]) -> Plan:
        if self._plan is None or seen != self._seen:
            plan = load()
            if plan is None:
                raise SettingsError("the plan has errors: check it with callrouter plan check")
            self._plan, self._seen = plan, seen
        return self._plan


def records_source(settings: Settings, redis: Redis) -> RecordsSource | None:
    """What the records API reads (``records.archive_dir``, the caller hash key, the plan);
    None without an archive directory (the API then answers 503)."""
    if settings.records.archive_dir is None:
        return None
    key = settings.records.caller_hash_key
    return RecordsSource(
        Archive(settings.records.archive_dir),
        key.get_secret_value().encode("utf-8") if key is not None else None,
        PlanReader(settings, redis),
    )


def cmd_web(args: argparse.Namespace) -> int:
    settings = settings_module.from_args(args)
    configure_logging(json=not settings.log.console, level=settings.log.level)
    return asyncio.run(serve_web(settings, web_config(settings)))


# --- users ------------------------------------------------------------------------------------


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        try:
            lines = Path(args.password_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SettingsError(f"--password-file {args.password_file}: {exc.strerror}") from None
        return check_password(lines[0] if lines else "")
    first = getpass.getpass("New password: ")
    check_password(first)
    if getpass.getpass("Again: ") != first:
        raise IdentityError("the two passwords differ")
    return first


def _operator() -> str:
    try:
        return f"host:{getpass.getuser()}"
    except (KeyError, OSError):
        return "host:unknown"


async def _users(args: argparse.Namespace, settings: Settings) -> int:
    redis: Redis = settings.redis_client(connect_timeout=2, timeout=5)
    keys = settings.redis_keys()
    store, now, by = IdentityStore(redis, keys=keys), datetime.now(UTC), _operator()

    async def note(what: str, details: dict[str, Any]) -> None:
        await audit(redis, what, by, now, details, keys=keys)

    try:
        if args.users_command == "add":
            roles = parse_roles(args.role or [])
            await store.add_user(args.user, args.name or args.user, _password(args), roles, now)
            await note("auth.user.added", {"user": args.user, "roles": args.role or []})
            print(f"user {args.user} added")
        elif args.users_command == "passwd":
            await store.set_password(args.user, _password(args))
            await note("auth.user.password", {"user": args.user})
            print(f"password of {args.user} changed; their sessions have ended")
        elif args.users_command == "roles":
            if args.set is not None:
                await store.set_roles(args.user, parse_roles(args.set))
                await note("auth.user.roles", {"user": args.user, "roles": args.set})
            user = await store.user(args.user)
            if user is None:
                raise IdentityError(f"no user {args.user}")
            print(
                " ".join(f"{t}:{r}" for t, rs in sorted(user.roles.items()) for r in sorted(rs)) or "(none)"
            )
        elif args.users_command == "remove":
            await store.remove_user(args.user)
            await note("auth.user.removed", {"user": args.user})
            print(f"user {args.user} removed; their sessions and tokens no longer work")
        elif args.users_command == "token":
            token, info = await store.create_token(args.user, args.name, now, timedelta(days=args.days))
            await note(
                "auth.token.created",
                {
                    "user": args.user,
                    "token_id": info.token_id,
                    "name": info.name,
                    "expires_at": info.expires_at,
                },
            )
            print(
                f"token {info.token_id} for {args.user}, expires {info.expires_at} (shown once):",
                file=sys.stderr,
            )
            print(token)
        elif args.users_command == "revoke":
            info = await store.revoke_token(args.token_id, now)
            await note("auth.token.revoked", {"user": info.user_id, "token_id": info.token_id})
            print(f"token {info.token_id} of {info.user_id} revoked")
        else:
            await _list(args, store)
    except IdentityError as exc:
        print(f"callrouter: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (RedisError, OSError) as exc:
        print(f"callrouter: Redis did not answer ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        await redis.aclose()
    return 0


async def _list(args: argparse.Namespace, store: IdentityStore) -> None:
    users = [u for u in [await store.user(i) for i in await store.user_ids()] if u is not None]
    tokens = await store.tokens()
    if args.json:
        data = {
            "users": [
                {
                    "user": u.user_id,
                    "name": u.display_name,
                    "roles": {t: sorted(r) for t, r in sorted(u.roles.items())},
                }
                for u in users
            ],
            "tokens": [
                {
                    "id": t.token_id,
                    "user": t.user_id,
                    "name": t.name,
                    "created_at": t.created_at,
                    "expires_at": t.expires_at,
                    "revoked_at": t.revoked_at,
                }
                for t in tokens
            ],
        }
        print(json.dumps(data, indent=2))
        return
    for u in users:
        roles = " ".join(f"{t}:{r}" for t, rs in sorted(u.roles.items()) for r in sorted(rs))
        print(f"{u.user_id}  {u.display_name!r}  {roles or '(no roles)'}")
    for t in tokens:
        state = f"revoked {t.revoked_at}" if t.revoked_at else f"expires {t.expires_at}"
        print(f"token {t.token_id}  {t.user_id}  {t.name!r}  {state}")


def cmd_users(args: argparse.Namespace) -> int:
    settings = settings_module.from_args(args)
    return asyncio.run(_users(args, settings))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    web_parser = sub.add_parser(
        "web",
        help="run the supervisors' and engineers' web service (HTTP API and page)",
        description="Settings: flag > environment > settings file > default (docs/settings.md, docs/web.md).",
    )
    settings_module.add_flags(web_parser, WEB_SETTINGS)
    web_parser.set_defaults(handler=cmd_web)

    users = sub.add_parser(
        "users", help="the web service's users, roles and API tokens (on the service host)"
    )
    cmds = users.add_subparsers(dest="users_command", required=True)
    add = cmds.add_parser("add", help="add a user (password from a prompt or --password-file)")
    add.add_argument("user")
    add.add_argument("--name", help="display name (default: the user id)")
    add.add_argument(
        "--role",
        action="append",
        metavar="TENANT:ROLE",
        help="viewer, supervisor, engineer or admin of a tenant (or *); repeatable",
    )
    passwd = cmds.add_parser("passwd", help="set a user's password (their sessions end)")
    passwd.add_argument("user")
    for parser in (add, passwd):
        parser.add_argument(
            "--password-file", metavar="FILE", help="read the password from FILE's first line"
        )
    roles = cmds.add_parser("roles", help="show a user's roles, or replace them with --set")
    roles.add_argument("user")
    roles.add_argument("--set", nargs="*", metavar="TENANT:ROLE", help="the user's roles from now on")
    token = cmds.add_parser("token", help="a new API token for a user, printed once")
    token.add_argument("user")
    token.add_argument("--name", required=True, help="what the token is for (shown in list)")
    token.add_argument(
        "--days", type=int, default=DEFAULT_TOKEN_DAYS, help=f"lifetime (default {DEFAULT_TOKEN_DAYS})"
    )
    revoke = cmds.add_parser("revoke", help="revoke an API token by its id (see list)")
    revoke.add_argument("token_id")
    remove = cmds.add_parser("remove", help="remove a user (their sessions and tokens stop working)")
    remove.add_argument("user")
    listing = cmds.add_parser("list", help="users with their roles, and tokens")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    for parser in (add, passwd, roles, token, revoke, remove, listing):
        settings_module.add_flags(parser, ("redis.url",))
        parser.set_defaults(handler=cmd_users)
