"""Plan versions in Redis: publish, list, show, roll back; the live version and its generation.

Every published plan is kept as a numbered, immutable version (author, time, comment, sha256
and the text itself). Which version is live is a separate record with a **generation**
counter: a publish or a rollback bumps the generation, in the same server-side script that
stores the version and appends the audit entry, and names an **activation time** a little
ahead (:data:`ACTIVATION_DELAY_S`). Every controller that follows the store preloads and
validates the new version as soon as it hears of it (pub/sub, with a poll as a fallback) and
swaps at the activation time, so all controllers switch together, never half old, half new.

Versions are never changed or removed: a plan is at most ``Limits.max_bytes`` (8 MB) and
real plans are a few tens of kilobytes, so years of daily publishing fit in a few megabytes.

The checks and the preview are pure (:func:`check_publish`, :func:`preview`); the Redis part is
:func:`publish`, :func:`rollback`, :func:`versions`, :func:`get` and :func:`live`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from routing import metrics
from routing.core.decide import CompiledPlan
from routing.core.diff import Difference, differences, local_day_bounds
from routing.core.problems import Problem, errors
from routing.core.schedule import Transition, timeline
from routing.plan_file import DEFAULT_LIMITS, Limits, LoadResult, load_plan_text
from routing.redis_keys import KEYS, RedisKeys
from routing.supervisor import AUDIT_MAXLEN, MAX_BY, ToggleError, audit_entry, check_text

ACTIVATION_DELAY_S = 0.5
"""A new generation goes live this long after it is written: time for every controller to hear
of it, fetch and validate it, so they can all swap at the same instant."""
SMALL_PLAN_CHARS = 256_000
"""Controllers check a version up to this size in a thread (a few milliseconds: every real
plan); a larger one in a worker process, which takes seconds (benchmarks/plan_switch_bench.py)."""
LARGE_ACTIVATION_DELAY_S = 10.0
"""The activation delay of a larger version: the worker checks a 5.7 MB plan in 3 to 7 s on a
busy host, and every controller must have it ready to switch together."""
MAX_WAIT_S = 15.0
"""A controller never waits longer than this after hearing of a generation, whatever its
activation time says (a publisher's clock far ahead must not hold it on the old plan)."""
MAX_COMMENT = 500  # characters
PLAN_NAME = "plan.yaml"  # the file name a stored version's problems are reported against


class PlanStoreError(ValueError):
    """A publish or rollback that is refused, with the reason in plain words (and, for a plan
    with errors, every problem with its path and line)."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One stored version, without its text."""

    number: int
    author: str
    at: datetime
    comment: str
    sha256: str

    def data(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class Version:
    """One stored version with its text."""

    info: VersionInfo
    text: str


@dataclass(frozen=True, slots=True)
class Live:
    """Which version is live: the generation counts every publish and rollback."""

    generation: int
    version: int
    sha256: str
    activate_at: datetime

    def data(self) -> dict[str, Any]:
        return {**asdict(self), "activate_at": self.activate_at.isoformat()}


@dataclass(frozen=True, slots=True)
class Change:
    """What a publish or rollback did. ``changed`` is False when the version asked for was live
    already (nothing stored, no new generation, no audit entry): ``message`` says so."""

    changed: bool
    live: Live
    previous_version: int | None
    message: str

    def data(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "live": self.live.data(),
            "previous_version": self.previous_version,
            "message": self.message,
        }


# --- pure checks --------------------------------------------------------------------------


def activation_delay(size: int) -> float:
    """Seconds from a publish or rollback to the switch, for a version of ``size`` characters."""
    return ACTIVATION_DELAY_S if size <= SMALL_PLAN_CHARS else LARGE_ACTIVATION_DELAY_S


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_words(author: str, comment: str) -> tuple[str, str]:
    """``author`` and ``comment`` stripped, or :class:`PlanStoreError`: empty, too long, or
    holding control characters (ANSI escapes, new lines, bidi overrides)."""
    try:
        return check_text("the author", author, MAX_BY), check_text("the comment", comment, MAX_COMMENT)
    except ToggleError as exc:
        raise PlanStoreError(str(exc)) from None


def validate(text: str, limits: Limits = DEFAULT_LIMITS, name: str = PLAN_NAME) -> LoadResult:
    """The plan read with the bounded reader and validated: every problem with path and line
    (``name``: the file name the lines are given against)."""
    size = len(text.encode("utf-8"))
    if size > limits.max_bytes:
        message = (
            f"refused: the plan is {size / 1e6:.1f} MB, over the limit of {limits.max_bytes / 1e6:.1f} MB"
        )
        return LoadResult(None, [Problem("(plan)", message)])
    return load_plan_text(text, name, limits)


def check_publish(
    text: str, author: str, comment: str, limits: Limits = DEFAULT_LIMITS, name: str = PLAN_NAME
) -> tuple[str, str]:
    """The cleaned author and comment if ``text`` may be published; else :class:`PlanStoreError`
    carrying every problem of the plan."""
    author, comment = check_words(author, comment)
    result = validate(text, limits, name)
    if not result.ok:
        found = errors(result.problems) or result.problems
        raise PlanStoreError(f"the plan has {len(found)} problem(s): nothing published", found)
    return author, comment


# --- preview (pure) -----------------------------------------------------------------------


def _compiled(text: str, which: str) -> CompiledPlan:
    result = validate(text)
    if not result.ok or result.plan is None:
        raise PlanStoreError(f"the {which} plan has errors", errors(result.problems) or result.problems)
    return CompiledPlan.compile(result.plan)


def difference_data(item: Difference) -> dict[str, Any]:
    return {
        "number": item.number,
        "keys": list(item.keys) if item.keys is not None else None,
        "from": item.start.isoformat(),
        "to": item.end.isoformat(),
        "old": item.old,
        "new": item.new,
    }


def transition_data(item: Transition) -> dict[str, Any]:
    return {
        "at": item.at.isoformat(),
        "open": item.state.open,
        "kind": item.state.kind,
        "cause": item.state.cause,
    }


def preview(live_text: str | None, candidate_text: str, now: datetime, weeks: int = 4) -> dict[str, Any]:
    """What publishing ``candidate_text`` would change over the next ``weeks`` from ``now``
    (London days, as ``plan diff`` and ``plan timeline`` count them), as JSON-able data:

    ``{"from", "to", "changes", "differences": [...as plan diff --json...], "timelines":
    {tenant: {"live": [...], "candidate": [...], "changed": bool}}}``. Transitions are as
    ``plan timeline --json`` gives them; a tenant only one plan has gets an empty list for the
    other. ``live_text`` None (nothing live yet): no differences, the candidate's timelines.
    Raises :class:`PlanStoreError` (with every problem) if either plan has errors."""
    if weeks < 1 or weeks > 52:
        raise PlanStoreError("preview: weeks must be 1 to 52")
    candidate = _compiled(candidate_text, "candidate")
    old = _compiled(live_text, "live") if live_text is not None else None
    first = now.astimezone(ZoneInfo("Europe/London")).date()
    last = first + timedelta(weeks=weeks) - timedelta(days=1)
    start, end = local_day_bounds(first, last)
    items = differences(old, candidate, start, end) if old is not None else []
    timelines: dict[str, dict[str, Any]] = {}
    for tenant in sorted({*candidate.calendars, *(old.calendars if old else {})}):
        before = _timeline(old, tenant, first, last) if old is not None else []
        after = _timeline(candidate, tenant, first, last)
        timelines[tenant] = {"live": before, "candidate": after, "changed": before != after}
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "changes": len(items),
        "differences": [difference_data(i) for i in items],
        "timelines": timelines,
    }


def _timeline(plan: CompiledPlan, tenant: str, first: date, last: date) -> list[dict[str, Any]]:
    calendar = plan.calendars.get(tenant)
    return [transition_data(t) for t in timeline(calendar, first, last)] if calendar else []


# --- Redis ----------------------------------------------------------------------------------

# Publish: store version n = (count + 1) and make it live as a new generation, with its audit
# entry and the notice to controllers, in one step. Identical text to the live one: nothing.
# KEYS: versions meta hash, texts hash, live hash, audit stream.
# ARGV: sha256, meta JSON, text, activate_at, audit entry JSON, audit maxlen, channel, first_only,
# the sha256 the publisher checked the plan against ('' for an empty store; '-' for none).
_PUBLISH = """
local live = redis.call('HMGET', KEYS[3], 'version', 'sha256', 'generation', 'activate_at')
if ARGV[9] ~= '-' and (live[2] or '') ~= ARGV[9] then
  return {'moved', live[1] or '', live[3] or '', live[2] or '', live[4] or ''}
end
local count = redis.call('HLEN', KEYS[1])
if ARGV[8] == '1' and count > 0 then
  return {'exists', live[1] or '', live[3] or '', live[2] or '', live[4] or ''}
end
if live[2] == ARGV[1] then
  return {'same', live[1], live[3], live[2], live[4]}
end
local n = count + 1
redis.call('HSET', KEYS[1], n, ARGV[2])
redis.call('HSET', KEYS[2], n, ARGV[3])
local gen = redis.call('HINCRBY', KEYS[3], 'generation', 1)
redis.call('HSET', KEYS[3], 'version', n, 'sha256', ARGV[1], 'activate_at', ARGV[4])
local entry = cjson.decode(ARGV[5])
entry['version'] = n
entry['generation'] = gen
entry['from_version'] = tonumber(live[1])
local previous = ''
if live[1] then previous = cjson.encode({version = tonumber(live[1]), generation = tonumber(live[3])}) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'entry', cjson.encode(entry), 'previous', previous)
redis.call('PUBLISH', ARGV[7], gen)
return {'published', tostring(n), tostring(gen), ARGV[1], ARGV[4], live[1] or ''}
"""

# Rollback: make stored version ARGV[1] live as a new generation (audit: from X to n).
# KEYS: versions meta hash, live hash, audit stream.
# ARGV: n, activate_at, audit entry JSON, audit maxlen, channel.
_ROLLBACK = """
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if not meta then return {'missing'} end
local sha = cjson.decode(meta)['sha256']
local live = redis.call('HMGET', KEYS[2], 'version', 'sha256', 'generation', 'activate_at')
if live[2] == sha then
  return {'same', live[1], live[3], live[2], live[4]}
end
local gen = redis.call('HINCRBY', KEYS[2], 'generation', 1)
redis.call('HSET', KEYS[2], 'version', ARGV[1], 'sha256', sha, 'activate_at', ARGV[2])
local entry = cjson.decode(ARGV[3])
entry['version'] = tonumber(ARGV[1])
entry['generation'] = gen
entry['from_version'] = tonumber(live[1])
local previous = ''
if live[1] then previous = cjson.encode({version = tonumber(live[1]), generation = tonumber(live[3])}) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'entry', cjson.encode(entry), 'previous', previous)
redis.call('PUBLISH', ARGV[5], gen)
return {'rolledback', ARGV[1], tostring(gen), sha, ARGV[2], live[1] or ''}
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _epoch(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def _from_epoch(text: str) -> datetime:
    return datetime.fromtimestamp(float(text), tz=UTC)


def _live_of(answer: list[object]) -> Live:
    version, generation, sha, activate_at = (_text(v) for v in answer[1:5])
    return Live(int(generation), int(version), sha, _from_epoch(activate_at))


class LiveMoved(PlanStoreError):
    """The live version is no longer the one a publish was checked against."""


async def publish(
    redis: Redis,
    text: str,
    author: str,
    comment: str,
    now: datetime,
    *,
    first_only: bool = False,
    name: str = PLAN_NAME,
    keys: RedisKeys = KEYS,
    delay_s: float | None = None,
    expect_live_sha: str | None = None,
) -> Change:
    """Validate ``text`` and store it as the next version, live at ``now + delay_s`` (default:
    :func:`activation_delay` of its size) as a new generation; :class:`PlanStoreError` (every
    problem) if it has errors, nothing stored.

    The same text as the live version: nothing stored, ``changed`` False. ``first_only``: store
    it only if the store holds no version at all (a controller seeding an empty store).
    ``name``: the file name problems are reported against. ``expect_live_sha``: the sha256 of
    the live version the caller checked ``text`` against ("" for an empty store); if another
    publish or rollback got in first, :class:`LiveMoved` and nothing stored (compare and set,
    so two services can never publish over each other's change unseen)."""
    author, comment = check_publish(text, author, comment, name=name)
    sha = sha256_text(text)
    meta = json.dumps({"author": author, "at": now.isoformat(), "comment": comment, "sha256": sha})
    entry = audit_entry("plan.publish", author, now, comment=comment, sha256=sha)
    delay = activation_delay(len(text)) if delay_s is None else delay_s
    activate_at = _epoch(now + timedelta(seconds=delay))
    script_keys = [keys.plan_versions(), keys.plan_texts(), keys.plan_live(), keys.audit_stream()]
    args = [sha, meta, text, activate_at, entry, str(AUDIT_MAXLEN), keys.plan_changed_channel(),
            "1" if first_only else "0", "-" if expect_live_sha is None else expect_live_sha]  # fmt: skip
    answer = await redis.eval(_PUBLISH, len(script_keys), *script_keys, *args)
    outcome = _text(answer[0])
    if outcome == "moved":
        raise LiveMoved(
            f"the live plan changed (now version {_text(answer[1]) or 'none'}) since this one was "
            "checked against it: nothing published; preview it again"
        )
    if outcome == "exists":
        current = await live(redis, keys=keys)
        if current is None:
            raise PlanStoreError("the store holds versions but none is live: roll back to one")
        return Change(False, current, current.version, f"the store already has versions; version "
                      f"{current.version} is live (generation {current.generation})")  # fmt: skip
    result = _live_of(answer)
    if outcome == "same":
        return Change(False, result, result.version, f"nothing published: this plan is the live version "
                      f"{result.version} (sha256 {sha[:12]}, generation {result.generation})")  # fmt: skip
    previous = int(_text(answer[5])) if _text(answer[5]) else None
    at = result.activate_at.isoformat(timespec="milliseconds")
    message = f"published version {result.version} (generation {result.generation}), live at {at}"
    metrics.plan_changed("publish")
    return Change(True, result, previous, message)


async def rollback(
    redis: Redis,
    number: int,
    author: str,
    comment: str,
    now: datetime,
    *,
    keys: RedisKeys = KEYS,
    delay_s: float | None = None,
) -> Change:
    """Make stored version ``number`` live again as a new generation, in one step; the audit
    entry says from which version. Already live: ``changed`` False. Unknown: :class:`PlanStoreError`."""
    author, comment = check_words(author, comment)
    entry = audit_entry("plan.rollback", author, now, comment=comment)
    if delay_s is None:  # the size only chooses the delay: read apart from the script
        delay_s = activation_delay(int(await redis.hstrlen(keys.plan_texts(), str(number))))
    activate_at = _epoch(now + timedelta(seconds=delay_s))
    script_keys = [keys.plan_versions(), keys.plan_live(), keys.audit_stream()]
    args = [str(number), activate_at, entry, str(AUDIT_MAXLEN), keys.plan_changed_channel()]
    answer = await redis.eval(_ROLLBACK, len(script_keys), *script_keys, *args)
    outcome = _text(answer[0])
    if outcome == "missing":
        count = await redis.hlen(keys.plan_versions())
        raise PlanStoreError(f"no version {number} (the store has versions 1 to {count})" if count
                             else f"no version {number}: the store has no versions")  # fmt: skip
    result = _live_of(answer)
    if outcome == "same":
        return Change(False, result, result.version, f"nothing changed: version {number} has the text "
                      f"of the live version {result.version} (generation {result.generation})")  # fmt: skip
    previous = int(_text(answer[5])) if _text(answer[5]) else None
    metrics.plan_changed("rollback")
    return Change(True, result, previous, f"rolled back from version {previous} to version {number} "
                  f"(generation {result.generation})")  # fmt: skip


def _info(number: int, raw: object) -> VersionInfo:
    data = json.loads(_text(raw))
    return VersionInfo(
        number, data["author"], datetime.fromisoformat(data["at"]), data["comment"], data["sha256"]
    )


async def versions(redis: Redis, limit: int = 50, *, keys: RedisKeys = KEYS) -> list[VersionInfo]:
    """The newest ``limit`` versions, newest first (without their texts)."""
    count = int(await redis.hlen(keys.plan_versions()))
    numbers = list(range(count, max(count - limit, 0), -1))
    if not numbers:
        return []
    raws = await redis.hmget(keys.plan_versions(), [str(n) for n in numbers])
    return [_info(n, raw) for n, raw in zip(numbers, raws, strict=True) if raw is not None]


async def get(redis: Redis, number: int, *, keys: RedisKeys = KEYS) -> Version | None:
    """Version ``number`` with its text, or None."""
    meta = await redis.hget(keys.plan_versions(), str(number))
    text = await redis.hget(keys.plan_texts(), str(number))
    if meta is None or text is None:
        return None
    return Version(_info(number, meta), _text(text))


async def live(redis: Redis, *, keys: RedisKeys = KEYS) -> Live | None:
    """The live version and its generation, or None while nothing was ever published."""
    raw = await redis.hgetall(keys.plan_live())
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if "version" not in fields:
        return None
    return Live(int(fields["generation"]), int(fields["version"]), fields["sha256"],
                _from_epoch(fields["activate_at"]))  # fmt: skip


async def preview_live(
    redis: Redis, candidate_text: str, now: datetime, weeks: int = 4, *, keys: RedisKeys = KEYS
) -> dict[str, Any]:
    """:func:`preview` of ``candidate_text`` against the live version (none live: no
    differences), with ``"live_version"`` and ``"live_generation"`` added (None when none)."""
    current = await live(redis, keys=keys)
    stored = await get(redis, current.version, keys=keys) if current else None
    data = preview(stored.text if stored else None, candidate_text, now, weeks)
    return {
        **data,
        "live_version": current.version if current else None,
        "live_generation": current.generation if current else None,
    }


def switch_delay(
    activate_at: datetime, now: datetime, noticed_at: datetime, max_wait_s: float = MAX_WAIT_S
) -> float:
    """Seconds to wait before swapping in a prepared generation: until its activation time, but
    never more than ``max_wait_s`` after it was noticed (a publisher's clock far ahead must not
    hold a controller on the old plan). Pure."""
    latest = noticed_at + timedelta(seconds=max_wait_s)
    return max(0.0, (min(activate_at, latest) - now).total_seconds())
