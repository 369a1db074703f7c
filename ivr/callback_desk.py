"""Where the wait route reads the estimate's inputs and leaves callbacks (Redis in production).

:class:`RedisCallbackDesk` is a thin adapter: the queue's recent handle times (kept by the AMI
writer) and the callbacks that joined before the caller and are not being dialled
(:func:`routing.core.wait.callbacks_ahead`: they are answered first; one being dialled is in the
queue as its adviser leg, counted in the position), read in one round trip
(:class:`routing.callbacks.WaitInputsReader`), and
:func:`routing.callbacks.request_callback`. :class:`NoCallbackDesk`: no Redis: nothing is known
and no callback can be taken (the caller just keeps waiting)."""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

from routing.callbacks import WaitInputsReader, request_callback
from routing.core.callback import CallbackRequest
from routing.core.plan import CallbackPolicy
from routing.core.wait import callbacks_ahead
from routing.redis_keys import KEYS, RedisKeys


class CallbackDesk(Protocol):
    takes_callbacks: bool
    """False: no store behind it, so no callback is offered (the wait is still announced)."""

    async def wait_inputs(self, asterisk_queue: str, joined_at: float) -> tuple[list[float], int]:
        """The queue's recent handle times and how many callbacks count as callers ahead of
        one who joined at ``joined_at`` besides those in the queue (``callbacks_ahead``)."""
        ...

    async def request(
        self, req: CallbackRequest, policy: CallbackPolicy, now: float, asterisk_queue: str
    ) -> str:
        """Store the callback (idempotent per call); returns its id."""
        ...


class NoCallbackDesk:
    """No Redis: no handle times, no callbacks."""

    takes_callbacks = False

    async def wait_inputs(self, asterisk_queue: str, joined_at: float) -> tuple[list[float], int]:
        return [], 0

    async def request(
        self, req: CallbackRequest, policy: CallbackPolicy, now: float, asterisk_queue: str
    ) -> str:
        raise RuntimeError("no callback store: serve runs without Redis")


class RedisCallbackDesk:
    takes_callbacks = True

    def __init__(self, redis: Redis, keys: RedisKeys = KEYS) -> None:
        self.redis, self.keys = redis, keys
        self._inputs = WaitInputsReader(redis, keys)

    async def wait_inputs(self, asterisk_queue: str, joined_at: float) -> tuple[list[float], int]:
        found = await self._inputs.read(asterisk_queue)
        return found.handle_times, callbacks_ahead(found.held, joined_at)

    async def request(
        self, req: CallbackRequest, policy: CallbackPolicy, now: float, asterisk_queue: str
    ) -> str:
        return await request_callback(self.redis, self.keys, req, policy, now, asterisk_queue=asterisk_queue)
