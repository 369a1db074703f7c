"""The other commands on a real Redis Cluster, chosen by the settings alone (``CALLROUTER_REDIS``
naming one node, ``CALLROUTER_REDIS_CLUSTER=true``): ``callrouter users`` adds a user and an API
token; a real ``callrouter web`` process takes a plan published with ``callrouter plan publish``
into the cluster and shows it in its live view (the live feed's reads); ``callrouter state
--direct`` reads the audit trail there. The settings refuse a cluster with sentinels or over a
unix socket."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from callrouter.cli import main
from callrouter.redis_client import ClusterUnavailable, RedisTarget, connect
from callrouter.service import rehearsal_clock
from callrouter.settings import SettingsError, load
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import place_call
from ivr.controller import Controller, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from routing import plan_store
from routing.live.source import CachedLiveSource
from routing.redis_keys import KEYS
from tests.cluster.conftest import cluster_client
from tests.controller.conftest import EXAMPLE, HARBOROUGH, TUESDAY_10AM
from tests.support.redis_cluster import RedisClusterSet
from tests.support.redis_server import free_port
from tests.support.web_process import running_web, user_token_file


def test_cluster_settings_and_their_errors() -> None:
    env = {"CALLROUTER_REDIS": "redis://10.0.0.1:7000/0", "CALLROUTER_REDIS_CLUSTER": "true",
           "CALLROUTER_REDIS_PASSWORD": "cluster secret"}  # fmt: skip
    target = load({}, env).redis_target()
    assert target.cluster
    assert target.describe() == "redis://10.0.0.1:7000/0 (cluster)"
    assert "cluster secret" not in repr(target) + target.describe()
    with pytest.raises(SettingsError, match="pick one"):
        load({}, {**env, "CALLROUTER_REDIS_SENTINELS": "10.0.0.2:26379"})
    with pytest.raises(SettingsError, match="reached over TCP"):
        load({}, {**env, "CALLROUTER_REDIS": "unix:///run/redis.sock"})
    with pytest.raises(ValueError, match="database 0 only"):
        RedisTarget("redis://10.0.0.1:7000/3", cluster=True)


def _live_tiles(base: str, token: Path) -> dict[str, Any]:
    """The live view's tiles once they show the published plan (the feed reads every 0.2 s and at
    each notice: the read just before the publish may still be the one shown), within 10 s."""
    request = urllib.request.Request(
        base + "/api/v1/live", headers={"Authorization": f"Bearer {token.read_text().strip()}"}
    )
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(request, timeout=10) as answer:
            tiles: dict[str, Any] = json.loads(answer.read())["tiles"]
        if tiles["plan"]["version"] is not None or time.monotonic() > deadline:
            return tiles
        time.sleep(0.1)


def test_users_web_plan_publish_and_state_on_the_cluster(
    cluster: RedisClusterSet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLROUTER_REDIS_CLUSTER", "true")
    monkeypatch.delenv("CALLROUTER_CONFIG", raising=False)
    token = user_token_file(cluster.url, tmp_path, "chief", ["*:engineer"])
    capsys.readouterr()
    env = {"CALLROUTER_REDIS_CLUSTER": "true", "CALLROUTER_PLAN": str(EXAMPLE)}
    with running_web(cluster.url, extra_env=env) as base:
        monkeypatch.setenv("CALLROUTER_API_URL", base)
        monkeypatch.setenv("CALLROUTER_API_TOKEN_FILE", str(token))
        assert main(["plan", "publish", str(EXAMPLE), "--comment", "first plan"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("published version 1 (generation 1), live at "), out + err
        tiles = _live_tiles(base, token)
        assert tiles["feed"]["ok"] is True  # its one pipelined read of the centre's keys worked
        assert (tiles["plan"]["version"], tiles["plan"]["generation"]) == (1, 1), tiles["plan"]

    async def live_version() -> int | None:
        redis = cluster_client(cluster)
        try:
            live = await plan_store.live(redis)
            return live.version if live else None
        finally:
            await redis.aclose()

    assert asyncio.run(live_version()) == 1
    monkeypatch.setenv("CALLROUTER_REDIS", cluster.url)
    assert main(["state", "--direct", "--plan", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "plan.publish" in out, out


async def _pipelined_get(redis: Redis) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get("x")
        await pipe.execute()


async def test_an_unreachable_cluster_is_a_redis_error_and_calls_still_route() -> None:
    """No node answers: every kind of use raises a RedisError (redis-py's own cluster client would
    raise RedisClusterException, which callers do not expect), and a controller on it routes on
    unknown live state, each call in bounded time."""
    target = RedisTarget(f"redis://127.0.0.1:{free_port()}/0", cluster=True)
    redis = connect(target, connect_timeout=0.3, timeout=0.3)
    try:
        with pytest.raises(ClusterUnavailable, match="Redis Cluster: Redis Cluster cannot be connected"):
            await redis.get("x")
        with pytest.raises(RedisError):
            await redis.pubsub().subscribe(KEYS.live_changed_channel())
        with pytest.raises(RedisError):
            await _pipelined_get(redis)
        holder = PlanHolder.load(EXAMPLE)
        live = CachedLiveSource(redis, lambda: holder.current, refresh_s=0.05, timeout_s=0.25)
        server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=10))
        Controller(holder, live, clock=rehearsal_clock(TUESDAY_10AM, 1.0)).register(server)
        await server.start()
        try:
            script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("1"), PressAfterPrompt("1")])
            started = time.monotonic()
            summary = (await place_call("127.0.0.1", server.port, script, deadline=10)).summary()
            assert "queue hdc-revenues" in summary, summary  # live state unknown: the plan's 'stay'
            assert time.monotonic() - started < 5
        finally:
            await server.drain(1)
    finally:
        await redis.aclose()


def test_a_command_on_an_unreachable_cluster_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLROUTER_REDIS_CLUSTER", "true")
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["state", "--direct", "--plan", str(EXAMPLE), "--redis", url]) == 3
    assert capsys.readouterr().err == f"callrouter: Redis at {url} did not answer: ClusterUnavailable\n"
