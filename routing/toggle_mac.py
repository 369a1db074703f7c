"""Toggle integrity: every stored toggle carries an HMAC-SHA256 that controllers check.

A toggle is stored as JSON under ``toggle:{kind}:{tenant}``. The writer (the supervisors'
service, or ``callrouter toggle`` on its host) adds ``kid`` (which key signed it) and ``mac``:
HMAC-SHA256 over the canonical serialisation of *every other field* of the stored value plus
the Redis key it is stored under. So a raw ``SET`` without the key cannot make a toggle, a
field changed by hand (a later expiry, another reason) breaks the MAC, and a valid toggle
copied to another tenant or kind does not verify there. ``since`` and ``expires_at`` are
covered too: a replayed old toggle ends at its signed expiry, at most 14 days after it was
signed (``docs/security.md``).

The key file holds one key per line (at least 32 characters each, e.g. ``openssl rand -hex
32``): the first signs, and every line (at most two: current and previous) verifies, so the
key can be rotated without a moment in which the controllers ignore the toggles in force. A
key's id is derived from the key itself, so the file holds nothing but keys. The file must
be readable by its owner only; the keys never appear in ``repr()`` or the logs.

Pure apart from :func:`load_keyring` (reads the file) and :func:`write_key_file`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

MAX_LIFETIME = timedelta(days=14)  # the longest a toggle may last from when it was signed
MIN_KEY_CHARS = 32
MAX_KEYS = 2  # the current key and the previous one, while a rotation is under way
MAX_STORED = 4096  # bytes: a stored toggle is a few hundred; anything longer is not one of ours
_KID_LABEL = b"callrouter toggle key id"


class ToggleKeyError(ValueError):
    """The key file cannot be used; the message says why (never the key)."""


class ToggleRejected(ValueError):
    """A stored toggle that must not be obeyed; ``reason`` is one short word for the logs."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def key_id(secret: bytes) -> str:
    """The public id of a key (12 hex digits), derived from it without revealing it."""
    return hmac.new(secret, _KID_LABEL, hashlib.sha256).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ToggleKeyring:
    """The signing key and the keys accepted when verifying (current first)."""

    secret_keys: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.secret_keys) <= MAX_KEYS:
            raise ToggleKeyError(f"give 1 or {MAX_KEYS} keys (current, then previous)")
        for number, secret in enumerate(self.secret_keys, 1):
            if len(secret) < MIN_KEY_CHARS:
                raise ToggleKeyError(f"key {number} is shorter than {MIN_KEY_CHARS} characters")

    def __repr__(self) -> str:
        return f"ToggleKeyring(kids={self.kids})"

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(key_id(s) for s in self.secret_keys)

    @property
    def current_kid(self) -> str:
        return key_id(self.secret_keys[0])

    def secret_for(self, kid: str) -> bytes | None:
        return next((s for s in self.secret_keys if hmac.compare_digest(key_id(s), kid)), None)


def keyring_from_text(text: str) -> ToggleKeyring:
    """A keyring from a key file's text: one key per line, blank lines and ``#`` comments skipped."""
    lines = [line.strip() for line in text.splitlines()]
    keys = tuple(line.encode("utf-8") for line in lines if line and not line.startswith("#"))
    if not keys:
        raise ToggleKeyError("it holds no key")
    return ToggleKeyring(keys)


def load_keyring(path: Path) -> ToggleKeyring:
    """The keyring in ``path``; :class:`ToggleKeyError` if it cannot be read, is readable or
    writable by the group or others, or holds no usable key."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ToggleKeyError(f"toggle key file {path}: not a regular file")
            if mode & 0o077:
                raise ToggleKeyError(
                    f"toggle key file {path}: readable or writable by others (mode "
                    f"{stat.S_IMODE(mode):04o}); make it the owner's only: chmod 600 {path}"
                )
            raw = handle.read(64 * 1024)
    except OSError as exc:
        raise ToggleKeyError(f"toggle key file {path}: {exc.strerror}") from None
    try:
        return keyring_from_text(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ToggleKeyError(f"toggle key file {path}: not text (UTF-8)") from None
    except ToggleKeyError as exc:
        raise ToggleKeyError(f"toggle key file {path}: {exc}") from None


def new_key() -> str:
    """A fresh key: 64 hex digits (256 bits)."""
    return secrets.token_hex(32)


def write_key_file(path: Path, *keys: str) -> Path:
    """Create ``path`` (mode 600, refusing to overwrite) holding ``keys`` or a fresh key."""
    text = "\n".join(keys or (new_key(),)) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def canonical(key_name: str, fields: Mapping[str, Any]) -> bytes:
    """The bytes the MAC covers: every field but ``mac``, and the Redis key, as sorted JSON."""
    body = {name: value for name, value in fields.items() if name != "mac"}
    message = {"key": key_name, "toggle": body}
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _mac(secret: bytes, key_name: str, fields: Mapping[str, Any]) -> str:
    return hmac.new(secret, canonical(key_name, fields), hashlib.sha256).hexdigest()


def sign(keyring: ToggleKeyring, key_name: str, fields: Mapping[str, Any]) -> str:
    """The stored JSON of ``fields`` with ``kid`` and ``mac`` added, for the key ``key_name``."""
    body = {**{k: v for k, v in fields.items() if k not in ("kid", "mac")}, "kid": keyring.current_kid}
    mac = _mac(keyring.secret_keys[0], key_name, body)
    return json.dumps({**body, "mac": mac}, separators=(",", ":"))


def verify(keyring: ToggleKeyring | None, key_name: str, raw: str | bytes) -> dict[str, Any]:
    """The fields of a stored toggle whose MAC verifies for ``key_name``, else
    :class:`ToggleRejected` with the reason: ``no_key`` (this process has no key),
    ``malformed``, ``unsigned``, ``unknown_key`` or ``bad_mac``."""
    if keyring is None:
        raise ToggleRejected("no_key", "no toggle key configured here: no toggle is obeyed")
    if len(raw) > MAX_STORED:
        raise ToggleRejected("malformed", f"{len(raw)} bytes long")
    try:
        fields = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ToggleRejected("malformed", "not JSON") from None
    if not isinstance(fields, dict):
        raise ToggleRejected("malformed", "not a JSON object")
    mac, kid = fields.get("mac"), fields.get("kid")
    if not isinstance(mac, str) or not isinstance(kid, str):
        raise ToggleRejected("unsigned", "no kid and mac")
    secret = keyring.secret_for(kid)
    if secret is None:
        raise ToggleRejected("unknown_key", "signed with a key this process does not have")
    if not hmac.compare_digest(_mac(secret, key_name, fields), mac):
        raise ToggleRejected("bad_mac", "the MAC does not verify for this key name")
    return fields
