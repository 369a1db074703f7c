"""Who is asking and what they may do: users, roles per tenant, sessions and API tokens.

Roles are held per tenant (a council), or for every tenant with the tenant ``*``:

- ``viewer``: live state and reports;
- ``supervisor``: the toggles of that tenant, and everything a viewer may;
- ``engineer``: routing plans, and everything a viewer may;
- ``admin``: everything (users and tokens need admin on ``*``).

:func:`grants` is the one rule (pure). Users, sessions and tokens live in Redis under the keys of
``routing/redis_keys.py``. Passwords are argon2id hashes, checked in a worker thread so the event
loop never waits for one. Session ids and API tokens carry 256 random bits and only their SHA-256
is stored: with that much entropy a fast hash cannot be searched, and a slow one would put a
password-hash's cost on every API request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from routing.redis_keys import KEYS, RedisKeys

Role = Literal["viewer", "supervisor", "engineer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "supervisor", "engineer", "admin")
ALL_TENANTS = "*"
# What each held role also grants (cumulative in the natural way).
IMPLIES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "supervisor": frozenset({"supervisor", "viewer"}),
    "engineer": frozenset({"engineer", "viewer"}),
    "admin": frozenset(ROLES),
}
USER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TENANT = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9_-]{0,63})$")
MIN_PASSWORD, MAX_PASSWORD = 12, 1024  # characters; the maximum bounds the hashing work
MAX_NAME = 80
SESSION_PREFIX, TOKEN_PREFIX = "", "crt_"

Roles = Mapping[str, frozenset[str]]  # tenant (or "*") -> roles held there


class IdentityError(ValueError):
    """A user, role or password that cannot be used; the message says why."""


def grants(roles: Roles, role: str, tenant: str | None) -> bool:
    """Whether ``roles`` allow ``role`` for ``tenant`` (None: for every tenant, i.e. held on ``*``)."""
    places = (ALL_TENANTS,) if tenant is None else (ALL_TENANTS, tenant)
    return any(role in IMPLIES[held] for place in places for held in roles.get(place, ()) if held in IMPLIES)


def parse_roles(items: Iterable[str]) -> dict[str, frozenset[str]]:
    """``["barnet:supervisor", "*:viewer"]`` -> ``{"barnet": {"supervisor"}, "*": {"viewer"}}``."""
    found: dict[str, set[str]] = {}
    for item in items:
        tenant, sep, role = item.strip().rpartition(":")
        if not sep or not TENANT.match(tenant) or role not in ROLES:
            raise IdentityError(
                f"role {item!r}: expected TENANT:ROLE "
                f"(TENANT a tenant id or *, ROLE one of {', '.join(ROLES)})"
            )
        found.setdefault(tenant, set()).add(role)
    return {t: frozenset(r) for t, r in found.items()}


def roles_json(roles: Roles) -> str:
    return json.dumps({t: sorted(r) for t, r in sorted(roles.items())}, separators=(",", ":"))


def roles_from_json(raw: str | bytes) -> dict[str, frozenset[str]]:
    data = json.loads(raw)
    return {str(t): frozenset(str(r) for r in rs) for t, rs in data.items()}


def check_user_id(user_id: str) -> str:
    if not USER_ID.match(user_id):
        raise IdentityError(
            "a user id is 1-64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return user_id


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise IdentityError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise IdentityError(f"the password is too long: at most {MAX_PASSWORD} characters")
    return password


def digest(secret: str) -> str:
    """SHA-256 hex of a session id or token: what is stored and looked up."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated user of a request. Pass :attr:`by` as the audit trail's ``by``."""

    user_id: str
    display_name: str
    roles: Roles
    via: Literal["session", "token"]
    token_id: str | None = None

    @property
    def by(self) -> str:
        return self.user_id

    def may(self, role: str, tenant: str | None) -> bool:
        return grants(self.roles, role, tenant)

    def tenants(self, role: str, known: Iterable[str]) -> list[str]:
        """Those of ``known`` tenants where this identity holds ``role``."""
        return [t for t in known if self.may(role, t)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user_id,
            "name": self.display_name,
            "roles": {t: sorted(r) for t, r in sorted(self.roles.items())},
            "via": self.via,
        }


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    display_name: str
    password_hash: str
    roles: dict[str, frozenset[str]]
    epoch: int


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str  # the cookie's value (only in the answer to a login)
    csrf: str
    user_id: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    user_id: str
    name: str
    created_at: str
    expires_at: str
    revoked_at: str | None = None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def default_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106's second recommendation)."""
    return PasswordHasher()


