"""structlog configuration: one JSON stream for structlog and stdlib logging.

Caller numbers are personal data: :func:`mask_number` keeps at most their last three digits and
:func:`mask_caller_fields` applies it to the keys in :data:`MASKED_KEYS` of every event, whether
the value was passed to the call or bound with ``structlog.contextvars``.

In JSON mode a structlog event is rendered by :func:`json_line`, which does in one function what
the processor chain does (the chain stays configured: for the stdlib's records, for an event the
direct path leaves to it, and as the definition the direct line is tested against)."""

from __future__ import annotations

import contextvars
import datetime
import functools
import json as json_module
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import orjson
import structlog
from structlog.contextvars import STRUCTLOG_KEY_PREFIX
from structlog.processors import add_log_level
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from routing.masking import mask_number

MASKED_KEYS = frozenset({"caller", "callerid", "caller_number", "agi_callerid"})
_MASKED_KEYS_ORDER = tuple(sorted(MASKED_KEYS))
_HANDLER_NAME = "callrouter.logs"


def mask_caller_fields(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask the values of ``caller``, ``callerid``, ``caller_number`` and
    ``agi_callerid`` in the event."""
    for key in _MASKED_KEYS_ORDER:
        value = event_dict.get(key)
        if value is not None:
            event_dict[key] = mask_number(value if type(value) is str else str(value))
    return event_dict


def _json_fallback(obj: object) -> object:
    """What structlog's JSONRenderer does with values json cannot encode."""
    to_structlog = getattr(obj, "__structlog__", None)
    return to_structlog() if to_structlog is not None else repr(obj)


_JSON = json_module.JSONEncoder(default=_json_fallback)


def _render_json(event_dict: object, **_dumps_kw: object) -> str:
    """The event as one JSON line. orjson renders an event ~10x faster than the standard
    encoder (~0.5 against ~5.7 us for a ``call.routed`` line, measured; every routed call logs
    one, ``docs/performance.md``); what orjson refuses (an integer beyond 64 bits, a key that is
    not a string) goes through the standard encoder, built once, as before."""
    try:
        return orjson.dumps(event_dict, default=_json_fallback).decode()
    except TypeError:
        return _JSON.encode(event_dict)


_LEVELS = ("debug", "info", "warning", "error", "critical")
_LEFT_TO_THE_CHAIN = ("stack_info", "exc_info")  # what StackInfoRenderer and format_exc_info act on
_PREFIX_LENGTH = len(STRUCTLOG_KEY_PREFIX)


def json_line(
    context: Mapping[str, Any], method: str, event: object, fields: Mapping[str, Any]
) -> str | None:
    """The line the JSON chain (:func:`_shared_processors`, then :func:`_render_json`) renders for
    ``log.info(event, **fields)`` (``method``: ``info``) of a bound logger with ``context``, key
    for key in the same order: the context, the fields, ``event``, then what each processor
    adds (the context variables not already there, ``level``, ``timestamp``), callers masked.
    Without the chain's machinery (the event copied at each step, the processors with nothing
    to do), it costs ~8 us a call's line where the chain costs ~13 us (``_direct_json_logger``).
    None for an event with a traceback or a stack to format (``exc_info``, ``stack_info``): the
    chain renders those."""
    event_dict = {**context, **fields}
    if event is not None:
        event_dict["event"] = event
    for var, value in contextvars.copy_context().items():  # merge_contextvars
        name = var.name
        if name.startswith(STRUCTLOG_KEY_PREFIX) and value is not Ellipsis:
            event_dict.setdefault(name[_PREFIX_LENGTH:], value)
    if _LEFT_TO_THE_CHAIN[0] in event_dict or _LEFT_TO_THE_CHAIN[1] in event_dict:
        return None
    add_log_level(None, method, event_dict)
    event_dict["timestamp"] = iso_timestamp(time.time_ns())
    mask_caller_fields(None, method, event_dict)
    return _render_json(event_dict)


def iso_timestamp(now_ns: int) -> str:
    """The instant ``now_ns`` (nanoseconds since the epoch) as the chain's ``TimeStamper(fmt="iso",
    utc=True)`` writes it: ``datetime.now(UTC).isoformat()`` with ``Z`` for ``+00:00`` (the
    microseconds floored, left out when they are zero). The second's part is made once a
    second: ~0.5 us a line against ~1.4 us (``timeit``)."""
    seconds, nanoseconds = divmod(now_ns, 1_000_000_000)
    micros = nanoseconds // 1000
    second = _iso_second(seconds)
    return f"{second}.{micros:06d}Z" if micros else f"{second}Z"


@functools.lru_cache(maxsize=4)
def _iso_second(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat().removesuffix("+00:00")


def _direct_json_logger(level: int, chain: list[Processor]) -> type[FilteringBoundLogger]:
    """structlog's filtering bound logger for ``level`` whose events, while the configured
    processors are ``chain`` (as they were given here), are rendered by :func:`json_line` and
    written straight to the logger.

    Measured: a call's line (``log.bind().info``, a route's fields, four context variables)
    costs ~8 us this way against ~13 us through the chain (CPU time, tight loop of 20,000); the
    route entry's session over the wire, 164 against 172 us of server CPU (125 against 133 us
    of user CPU; ``benchmarks.route_bench``, c=100, uvloop, medians of 16 and 12 interleaved
    rounds) and in-process 74-75 against 78-82 us (``benchmarks.route_inprocess_bench``):
    docs/performance.md, "The call's line rendered directly".

    Processors changed since (``structlog.testing.capture_logs`` changes the list in place)
    render the events themselves; so does the chain an event :func:`json_line` leaves to it,
    one with positional arguments to interpolate, one logged with ``log()`` or an async method,
    and one whose rendering raised here: the chain then renders it (or raises) as it always did,
    and the line is written once, after it is rendered."""
    base = structlog.make_filtering_bound_logger(level)
    levels = logging.getLevelNamesMapping()
    methods = {
        name: _direct_method(name, getattr(base, name), list(chain))
        for name in _LEVELS
        if levels[name.upper()] >= level  # the rest stay structlog's no-ops
    }
    aliases = {"msg": "info", "warn": "warning", "fatal": "critical"}  # as structlog's
    methods.update({alias: methods[name] for alias, name in aliases.items() if name in methods})
    return type(f"Direct{base.__name__}", (base,), methods)


def _direct_method(name: str, chained: Callable[..., Any], chain: list[Processor]) -> Callable[..., Any]:
    def method(self: Any, event: str, *args: Any, **fields: Any) -> Any:
        if not args and self._processors == chain:  # the same processors (compared by identity)
            try:
                line = json_line(self._context, name, event, fields)
            except Exception:  # the chain renders it (or raises) as it always did
                line = None
            if line is not None:
                return getattr(self._logger, name)(line)
        return chained(self, event, *args, **fields)

    method.__name__ = name
    return method


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_caller_fields,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]


def _renderer(json: bool) -> Processor:
    if json:
        return structlog.processors.JSONRenderer(serializer=_render_json)
    return structlog.dev.ConsoleRenderer(colors=False)


def _stdlib_handler(stream: TextIO, json: bool, level: int) -> logging.Handler:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(json)],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.setLevel(level)
    return handler


def _route_stdlib(stream: TextIO, json: bool, level: int) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(_stdlib_handler(stream, json, level))
    root.setLevel(level)


class _SharedWriter:
    """Logger factory handing out one :class:`structlog.WriteLogger` (structlog's factory
    builds a new one for every event of an unbound logger)."""

    def __init__(self, stream: TextIO) -> None:
        self._logger = structlog.WriteLogger(stream)

    def __call__(self, *_args: object) -> structlog.WriteLogger:
        return self._logger


def configure_logging(json: bool = True, level: str = "info", stream: TextIO = sys.stdout) -> None:
    """Configure structlog (``merge_contextvars`` first, caller masking, ISO timestamps, JSON
    lines) and route stdlib logging (redis, aiohttp, asyncio...) through the same processors
    to the same stream. Calling it again replaces the previous configuration."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    chain = [*_shared_processors(), _renderer(json)]
    wrapper = _direct_json_logger(numeric, chain) if json else structlog.make_filtering_bound_logger(numeric)
    structlog.configure(
        processors=chain,
        wrapper_class=wrapper,
        logger_factory=_SharedWriter(stream),
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    _route_stdlib(stream, json, numeric)
