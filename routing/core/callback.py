"""Queued callback: the request a caller leaves (pure data, no I/O).

A caller who takes the offer hangs up and keeps their place: the callback carries the
call's original queue join time, and the dialler serves callbacks and live callers of a
queue in that one order. Writers: the IVR (``request``); reader and dialler: the AMI lease
holder. Redis keys: ``routing.redis_keys.RedisKeys.callback*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CallbackState = Literal["pending", "dialling", "done", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """What the IVR hands over when a caller takes the offer."""

    tenant: str  # the dialled council (brand, number presented, language)
    queue: str  # the plan's queue name
    number: str  # E.164, complete: only the store, the dialler, the CRM and the export see it
    joined_at: float  # epoch seconds the call first joined the queue (its place in the order)
    requested_at: float  # epoch seconds the caller confirmed
    call_id: str  # the original call's record id: attempts and outcome are linked to it
    language: str  # the caller's language for the callback's prompts
