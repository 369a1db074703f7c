"""Our own FastAGI server: wire codec, typed channel API, asyncio server.

Public API::

    from routing.fastagi import FastAgiServer, ServerConfig, AgiChannel, AgiRequest, AgiHangup
"""

from routing.fastagi.channel import (
    AgiChannel,
    AgiCommandError,
    AgiError,
    AgiHangup,
    AgiTimeout,
)
from routing.fastagi.protocol import AgiProtocolError, AgiReply, AgiRequest
from routing.fastagi.server import (
    FastAgiServer,
    Handler,
    ServerConfig,
    SessionCounters,
    serve_until_signal,
)

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
