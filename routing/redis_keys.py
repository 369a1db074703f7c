"""Every Redis key and channel callrouter uses, in one place.

Nothing else in the project spells a key: import :data:`KEYS` (or build a
:class:`RedisKeys` with another prefix or tag, as tests do) and call its methods. Each
method's comment says the Redis type, the TTL and who writes the key.

The one rule of every name: ``<prefix>{<tag>}:<name>`` (built by :meth:`RedisKeys._key`), e.g.
``callrouter:{main}:queue:sales:waiting``. ``{<tag>}`` is the Redis Cluster hash tag: Redis Cluster
places a key by the text between its first ``{`` and ``}`` alone, so every key of one centre lies in
one hash slot, and every Lua script, MULTI/EXEC and multi-key command of callrouter touches one slot
(which Redis Cluster requires). One centre = one tag (default ``main``); centres sharing one
cluster use different tags, so their keys may lie on different nodes. The tag comes from the
``redis.key_tag`` setting (``Settings.redis_keys``), the same for every command of a centre.
A new key is ``self._key("<what>:...")`` like the others; no name holds another ``{`` or ``}``.

Live queue state (``queue:*``, ``queues``, ``ami:*``) describes the Asterisk that
this controller's AMI consumer is connected to: one tag per Asterisk.
Writers of live state hold the AMI writer lease (:meth:`RedisKeys.ami_writer_lease`)
and every write script checks it, so a stale writer cannot write (see
``routing/live/lease.py``).

Times stored in values are Unix epoch seconds as decimal strings (``"1795533385.310512"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "callrouter:"
DEFAULT_TAG = "main"
TAG_PATTERN = r"[A-Za-z0-9_.-]{1,64}"


def check_tag(tag: str) -> str:
    """``tag`` if it can be a hash tag (letters, digits, ``_.-``, 1 to 64); else :class:`ValueError`."""
    if not re.fullmatch(TAG_PATTERN, tag):
        raise ValueError(f"{tag!r} is not a key tag: 1 to 64 letters, digits, '_', '.' or '-'")
    return tag


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The key schema under one prefix (default ``callrouter:``) and one hash tag (default
    ``main``): one centre's keys."""

    prefix: str = PREFIX
    tag: str = DEFAULT_TAG

    def __post_init__(self) -> None:
        check_tag(self.tag)
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"prefix {self.prefix!r}: no braces (the tag is the key's only hash tag)")

    def _key(self, name: str) -> str:
        return f"{self.prefix}{{{self.tag}}}:{name}"

    # --- live queue state (writer: AMI consumer holding the writer lease) -----------------

    def queue_waiting(self, queue: str) -> str:
        # ZSET member=Uniqueid score=join time. No TTL. Written by the AMI consumer
        # (QueueCallerJoin adds with NX, QueueCallerLeave removes, reconcile replaces).
        return self._key(f"queue:{queue}:waiting")

    def queue_left(self, queue: str) -> str:
        # ZSET member=Uniqueid score=leave time: tombstones so a replayed or late
        # QueueCallerJoin older than the leave is ignored. Trimmed to one hour by the
        # AMI consumer's apply script; no key TTL.
        return self._key(f"queue:{queue}:left")

    def queue_members(self, queue: str) -> str:
        # HASH Interface -> JSON {"name","status","paused","paused_reason","in_call",
        # "logged_in","available","removed","ts"}. No TTL. Written by the AMI consumer
        # from QueueMember* events (last writer by event time wins) and reconcile.
        return self._key(f"queue:{queue}:members")

    def queue_snapshot(self, queue: str) -> str:
        # HASH waiting, oldest_join, logged_in, available, updated_at, reconciled_at:
        # derived from the two keys above by the same script that changes them. No TTL.
        # Written by the AMI consumer; read by every routing decision.
        return self._key(f"queue:{queue}:snapshot")

    def queue_handle_times(self, queue: str) -> str:
        # ZSET member="<Uniqueid>|<talk seconds>" score=the AgentComplete's time: the queue's
        # recent handle times for the expected-wait estimate, the newest HANDLE_TIMES_KEPT
        # (``routing.live.store``) kept. No TTL. Written by the AMI consumer (lease holder).
        return self._key(f"queue:{queue}:handle_times")

    def queue_first_joins(self, queue: str) -> str:
        # ZSET member=Uniqueid score=the first time the caller joined this queue: a caller who
        # rejoins (the wait loop's slices) keeps that time in ``queue_waiting``. Trimmed to
        # FIRST_JOINS_KEPT_S (``routing.live.store``) by the AMI consumer (lease holder); no TTL.
        return self._key(f"queue:{queue}:first_joins")

    def known_queues(self) -> str:
        # SET of Asterisk queue names that have live state. No TTL. Written by the
        # AMI consumer (events add, a full reconcile removes queues Asterisk no longer has).
        return self._key("queues")

    def ami_status(self) -> str:
        # HASH last_event_at, last_reconcile_at, last_pong_at, alive_at, writer.
        # ``alive_at`` is the last time the writer knew its AMI stream was live (events
        # applied, reconcile applied or Pong received); snapshots carry it as
        # ``observed_at``. No TTL. Written by the AMI consumer holding the lease.
        return self._key("ami:status")

    def live_changed_channel(self) -> str:
        # PUB/SUB channel; message = the writer's batch time. Published by the AMI consumer's
        # apply and reconcile scripts after a write that changed live queue state, so the
        # live view (routing/live/feed.py) refreshes at once instead of at its next poll.
        return self._key("live:changed")

    def ami_writer_lease(self) -> str:
        # STRING holder id, PX = lease time (default 6 s). SET NX PX to take,
        # compare-and-set Lua to renew/release. Written by every AMI consumer instance.
        return self._key("ami:writer")

    # --- published for partner centres ----------------------------------------------------

    def centre_snapshot(self, centre: str) -> str:
        # STRING JSON of one QueueSnapshot (queue, waiting, longest_wait_s, logged_in,
        # available, observed_at ISO-8601), PX = stale age so a dead centre's figures
        # vanish. This centre's own: written by its AMI consumer holding the lease, read by its
        # web service, which sends it to the partners; a partner's: written by the web
        # service's partner endpoint when that partner sends it (web/partners.py), read by
        # the controllers.
        return self._key(f"centre:{centre}:snapshot")

    def partner_sequence(self, centre: str) -> str:
        # STRING the highest request sequence accepted from partner ``centre`` (replay guard),
        # PX one day. Written with centre_snapshot(centre) by the web service's partner
        # endpoint (web/partners.py) in one script.
        return self._key(f"centre:{centre}:sequence")

    def partner_sender_lease(self) -> str:
        # STRING holder id, PX = three send intervals: the one `callrouter web` instance of
        # this centre that sends its snapshot to the partners. Written by every web instance.
        return self._key("web:partner_sender")

    # --- supervisor controls and routing memory (writers: supervisor API / decision engine) -

    def toggle(self, kind: str, tenant: str) -> str:
        # STRING JSON {"reason","by","expires_at","service","since","kid","mac"}, PX = time
        # until expiry; mac = HMAC-SHA256 over the other fields and this key's name
        # (routing/toggle_mac.py): controllers obey no other. kind is emergency | closure |
        # announcement. Written by the supervisor API only (Redis user "service").
        return self._key(f"toggle:{kind}:{tenant}")

    def toggles_changed_channel(self) -> str:
        # PUB/SUB channel; message = the toggle key that changed. Published by the
        # supervisor API after every toggle write so controllers refresh at once.
        return self._key("toggles:changed")

    def audit_stream(self) -> str:
        # STREAM of audit entries (who changed what, when). XADD MAXLEN ~ 100000,
        # no TTL. Written by the supervisor API and the decision engine.
        return self._key("audit")

    def plan_in_force(self) -> str:
        # STRING JSON {"path","version","at","tenants":{id:{"zone","queues","announcements"}}}:
        # what ``callrouter toggle`` checks a request against when it is given no plan. No TTL.
        # Written by ``callrouter serve`` at start and after each accepted reload.
        return self._key("plan:in_force")

    def plan_versions(self) -> str:
        # HASH version number -> JSON {"author","at","comment","sha256"}: every published plan,
        # numbered from 1, never changed or removed. No TTL. Written only by the publish script
        # (routing/plan_store.py), in the same step as plan_texts, plan_live and the audit entry.
        return self._key("plan:versions")

    def plan_texts(self) -> str:
        # HASH version number -> the plan's YAML text (at most 8 MB, validated before it was
        # stored), never changed or removed. No TTL. Written with plan_versions.
        return self._key("plan:texts")

    def plan_live(self) -> str:
        # HASH generation (counter, +1 per publish or rollback), version, sha256, activate_at
        # (epoch seconds: the instant every controller swaps to it). No TTL. Written by the
        # publish and rollback scripts; read by controllers with plan_source = store.
        return self._key("plan:live")

    def plan_changed_channel(self) -> str:
        # PUB/SUB channel; message = the new generation. Published by the publish and rollback
        # scripts so controllers preload the new version at once (they also poll plan_live).
        return self._key("plan:changed")

    def overflow_latch(self, tenant: str, queue: str) -> str:
        # STRING "1" while the plan queue's overflow policy is overflowing (hysteresis
        # memory), PX = a few minutes so a forgotten latch clears. Written by the
        # decision engine.
        return self._key(f"overflow:{tenant}:{queue}")

    # --- queued callbacks (writers: the IVR requests, the AMI lease holder dials) -------------

    def callbacks_pending(self, queue: str) -> str:
        # ZSET callback id -> the original call's queue join time (epoch seconds): a callback
        # keeps its caller's place. ``queue`` is the Asterisk queue. No TTL.
        return self._key(f"callbacks:{queue}:pending")

    def callback(self, callback_id: str) -> str:
        # HASH tenant, queue, asterisk_queue, number, joined_at, requested_at, call_id,
        # language, state, attempts, next_at, outcome, updated_at (routing/callbacks.py;
        # the dialler adds its claim and attempt log). PX = a week after it ends.
        return self._key(f"callback:{callback_id}")

    # --- contact records and their delivery (writers: record appender, delivery worker) -----
    # ``centre`` is the plan's centre, whose records these are (they share the tag's slot).

    def records_stream(self, centre: str) -> str:
        # STREAM of record versions appended by the controllers of ``centre``; fields t (tenant)
        # and e (the envelope as JSON: record id, version, times, record). One consumer group per
        # CRM sink ("<tenant>/<sink>"). No TTL: trimmed by the delivery worker to the
        # retention age, never past an entry some sink has not yet delivered.
        return self._key(f"records:{centre}:stream")

    def record_appended(self, centre: str, record_id: str) -> str:
        # STRING the highest version of ``record_id`` appended to the stream, EX = the
        # retention age. Checked and set by the append script in the same step as its XADD,
        # so a (record id, version) is appended once however many controllers try.
        return self._key(f"records:{centre}:appended:{record_id}")

    def record_owner(self, centre: str, record_id: str) -> str:
        # STRING the controller instance that emits ``record_id``'s record (the one that served
        # the call's first FastAGI request, or the AMI lease holder for a call no controller
        # served), SET NX EX 12 h by that controller's record pump, never on the call path.
        return self._key(f"records:{centre}:owner:{record_id}")

    def record_owner_alive(self, centre: str, instance: str) -> str:
        # STRING "1" EX 5 s, refreshed about once a second by each controller's record pump:
        # a claim whose owner has no such key belongs to a controller that stopped, and the AMI
        # lease holder emits that call's record instead (records/appender.py).
        return self._key(f"records:{centre}:alive:{instance}")

    def record_facts_for(self, centre: str, instance: str) -> str:
        # LIST of JSON facts (records/journal.py fact_line), RPUSH by a controller that served a
        # later FastAGI request of a call ``instance`` owns, LPOP by ``instance``'s record pump
        # each round (records/appender.py). EX 1 day, renewed on each push.
        return self._key(f"records:{centre}:facts_for:{instance}")

    def record_dispositions(self, centre: str) -> str:
        # STREAM of dispositions asked for over HTTP (records/dispositions.py), XADD MAXLEN ~
        # 100,000 by the web service; fields r (request id) and q (the request as JSON). One
        # consumer group ("apply"): each controller's record pump applies a request to its
        # record builder when it emits the call's record, hands it to the emitting controller,
        # or hands it to the web service's consumer ("archive") for the archive-based fallback.
        return self._key(f"records:{centre}:dispositions")

    def record_disposition(self, centre: str, request_id: str) -> str:
        # STRING JSON status of one disposition request (pending, applied with the record
        # version that carries it, or refused with the reason), EX 7 days. SET NX by the web
        # service when asked (the idempotency key), then set by whoever applies it.
        return self._key(f"records:{centre}:disposition:{request_id}")

    def record_owner_alive_pattern(self, centre: str) -> str:
        # SCAN MATCH pattern of every controller's alive key above (the live view lists the
        # controller instances with it).
        return self.record_owner_alive(centre, "*")

    def sink_lease(self, centre: str, sink: str) -> str:
        # STRING holder id, PX = lease time (default 10 s). Held by the one delivery worker
        # delivering to ``sink`` ("<tenant>/<name>"), so versions of a contact keep their order.
        return self._key(f"records:{centre}:sink:{sink}:lease")

    def sink_redo(self, centre: str, sink: str) -> str:
        # STREAM of record versions to send again to one sink (``records retry``/``replay``),
        # same fields as the records stream. Written by the CLI; read and XDEL'd by the lease
        # holder once delivered. No TTL.
        return self._key(f"records:{centre}:sink:{sink}:redo")

    def sink_dead(self, centre: str, sink: str) -> str:
        # HASH "<record id>:<version>" -> JSON {envelope (as sent, a JSON string), status, answer
        # (bounded), at, stream_id}: versions the CRM refused (4xx other than 408/429). No TTL:
        # a person clears them (``records retry``). Written by the delivery worker.
        return self._key(f"records:{centre}:sink:{sink}:dead")

    def sink_stats(self, centre: str, sink: str) -> str:
        # HASH delivered, dead_lettered, attempts_failed (counters), last_delivered_at,
        # last_error_at, last_error (bounded), breaker. No TTL. Written by the delivery worker.
        return self._key(f"records:{centre}:sink:{sink}:stats")

    # --- the web service's users, sessions and API tokens (writer: ``callrouter web``/``users``) -
    # Secrets are never key names: sessions and tokens are found by the SHA-256 of their value.

    def web_users(self) -> str:
        # SET of user ids. No TTL. Written by ``callrouter users``.
        return self._key("web:users")

    def web_user(self, user_id: str) -> str:
        # HASH name, password (argon2id), roles (JSON {tenant: [role]}), epoch (bumped when the
        # password changes: older sessions stop working), created_at. No TTL.
        return self._key(f"web:user:{user_id}")

    def web_session(self, digest: str) -> str:
        # HASH user, epoch, csrf, created_at, absolute_at; PX = the idle time, renewed on use and
        # never past absolute_at. ``digest`` is the SHA-256 hex of the cookie's session id.
        return self._key(f"web:session:{digest}")

    def web_token(self, digest: str) -> str:
        # HASH id, user, name, created_at, expires_at, revoked_at; PX = until expiry. ``digest`` is
        # the SHA-256 hex of the bearer token, which is shown once and stored nowhere.
        return self._key(f"web:token:{digest}")

    def web_token_ids(self) -> str:
        # HASH token id -> digest, so a token can be listed and revoked by its id. No TTL
        # (entries of expired tokens are dropped when listed).
        return self._key("web:tokens")

    def web_login_failures(self, kind: str, subject: str) -> str:
        # STRING failed logins counter; kind is ``user`` (subject: the user id) or ``addr``
        # (subject: the client address). EX = the rate-limit window, set by the first failure.
        return self._key(f"web:login_failures:{kind}:{subject}")


