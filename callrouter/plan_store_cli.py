"""``callrouter plan publish|versions|show|rollback``: plan versions in the plan store.

The admin path: these commands write to Redis directly (``--redis``/``CALLROUTER_REDIS``, the
settings file), and the author they record is what ``--by`` (or ``CALLROUTER_BY``) says,
not an authenticated identity. Controllers with ``plan_source = store`` follow what they publish
(docs/routing-plan.md, "Publishing plans"). Exit codes: 0 done (or nothing to do, said so),
1 a plan with errors (every problem listed on stderr), 2 refused, 3 Redis did not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from callrouter import settings as settings_module
from callrouter.settings import Settings
from routing import plan_store
from routing.plan_file import DEFAULT_LIMITS, LimitReached, read_source
from routing.supervisor import shown

EXIT_PROBLEMS, EXIT_REFUSED, EXIT_UNREACHABLE = 1, 2, 3
BY_ENV = "CALLROUTER_BY"
Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _refused(message: str) -> int:
    print(f"callrouter: refused: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _author(args: argparse.Namespace) -> str:
    return args.by or os.environ.get(BY_ENV, "")


def read_plan_text(path: str) -> str:
    """One plan file's text, read within the plan size limit; :class:`PlanStoreError` if it
    is a folder, too big, unreadable or not UTF-8."""
    try:
        source = read_source(path, DEFAULT_LIMITS)
    except (LimitReached, OSError) as exc:
        raise plan_store.PlanStoreError(f"cannot read {path}: {exc}") from None
    if source.folder:
        raise plan_store.PlanStoreError(f"{path} is a folder: the plan store keeps one plan file per version")
    try:
        return source.files[0][1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise plan_store.PlanStoreError(
            f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None


def _change_text(change: plan_store.Change) -> str:
    return change.message


async def _publish(args: argparse.Namespace, settings: Settings) -> int:
    try:
        text = read_plan_text(args.file)
        redis = settings.redis_client(connect_timeout=2, timeout=5)
        try:
            now, name = datetime.now(UTC), Path(args.file).name
            change = await plan_store.publish(redis, text, _author(args), args.comment or "", now, name=name)
        finally:
            await redis.aclose()
    except plan_store.PlanStoreError as exc:
        if exc.problems:
            print(f"callrouter: {args.file}: {exc}", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {shown(problem, 400)}", file=sys.stderr)
            return EXIT_PROBLEMS
        return _refused(str(exc))
    _print(args, change.data(), _change_text(change))
    return 0


async def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    try:
        change = await plan_store.rollback(
            redis, args.number, _author(args), args.comment or "", datetime.now(UTC)
        )
    except plan_store.PlanStoreError as exc:
        return _refused(str(exc))
    finally:
        await redis.aclose()
    _print(args, change.data(), _change_text(change))
    return 0


def version_line(info: plan_store.VersionInfo, live: plan_store.Live | None) -> str:
    mark = "*" if live is not None and live.version == info.number else " "
    at = info.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"{mark}{info.number:>5}  {at}  {info.sha256[:12]}  {shown(info.author, 80)}: {shown(info.comment)}"
    )


async def _versions(args: argparse.Namespace, settings: Settings) -> int:
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    try:
        found = await plan_store.versions(redis, args.limit)
        live = await plan_store.live(redis)
    finally:
        await redis.aclose()
    data = {"live": live.data() if live else None, "versions": [v.data() for v in found]}
    if not found:
        text = "no versions: publish one with callrouter plan publish FILE --comment ..."
    else:
        header = f"live: version {live.version}, generation {live.generation}" if live else "live: none"
        text = "\n".join([header, *(version_line(v, live) for v in found)])
    _print(args, data, text)
    return 0


def _terminal_safe(text: str) -> str:
    """The plan's text with control characters other than new lines and tabs escaped."""
    return "\n".join(shown(line, len(line)).replace("\\t", "\t") for line in text.split("\n"))


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    try:
        version = await plan_store.get(redis, args.number)
    finally:
        await redis.aclose()
    if version is None:
        return _refused(f"no version {args.number}")
    _print(args, {**version.info.data(), "text": version.text}, _terminal_safe(version.text))
    return 0


def _run(args: argparse.Namespace, command: Command) -> int:
    settings = settings_module.from_args(args)
    where = settings_module.redacted(settings.redis.url)
    try:
        result: int = asyncio.run(command(args, settings))
    except (RedisError, OSError) as exc:  # Redis's own words hold no secret
        print(f"callrouter: Redis at {where} did not answer or refused: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_UNREACHABLE
    return result


def add_commands(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``plan publish|versions|show|rollback`` under ``callrouter plan``."""
    admin = "admin path: writes to Redis directly; the author is what --by says"
    publish = cmds.add_parser("publish", help=f"validate a plan file and make it the live version ({admin})")
    publish.add_argument("file")
    rollback = cmds.add_parser("rollback", help=f"make an earlier version live again ({admin})")
    rollback.add_argument("number", type=int)
    for parser in (publish, rollback):
        parser.add_argument("--comment", required=True, help="why (at most 500 characters, one line)")
        parser.add_argument(
            "--by", help=f"who is making the change (default: ${BY_ENV}; at most 80 characters)"
        )
    versions = cmds.add_parser("versions", help="the published plan versions, newest first (* is live)")
    versions.add_argument("--limit", type=int, default=20)
    show = cmds.add_parser("show", help="one version's plan text (--json: with its author, time and comment)")
    show.add_argument("number", type=int)
    handlers: dict[argparse.ArgumentParser, Command] = {
        publish: _publish, rollback: _rollback, versions: _versions, show: _show,
    }  # fmt: skip
    for parser, command in handlers.items():
        settings_module.add_flags(parser, ("redis.url",))
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(handler=lambda args, command=command: _run(args, command))
