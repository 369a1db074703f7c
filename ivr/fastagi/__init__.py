"""Our own FastAGI server: wire codec, typed channel API, asyncio server.

Public API::

    from ivr.fastagi import FastAgiServer, ServerConfig, AgiChannel, AgiRequest, AgiHangup

The names are imported lazily (PEP 562, :func:`__getattr__` below): ``import
ivr.fastagi.protocol`` (the classic AGI fallback script does, for the codec) does not pull in
asyncio, structlog or the server. Measured: importing them eagerly here makes every fail-static
call start ~45-50 ms later (the script's whole import, best of 15: 235-239 ms lazy, 278-289 ms
eager; ``benchmarks/fallback_bench.py``: median 237-251 ms against 294-347 ms), and the fallback
starts one process per call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.fastagi.channel import (
        AgiChannel,
        AgiCommandError,
        AgiError,
        AgiHangup,
        AgiTimeout,
    )
    from ivr.fastagi.protocol import AgiProtocolError, AgiReply, AgiRequest
    from ivr.fastagi.server import (
        FastAgiServer,
        Handler,
        ServerConfig,
        SessionCounters,
        serve_until_signal,
    )

_WHERE = {
    "AgiChannel": "channel",
    "AgiCommandError": "channel",
    "AgiError": "channel",
    "AgiHangup": "channel",
    "AgiTimeout": "channel",
    "AgiProtocolError": "protocol",
    "AgiReply": "protocol",
    "AgiRequest": "protocol",
    "FastAgiServer": "server",
    "Handler": "server",
    "ServerConfig": "server",
    "SessionCounters": "server",
    "serve_until_signal": "server",
}

__all__ = [
    "AgiChannel",
    "AgiCommandError",
    "AgiError",
    "AgiHangup",
    "AgiProtocolError",
    "AgiReply",
    "AgiRequest",
    "AgiTimeout",
    "FastAgiServer",
    "Handler",
    "ServerConfig",
    "SessionCounters",
    "serve_until_signal",
]


def __getattr__(name: str) -> object:  # the lazy import measured in the module docstring
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