KEYS = RedisKeys()
"""The production key schema (prefix ``callrouter:``, tag ``main``)."""


def tagged_name(old: str, keys: RedisKeys = KEYS) -> str | None:
    """The name under ``keys`` of a key named before hash tags (``callrouter:queue:q:waiting`` ->
    ``callrouter:{main}:queue:q:waiting``; the records keys' old ``{centre}`` tag loses its braces);
    None for a name of another prefix or one that has its tag already. Pure: for
    ``callrouter redis migrate-keys``."""
    if not old.startswith(keys.prefix) or old.startswith(keys.prefix + "{"):
        return None
    rest = old[len(keys.prefix) :]
    if rest.startswith("records:{"):
        centre, sep, tail = rest[len("records:{") :].partition("}")
        if not sep:
            return None
        rest = f"records:{centre}{tail}"
    return keys._key(rest)


def tag_head(keys: RedisKeys) -> str:
    """What every key and channel of ``keys`` starts with, ``<prefix>{<tag>}:`` (the SCAN MATCH of
    ``callrouter redis migrate-keys --from-tag``)."""
    return keys._key("")


def retagged_name(old: str, source: RedisKeys, target: RedisKeys) -> str | None:
    """The name under ``target`` of a key named under ``source`` (another tag, or prefix):
    ``callrouter:{main}:audit`` -> ``callrouter:{east}:audit``; None for a name not under
    ``source``. Pure: for ``callrouter redis migrate-keys --from-tag``."""
    head = tag_head(source)
    if not old.startswith(head):
        return None
    return target._key(old[len(head) :])