@dataclass
class IdentityStore:
    """Users, sessions and tokens in Redis."""

    redis: Redis
    hasher: PasswordHasher = field(default_factory=default_hasher)
    keys: RedisKeys = KEYS
    _dummy_hash: str | None = None

    # --- passwords (in a worker thread: argon2 takes tens of milliseconds on purpose) ---

    async def hash_password(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.get_running_loop().run_in_executor(None, verify)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash_password(secrets.token_urlsafe(16))
        return self._dummy_hash

    # --- users ---

    async def user(self, user_id: str) -> User | None:
        if not USER_ID.match(user_id):
            return None
        raw = _fields(await self.redis.hgetall(self.keys.web_user(user_id)))
        if not raw.get("password"):
            return None
        return User(
            user_id,
            raw.get("name", user_id),
            raw["password"],
            roles_from_json(raw.get("roles", "{}")),
            int(raw.get("epoch", "0")),
        )

    async def user_ids(self) -> list[str]:
        return sorted(_text(u) for u in await self.redis.smembers(self.keys.web_users()))

    async def add_user(
        self, user_id: str, display_name: str, password: str, roles: Roles, now: datetime
    ) -> None:
        check_user_id(user_id)
        check_password(password)
        name = display_name.strip() or user_id
        if len(name) > MAX_NAME or any(not c.isprintable() for c in name):
            raise IdentityError(f"the display name is printable text of at most {MAX_NAME} characters")
        password_hash = await self.hash_password(password)
        mapping: dict[Any, Any] = {
            "name": name,
            "password": password_hash,
            "roles": roles_json(roles),
            "epoch": "0",
            "created_at": now.isoformat(),
        }
        created = await self.redis.hsetnx(self.keys.web_user(user_id), "password", password_hash)
        if not created:
            raise IdentityError(f"user {user_id} exists already (change it with passwd or roles)")
        await self.redis.hset(self.keys.web_user(user_id), mapping=mapping)
        await self.redis.sadd(self.keys.web_users(), user_id)

    async def set_password(self, user_id: str, password: str) -> None:
        """A new password; the user's sessions end (their epoch no longer matches)."""
        check_password(password)
        if await self.user(user_id) is None:
            raise IdentityError(f"no user {user_id}")
        password_hash = await self.hash_password(password)
        await self.redis.hset(self.keys.web_user(user_id), "password", password_hash)
        await self.redis.hincrby(self.keys.web_user(user_id), "epoch", 1)

    async def set_roles(self, user_id: str, roles: Roles) -> None:
        if await self.user(user_id) is None:
            raise IdentityError(f"no user {user_id}")
        await self.redis.hset(self.keys.web_user(user_id), "roles", roles_json(roles))

    async def remove_user(self, user_id: str) -> None:
        """Remove a user: their sessions and tokens stop working at once (they find no user)."""
        if await self.user(user_id) is None:
            raise IdentityError(f"no user {user_id}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.web_user(user_id))
            pipe.srem(self.keys.web_users(), user_id)
            await pipe.execute()

    async def authenticate(self, user_id: str, password: str) -> User | None:
        """The user if the password is theirs; None otherwise. An unknown user costs the same
        argon2 work as a wrong password, so the time taken does not tell which."""
        user = await self.user(user_id) if len(password) <= MAX_PASSWORD else None
        if user is None:
            await self._verify(await self._dummy(), password[:MAX_PASSWORD])
            return None
        if not await self._verify(user.password_hash, password):
            return None
        if self.hasher.check_needs_rehash(user.password_hash):
            await self.redis.hset(self.keys.web_user(user_id), "password", await self.hash_password(password))
        return user

    # --- sessions ---

    async def create_session(self, user: User, now: datetime, idle_s: float, absolute_s: float) -> Session:
        session_id = secrets.token_urlsafe(32)  # 256 bits
        csrf = secrets.token_urlsafe(32)
        key = self.keys.web_session(digest(session_id))
        absolute_at = now.timestamp() + absolute_s
        mapping: dict[Any, Any] = {
            "user": user.user_id,
            "epoch": str(user.epoch),
            "csrf": csrf,
            "created_at": str(now.timestamp()),
            "absolute_at": str(absolute_at),
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.pexpire(key, int(min(idle_s, absolute_s) * 1000))
            await pipe.execute()
        return Session(session_id, csrf, user.user_id)

    async def session(self, session_id: str, now: datetime, idle_s: float) -> tuple[Session, User] | None:
        """The live session and its user, its idle expiry renewed (never past its absolute end)."""
        if not session_id or len(session_id) > 128:
            return None
        key = self.keys.web_session(digest(session_id))
        raw = _fields(await self.redis.hgetall(key))
        if not raw.get("user"):
            return None
        remaining = float(raw.get("absolute_at", "0")) - now.timestamp()
        user = await self.user(raw["user"])
        if remaining <= 0 or user is None or str(user.epoch) != raw.get("epoch"):
            await self.redis.delete(key)
            return None
        await self.redis.pexpire(key, max(1, int(min(idle_s, remaining) * 1000)))
        return Session(session_id, raw.get("csrf", ""), user.user_id), user

    async def end_session(self, session_id: str) -> None:
        await self.redis.delete(self.keys.web_session(digest(session_id)))

    # --- API tokens ---

    async def create_token(
        self, user_id: str, name: str, now: datetime, lifetime: timedelta
    ) -> tuple[str, TokenInfo]:
        """A new token for ``user_id``: (the token, shown once and stored nowhere; its record)."""
        if await self.user(user_id) is None:
            raise IdentityError(f"no user {user_id}")
        name = name.strip()
        if not name or len(name) > MAX_NAME or any(not c.isprintable() for c in name):
            raise IdentityError(f"name the token (printable text, at most {MAX_NAME} characters)")
        if lifetime <= timedelta(0):
            raise IdentityError("a token's lifetime must be positive")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits
        token_id = secrets.token_hex(6)
        info = TokenInfo(token_id, user_id, name, now.isoformat(), (now + lifetime).isoformat())
        key = self.keys.web_token(digest(token))
        mapping: dict[Any, Any] = {
            "id": token_id,
            "user": user_id,
            "name": name,
            "created_at": info.created_at,
            "expires_at": info.expires_at,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.pexpire(key, int(lifetime.total_seconds() * 1000))
            pipe.hset(self.keys.web_token_ids(), token_id, digest(token))
            await pipe.execute()
        return token, info

    async def token_identity(self, token: str, now: datetime) -> Identity | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        raw = _fields(await self.redis.hgetall(self.keys.web_token(digest(token))))
        if not raw.get("user") or raw.get("revoked_at"):
            return None
        if datetime.fromisoformat(raw["expires_at"]) <= now:
            return None
        user = await self.user(raw["user"])
        if user is None:
            return None
        return Identity(user.user_id, user.display_name, user.roles, "token", raw.get("id"))

    async def revoke_token(self, token_id: str, now: datetime) -> TokenInfo:
        token_digest = await self.redis.hget(self.keys.web_token_ids(), token_id)
        if token_digest is None:
            raise IdentityError(f"no token {token_id}")
        key = self.keys.web_token(_text(token_digest))
        await self.redis.hset(key, "revoked_at", now.isoformat())
        info = await self._token_info(key)
        if info is None:
            raise IdentityError(f"token {token_id} has expired already")
        return info

    async def _token_info(self, key: str) -> TokenInfo | None:
        raw = _fields(await self.redis.hgetall(key))
        if not raw.get("id") or not raw.get("user"):
            return None
        return TokenInfo(
            raw["id"],
            raw["user"],
            raw.get("name", ""),
            raw.get("created_at", ""),
            raw.get("expires_at", ""),
            raw.get("revoked_at"),
        )

    async def tokens(self) -> list[TokenInfo]:
        """Every token not yet expired (revoked ones included, marked)."""
        found = []
        for token_id, token_digest in (await self.redis.hgetall(self.keys.web_token_ids())).items():
            info = await self._token_info(self.keys.web_token(_text(token_digest)))
            if info is None:
                await self.redis.hdel(self.keys.web_token_ids(), token_id)
            else:
                found.append(info)
        return sorted(found, key=lambda t: (t.user_id, t.created_at))

    # --- failed logins ---

    async def failures(self, kind: str, subject: str) -> tuple[int, int]:
        """(failed logins in the window, milliseconds until the window ends)."""
        key = self.keys.web_login_failures(kind, subject)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            count, ttl = await pipe.execute()
        return int(count or 0), max(int(ttl), 0)

    async def count_failure(self, kind: str, subject: str, window_s: int) -> None:
        key = self.keys.web_login_failures(kind, subject)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s, nx=True)
            await pipe.execute()

    async def clear_failures(self, kind: str, subject: str) -> None:
        await self.redis.delete(self.keys.web_login_failures(kind, subject))
