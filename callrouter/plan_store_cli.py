"""``callrouter plan publish|versions|show|rollback``: plan versions in the plan store.

By default these commands are clients of the web service's API (``docs/web.md``): the service's
URL and an API token come from ``CALLROUTER_API_URL`` and ``CALLROUTER_API_TOKEN_FILE`` (or
``CALLROUTER_API_TOKEN``), and the author a version records is the token's user.

``--direct`` is the administrator's path on a host that reaches Redis: the commands write to
Redis directly (``--redis``/``CALLROUTER_REDIS``, the settings file) and the author they record
is what ``--by`` (or ``CALLROUTER_BY``) says, not an authenticated identity.

Controllers with ``plan_source = store`` follow what either path publishes
(docs/routing-plan.md, "Publishing plans"). Exit codes: 0 done (or nothing to do, said so),
1 a plan with errors (every problem listed on stderr), 2 refused, 3 the service or Redis did
not answer.
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
from callrouter.api_client import ApiClient, ApiConfigError, ApiError, ApiUnreachable
from callrouter.settings import Settings
from routing import plan_store
from routing.plan_file import DEFAULT_LIMITS, LimitReached, read_source
from routing.supervisor import shown

EXIT_PROBLEMS, EXIT_REFUSED, EXIT_UNREACHABLE = 1, 2, 3
BY_ENV = "CALLROUTER_BY"
Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
ApiCommand = Callable[[argparse.Namespace, ApiClient], int]


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


async def _publish_direct(args: argparse.Namespace, settings: Settings) -> int:
    try:
        text = read_plan_text(args.file)
        redis = settings.redis_client(connect_timeout=2, timeout=5)
        try:
            now, name = datetime.now(UTC), Path(args.file).name
            change = await plan_store.publish(
                redis, text, _author(args), args.comment or "", now, name=name, keys=settings.redis_keys()
            )
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


async def _rollback_direct(args: argparse.Namespace, settings: Settings) -> int:
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    try:
        change = await plan_store.rollback(
            redis,
            args.number,
            _author(args),
            args.comment or "",
            datetime.now(UTC),
            keys=settings.redis_keys(),
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


async def _versions_direct(args: argparse.Namespace, settings: Settings) -> int:
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    try:
        found = await plan_store.versions(redis, args.limit, keys=settings.redis_keys())
        live = await plan_store.live(redis, keys=settings.redis_keys())
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


async def _show_direct(args: argparse.Namespace, settings: Settings) -> int:
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    try:
        version = await plan_store.get(redis, args.number, keys=settings.redis_keys())
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


# --- through the web service's API ---------------------------------------------------------------


def _api_problems(file: str, error: ApiError) -> int:
    problems = error.body.get("problems")
    if error.status != 422 or not isinstance(problems, list):
        return _refused(shown(error.detail, 600))
    print(f"callrouter: {file}: {shown(error.detail, 200)}", file=sys.stderr)
    for item in problems:
        if not isinstance(item, dict):
            continue
        line = f"{file}:{item.get('line')}: " if item.get("line") is not None else f"{file}: "
        tag = "" if item.get("severity") == "error" else "warning: "
        print(
            f"  {line}{tag}{shown(item.get('path'), 200)}: {shown(item.get('message'), 400)}", file=sys.stderr
        )
    return EXIT_PROBLEMS


def _publish_api(args: argparse.Namespace, client: ApiClient) -> int:
    try:
        text = read_plan_text(args.file)
    except plan_store.PlanStoreError as exc:
        return _refused(str(exc))
    try:
        _status, data = client.post("/api/v1/plans", {"text": text, "comment": args.comment})
    except ApiError as exc:
        return _api_problems(Path(args.file).name, exc)
    _print(args, data, shown(data.get("message", ""), 600))
    return 0


def _rollback_api(args: argparse.Namespace, client: ApiClient) -> int:
    _status, data = client.post(f"/api/v1/plans/{args.number}/rollback", {"comment": args.comment})
    _print(args, data, shown(data.get("message", ""), 600))
    return 0


def _info_of(item: dict[str, Any]) -> plan_store.VersionInfo:
    return plan_store.VersionInfo(
        int(item["number"]), str(item["author"]), datetime.fromisoformat(str(item["at"])),
        str(item["comment"]), str(item["sha256"]),
    )  # fmt: skip


def _versions_api(args: argparse.Namespace, client: ApiClient) -> int:
    data = client.get("/api/v1/plans", query={"limit": args.limit})
    raw_live = data.get("live")
    live = None
    if isinstance(raw_live, dict):
        live = plan_store.Live(int(raw_live["generation"]), int(raw_live["version"]), str(raw_live["sha256"]),
                               datetime.fromisoformat(str(raw_live["activate_at"])))  # fmt: skip
    found = [_info_of(item) for item in data.get("versions", [])]
    if not found:
        text = "no versions: publish one with callrouter plan publish FILE --comment ..."
    else:
        header = f"live: version {live.version}, generation {live.generation}" if live else "live: none"
        text = "\n".join([header, *(version_line(v, live) for v in found)])
    _print(args, data, text)
    return 0


def _show_api(args: argparse.Namespace, client: ApiClient) -> int:
    data = client.get(f"/api/v1/plans/{args.number}")
    _print(args, data, _terminal_safe(str(data.get("text", ""))))
    return 0


def _run_api(args: argparse.Namespace, command: ApiCommand) -> int:
    if args.by:
        return _refused("--by is only for --direct: through the service the author is the token's user")
    try:
        return command(args, ApiClient.from_env())
    except ApiConfigError as exc:
        return _refused(str(exc))
    except ApiError as exc:
        if exc.status >= 500:
            print(f"callrouter: the web service failed: {shown(exc.detail, 600)}", file=sys.stderr)
            return EXIT_UNREACHABLE
        return _refused(shown(exc.detail, 600))
    except ApiUnreachable as exc:
        print(f"callrouter: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


def add_commands(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``plan publish|versions|show|rollback`` under ``callrouter plan``."""
    through = "through the web service (CALLROUTER_API_URL, CALLROUTER_API_TOKEN_FILE); --direct: Redis"
    publish = cmds.add_parser(
        "publish", help=f"validate a plan file and make it the live version ({through})"
    )
    publish.add_argument("file")
    rollback = cmds.add_parser("rollback", help=f"make an earlier version live again ({through})")
    rollback.add_argument("number", type=int)
    for parser in (publish, rollback):
        parser.add_argument("--comment", required=True, help="why (at most 500 characters, one line)")
    versions = cmds.add_parser("versions", help="the published plan versions, newest first (* is live)")
    versions.add_argument("--limit", type=int, default=20)
    show = cmds.add_parser("show", help="one version's plan text (--json: with its author, time and comment)")
    show.add_argument("number", type=int)
    handlers: dict[argparse.ArgumentParser, tuple[Command, ApiCommand]] = {
        publish: (_publish_direct, _publish_api),
        rollback: (_rollback_direct, _rollback_api),
        versions: (_versions_direct, _versions_api),
        show: (_show_direct, _show_api),
    }
    for parser, (direct, api) in handlers.items():
        parser.add_argument(
            "--direct",
            action="store_true",
            help="administrators: read and write Redis directly instead of going through the web service",
        )
        parser.add_argument(
            "--by",
            help=f"with --direct: who is making the change (default: ${BY_ENV}; at most 80 characters)",
        )
        settings_module.add_flags(parser, ("redis.url",))
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(
            handler=lambda args, direct=direct, api=api: (
                _run(args, direct) if args.direct else _run_api(args, api)
            )
        )
