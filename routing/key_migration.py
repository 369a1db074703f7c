"""Moving a Redis of the key names before hash tags (``callrouter:queue:...``) to the names of
``routing/redis_keys.py`` (``callrouter:{main}:queue:...``), or the keys of one hash tag to another
(``callrouter:{main}:...`` -> ``callrouter:{east}:...``, a centre given its own ``redis.key_tag``),
for ``callrouter redis migrate-keys``.

Run on one Redis server with every callrouter process stopped. Each key is renamed (``RENAMENX``:
its value and its time to live kept; a key whose new name already holds data is left as it is
and counted). Toggles are the exception: each one's MAC covers its key name (``routing/
toggle_mac.py``), so a renamed toggle would be ignored by every controller; with the toggle key,
each one that verifies is signed again for its new name (same fields, same expiry) and the old key
deleted; without it, or when one does not verify, it is left where it is and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from routing.redis_keys import KEYS, RedisKeys, retagged_name, tag_head, tagged_name
from routing.toggle_mac import ToggleKeyring, ToggleRejected, sign, verify

SCAN_COUNT = 1000


@dataclass
class Migration:
    """What a run did (or, with ``dry_run``, would do)."""

    renamed: int = 0
    resigned: int = 0  # toggles signed again for their new name
    kept: list[str] = field(default_factory=list)  # old names left: their new name holds data
    toggles_left: list[tuple[str, str]] = field(default_factory=list)  # (old name, why)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


async def migrate_keys(
    redis: Redis,
    keyring: ToggleKeyring | None,
    *,
    keys: RedisKeys = KEYS,
    source: RedisKeys | None = None,
    dry_run: bool = False,
) -> Migration:
    """Rename every key to its name under ``keys`` (see the module): with ``source``, every key of
    that schema (another tag); without, every old-scheme key under ``keys.prefix``."""
    if source == keys:
        raise ValueError(f"the keys are under tag {keys.tag!r} already: nothing to move")
    done = Migration()
    if source is None:
        toggle_head = keys.prefix + "toggle:"
        match = _glob_escape(keys.prefix) + "*"

        def new_name(old: str) -> str | None:
            return tagged_name(old, keys)
    else:
        toggle_head = tag_head(source) + "toggle:"
        match = _glob_escape(tag_head(source)) + "*"

        def new_name(old: str) -> str | None:
            return retagged_name(old, source, keys)

    olds = [_text(k) async for k in redis.scan_iter(match=match, count=SCAN_COUNT)]
    for old in sorted(olds):
        new = new_name(old)
        if new is None:
            continue
        if await redis.exists(new):
            done.kept.append(old)
        elif old.startswith(toggle_head):
            await _move_toggle(redis, keyring, (old, new), done, dry_run=dry_run)
        elif dry_run or await redis.renamenx(old, new):
            done.renamed += 1
        else:  # written between the two checks: a process is still running
            done.kept.append(old)
    return done


async def _move_toggle(
    redis: Redis, keyring: ToggleKeyring | None, names: tuple[str, str], done: Migration, *, dry_run: bool
) -> None:
    old, new = names
    raw, ttl_ms = await redis.get(old), int(await redis.pttl(old))
    if raw is None or ttl_ms == -2:
        return  # expired meanwhile
    try:
        fields = verify(keyring, old, raw)
    except ToggleRejected as exc:
        done.toggles_left.append((old, exc.reason))
        return
    assert keyring is not None  # verify refuses without one
    if not dry_run:
        value = sign(keyring, new, fields)
        # its expiry kept; one with none (-1: not written by callrouter, PERSIST) keeps none
        stored = await redis.set(new, value, nx=True, px=ttl_ms if ttl_ms > 0 else None)
        if not stored:
            done.kept.append(old)
            return
        await redis.delete(old)
    done.resigned += 1
