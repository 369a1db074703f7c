"""``callrouter redis migrate-keys``: rename the keys of a Redis written before keys carried a
hash tag (``callrouter:queue:...``) to today's names under the centre's tag (``redis.key_tag``:
``callrouter:{main}:queue:...``), or, with ``--from-tag OLD``, every key of tag OLD to the centre's
tag (``callrouter:{main}:...`` -> ``callrouter:{east}:...``); toggles are signed again for their
new names with the toggle key (``routing/key_migration.py``).

Run it on the single Redis server, with every callrouter process of the centre stopped, before
starting them with the new names (docs/redis.md, "Upgrading to hash-tagged keys" and "Giving a
centre its own tag"). ``--dry-run`` only counts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from redis.exceptions import RedisError

from callrouter import settings as settings_module
from callrouter.settings import Settings
from routing.key_migration import Migration, migrate_keys
from routing.redis_keys import RedisKeys, check_tag

EXIT_REFUSED, EXIT_UNREACHABLE = 2, 3


def _summary(done: Migration, dry_run: bool) -> str:
    verb = "would rename" if dry_run else "renamed"
    lines = [f"{verb} {done.renamed} keys; toggles signed again for their new names: {done.resigned}"]
    lines += [f"left (its new name holds data already): {old}" for old in done.kept]
    lines += [f"toggle left where it is ({why}): {old}" for old, why in done.toggles_left]
    return "\n".join(lines)


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    keyring = settings.toggle_keyring()
    keys = settings.redis_keys()
    source = RedisKeys(keys.prefix, args.from_tag) if args.from_tag is not None else None
    redis = settings.redis_client(connect_timeout=2, timeout=10)
    try:
        done = await migrate_keys(redis, keyring, keys=keys, source=source, dry_run=args.dry_run)
    finally:
        await redis.aclose()
    if args.json:
        data = {"dry_run": args.dry_run, "renamed": done.renamed, "resigned": done.resigned,
                "kept": done.kept, "toggles_left": [list(t) for t in done.toggles_left]}  # fmt: skip
        print(json.dumps(data, indent=2))
    else:
        print(_summary(done, args.dry_run))
    return 0


def cmd_migrate_keys(args: argparse.Namespace) -> int:
    settings = settings_module.from_args(args)
    if args.from_tag is not None:
        try:
            check_tag(args.from_tag)
        except ValueError as exc:
            raise settings_module.SettingsError(f"--from-tag: {exc}") from None
        if args.from_tag == settings.redis.key_tag:
            raise settings_module.SettingsError(
                f"--from-tag {args.from_tag} is redis.key_tag already: set redis.key_tag to the new tag"
            )
    if settings.redis.cluster or settings.redis.sentinels:
        print(
            "callrouter: refused: run migrate-keys on the single Redis server the keys are on (a "
            "cluster cannot rename between slots; move the renamed keys in afterwards: docs/redis.md)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    where = settings_module.redacted(settings.redis.url)
    try:
        return asyncio.run(_migrate(args, settings))
    except (RedisError, OSError) as exc:
        print(f"callrouter: Redis at {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    redis = sub.add_parser("redis", help="Redis upkeep: rename keys written by an older version")
    cmds = redis.add_subparsers(dest="redis_command", required=True)
    migrate = cmds.add_parser(
        "migrate-keys",
        help="rename keys written before hash tags, or under another tag, to the names of redis.key_tag "
        "(callrouter stopped)",
    )
    settings_module.add_flags(migrate, ("redis.url",))
    migrate.add_argument(
        "--from-tag",
        metavar="TAG",
        help="move every key of hash tag TAG to redis.key_tag (a centre given its own tag); "
        "without it: the names from before hash tags",
    )
    migrate.add_argument("--dry-run", action="store_true", help="count what would be renamed; change nothing")
    migrate.add_argument("--json", action="store_true")
    migrate.set_defaults(handler=cmd_migrate_keys)
