"""The JSON line rendered directly (``callrouter.logs.json_line``) is the line structlog's
processor chain renders: same keys, values, order, masking, level filtering and stream."""

from __future__ import annotations

import datetime
import io
import json
import logging
import random
import re
import time
from typing import Any

import pytest
import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, unbind_contextvars

from callrouter.logs import configure_logging, iso_timestamp, json_line
from tests.fastagi.conftest import reset_logging

TIMESTAMP = re.compile(r'"timestamp": ?"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z)"')


class Custom:
    def __structlog__(self) -> str:
        return "custom!"


class Opaque:
    def __repr__(self) -> str:
        return "<opaque ☎>"


CALL_CONTEXT = {
    "uniqueid": "1700000000.123",
    "channel": "PJSIP/sipp-00000001",
    "route": "route",
    "caller": "01632960123",
}

# (bound with structlog.contextvars, bound to the logger, event, fields)
EVENTS: list[tuple[dict[str, Any], dict[str, Any], str, dict[str, Any]]] = [
    ({}, {}, "plain", {}),
    (
        CALL_CONTEXT,
        {},
        "call.routed",
        {"outcome": "completed", "duration_ms": 1.234, "commands": 1, "missing_prompts": 0, "kind": "queue"},
    ),
    (
        {"callerid": 1632960123, "agi_callerid": "+441632960999"},
        {"caller_number": "07700900123", "tenant": "harborough"},
        "call.menu_done",
        {"caller": None, "digits": "", "ratio": 0.5, "flag": True, "nothing": None},
    ),
    (CALL_CONTEXT, {}, "call.odd", {"uniqueid": "given", "caller": "anonymous", "route": "menu"}),
    ({}, {"event": "bound", "level": "x"}, "named", {"timestamp": "mine", "level": "mine"}),
    (
        {"queue": "revenues ☎"},
        {},
        "unicode né €",
        {"text": 'é\u2028\x00 "quoted" \\ 𝄞', "nested": {"a": [1, None, "b"]}, "tuple": (1, 2)},
    ),
    ({}, {}, "big", {"count": 2**70, "negative": -(2**64)}),  # beyond 64 bits: the standard encoder
    ({}, {}, "keys", {"by_digit": {1: "one", None: "none"}}),  # keys that are not strings: the same
    (
        {"when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)},
        {},
        "objects",
        {"custom": Custom(), "opaque": Opaque(), "date": datetime.date(2026, 1, 2), "set": {1}},
    ),
]


@pytest.fixture
def stream(log_stream: io.StringIO) -> io.StringIO:
    """The JSON log stream of ``tests/fastagi/conftest.py``, at ``info``."""
    return log_stream


def chained(bound: dict[str, Any], level: int = logging.INFO) -> tuple[Any, io.StringIO]:
    """A logger of structlog's own class running the configured processor chain (the
    definition of the line), writing to a stream of its own."""
    out = io.StringIO()
    cls = structlog.make_filtering_bound_logger(level)
    processors = structlog.get_config()["processors"]
    return cls(structlog.WriteLogger(out), processors=processors, context=dict(bound)), out


def untimed(text: str) -> str:
    """The lines with each timestamp (checked to be ISO 8601 UTC) in place, as ``T``."""
    stamps = TIMESTAMP.findall(text)
    assert len(stamps) == text.count("\n")  # one per line
    for stamp in stamps:
        datetime.datetime.fromisoformat(stamp)
    return TIMESTAMP.sub(lambda match: match[0].replace(match[1], "T"), text)


@pytest.mark.parametrize(("bound_vars", "bound", "event", "fields"), EVENTS)
def test_the_direct_line_is_the_chains_line(
    stream: io.StringIO, bound_vars: dict[str, Any], bound: dict[str, Any], event: str, fields: dict[str, Any]
) -> None:
    with bound_contextvars(**bound_vars):
        direct = json_line(bound, "info", event, fields)
        structlog.get_logger("test").bind(**bound).info(event, **fields)  # the configured logger
        logger, chain_out = chained(bound)
        logger.info(event, **fields)
    assert direct is not None
    assert untimed(direct + "\n") == untimed(chain_out.getvalue())
    assert untimed(stream.getvalue()) == untimed(chain_out.getvalue())
    text = stream.getvalue()
    for number in ("01632960123", "1632960123", "441632960999", "07700900123"):
        assert number not in text


def test_every_level_and_alias_renders_the_chains_line(stream: io.StringIO) -> None:
    logger, chain_out = chained({})
    with bound_contextvars(caller="01632960123"):
        for log in (structlog.get_logger("test"), logger):
            log.info("i", n=1)
            log.msg("m", n=2)
            log.warning("w", n=3)
            log.warn("ww", n=4)
            log.error("e", n=5)
            log.critical("c", n=6)
            log.fatal("f", n=7)
            log.debug("hidden")  # below the level: nothing, both ways
    assert untimed(stream.getvalue()) == untimed(chain_out.getvalue())
    levels = [json.loads(line)["level"] for line in stream.getvalue().splitlines()]
    assert levels == ["info", "info", "warning", "warning", "error", "critical", "critical"]


def test_what_the_direct_path_leaves_to_the_chain_is_rendered_by_it(stream: io.StringIO) -> None:
    """A traceback to format, positional arguments to interpolate: the chain renders them."""
    logger, chain_out = chained({})
    for log in (structlog.get_logger("test"), logger):
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", caller="01632960123")
        log.info("count %d of %s", 3, "calls")
    assert untimed(stream.getvalue()) == untimed(chain_out.getvalue())
    failed, counted = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "ValueError: boom" in failed["exception"]
    assert failed["caller"] == "********123"
    assert counted["event"] == "count 3 of calls"
    assert json_line({}, "info", "x", {"exc_info": True}) is None
    assert json_line({}, "info", "x", {"stack_info": True}) is None
    with bound_contextvars(exc_info=True):
        assert json_line({}, "info", "x", {}) is None


def test_a_rendering_that_fails_directly_is_left_to_the_chain_and_written_once(stream: io.StringIO) -> None:
    class FailsOnce:
        calls = 0

        def __structlog__(self) -> str:
            FailsOnce.calls += 1
            if FailsOnce.calls == 1:
                raise RuntimeError("first rendering")
            return "rendered"

    class AlwaysFails:
        def __structlog__(self) -> str:
            raise RuntimeError("never renders")

    log = structlog.get_logger("test")
    log.info("flaky", value=FailsOnce())
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["value"] == "rendered"
    assert FailsOnce.calls == 2  # the direct path, then the chain
    with pytest.raises(RuntimeError, match="never renders"):  # as the chain alone always did
        log.info("broken", value=AlwaysFails())
    assert len(stream.getvalue().splitlines()) == 1  # nothing half-written


def test_context_variables_unbound_or_from_elsewhere_are_as_the_chain_has_them(stream: io.StringIO) -> None:
    bind_contextvars(uniqueid="1.2", caller="01632960123", extra="x")
    unbind_contextvars("extra")  # structlog marks it unbound (Ellipsis): not in the line
    try:
        structlog.get_logger("test").info("after.unbind")
        logger, chain_out = chained({})
        logger.info("after.unbind")
    finally:
        structlog.contextvars.clear_contextvars()
    assert untimed(stream.getvalue()) == untimed(chain_out.getvalue())
    assert "extra" not in stream.getvalue()


@pytest.mark.parametrize(("level", "written"), [("warning", ["w"]), ("debug", ["d", "i", "w"])])
def test_level_filtering_is_unchanged(level: str, written: list[str]) -> None:
    out = io.StringIO()
    configure_logging(json=True, level=level, stream=out)
    try:
        log = structlog.get_logger("test")
        log.debug("d")
        log.info("i")
        log.warning("w")
        logger, chain_out = chained({}, logging.getLevelNamesMapping()[level.upper()])
        logger.debug("d")
        logger.info("i")
        logger.warning("w")
    finally:
        reset_logging()
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == written
    assert untimed(out.getvalue()) == untimed(chain_out.getvalue())


def test_console_mode_keeps_structlogs_renderer() -> None:
    out = io.StringIO()
    configure_logging(json=False, level="info", stream=out)
    try:
        structlog.get_logger("test").info("call.routed", caller="01632960123", queue="revenues")
    finally:
        reset_logging()
    text = out.getvalue()
    assert "call.routed" in text
    assert "caller=********123" in text
    assert "queue=revenues" in text
    assert not text.startswith("{")


def test_a_swapped_chain_gets_the_events(stream: io.StringIO) -> None:
    """structlog.testing.capture_logs swaps the chain: the direct path steps aside."""
    with structlog.testing.capture_logs() as captured:
        structlog.get_logger("test").info("captured", caller="01632960123")
    assert captured == [{"event": "captured", "caller": "01632960123", "log_level": "info"}]
    assert stream.getvalue() == ""


def test_structlog_and_stdlib_lines_share_the_stream_in_order(stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    log.info("one")
    logging.getLogger("redis").warning("two")
    log.warning("three")
    logging.getLogger("aiohttp").error("four")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["one", "two", "three", "four"]


def stamper_at(now_ns: int) -> str:
    """What TimeStamper(fmt="iso", utc=True) writes at ``now_ns``: ``datetime.now(UTC)`` floors
    the system clock to microseconds."""
    seconds, nanoseconds = divmod(now_ns, 1_000_000_000)
    instant = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(microsecond=nanoseconds // 1000)
    return instant.isoformat().replace("+00:00", "Z")


def test_the_timestamp_is_the_stampers() -> None:
    second = 1_796_000_000 * 10**9  # 2026-11-30
    instants = [0, 999, 10**9 - 1, second, second + 999, second + 1000, second + 10**9 - 1]
    instants += [second + 10**9, 2**31 * 10**9, 4_102_444_800 * 10**9 - 1]  # 2038, the end of 2099
    rng = random.Random(20261130)
    instants += [rng.randrange(0, 4_102_444_800 * 10**9) for _ in range(2000)]
    instants += [second + rng.randrange(0, 10**9) for _ in range(2000)]  # within one second
    for now_ns in instants:
        assert iso_timestamp(now_ns) == stamper_at(now_ns), now_ns
    assert iso_timestamp(second) == "2026-11-30T00:53:20Z"  # no fraction at a whole second
    assert iso_timestamp(second + 5_000) == "2026-11-30T00:53:20.000005Z"


def test_the_timestamp_reads_the_stampers_clock() -> None:
    stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    for _ in range(100):
        before = iso_timestamp(time.time_ns())
        stamped = stamper(None, "info", {})["timestamp"]
        after = iso_timestamp(time.time_ns())
        parse = datetime.datetime.fromisoformat
        assert parse(before) <= parse(stamped) <= parse(after)
