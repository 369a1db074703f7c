"""Our own FastAGI server: wire codec, typed channel API, asyncio server.

Public API::

    from ivr.fastagi import FastAgiServer, ServerConfig, AgiChannel, AgiRequest, AgiHangup

The names are imported lazily (PEP 562): ``import ivr.fastagi.protocol`` (the classic AGI
fallback script does) does not pull in asyncio, structlog or the server.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not imported from typing: that import alone costs ~2 ms
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


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
