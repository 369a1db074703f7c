"""AMI consumer settings, from the environment.

The secret comes from ``CALLROUTER_AMI_SECRET`` or from the file named by
``CALLROUTER_AMI_SECRET_FILE`` (a mounted secret); it is never part of ``repr()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "CALLROUTER_AMI_"


class SettingsError(ValueError):
    """A setting is missing or has a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class AmiSettings:
    """Where the AMI is, how to log in, and the consumer's timings (seconds)."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callrouter"
    secret: str = field(default="", repr=False)
    ping_interval_s: float = 5.0
    pong_deadline_s: float = 3.0
    reconcile_interval_s: float = 60.0
    stale_age_s: float = 30.0
    connect_timeout_s: float = 5.0
    login_timeout_s: float = 5.0
    action_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    # 3 s: the holder renews every 1 s and a standby tries as often, so a killed writer is
    # replaced within 3 + 1 s (the goal: 5 s; a 6 s lease allowed up to 8 s: docs/live-state.md)
    lease_ttl_s: float = 3.0
    queue_maxsize: int = 50_000
    batch_max: int = 2000
    centre: str = ""
    publish_queue: str = ""
    publish_interval_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AmiSettings:
        """``CALLROUTER_AMI_<FIELD>`` for each field (e.g. ``CALLROUTER_AMI_PING_INTERVAL_S``)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and f.name != "secret":
                values[f.name] = _cast(f.name, raw, _CASTS.get(str(f.type), str))
        return cls(**values, secret=load_secret(env))


def load_secret(env: Mapping[str, str]) -> str:
    """The AMI secret from ``CALLROUTER_AMI_SECRET`` or ``CALLROUTER_AMI_SECRET_FILE``."""
    if env.get(ENV_PREFIX + "SECRET"):
        return env[ENV_PREFIX + "SECRET"]
    path = env.get(ENV_PREFIX + "SECRET_FILE")
    if not path:
        raise SettingsError(f"set {ENV_PREFIX}SECRET or {ENV_PREFIX}SECRET_FILE")
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"{ENV_PREFIX}SECRET_FILE {path!r}: {exc.strerror}") from exc


_CASTS: dict[str, Callable[[str], Any]] = {"int": int, "float": float}


def _cast(name: str, raw: str, cast: Callable[[str], Any]) -> Any:
    try:
        return cast(raw)
    except ValueError:
        kind = getattr(cast, "__name__", "value")
        raise SettingsError(f"{ENV_PREFIX}{name.upper()} has value {raw!r}: not a valid {kind}") from None
