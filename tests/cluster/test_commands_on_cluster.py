"""The other commands on a real Redis Cluster, chosen by the settings alone (``CALLROUTER_REDIS``
naming one node, ``CALLROUTER_REDIS_CLUSTER=true``): ``callrouter users`` adds a user and an API
token; a real ``callrouter web`` process takes a plan published with ``callrouter plan publish``
into the cluster and shows it in its live view (the live feed's reads); ``callrouter state
--direct`` reads the audit trail there. The settings refuse a cluster with sentinels or with
``wait_replicas``."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from callrouter.cli import main
from callrouter.redis_client import RedisTarget
from callrouter.settings import SettingsError, load
from routing import plan_store
from tests.cluster.conftest import cluster_client
from tests.controller.conftest import EXAMPLE
from tests.support.redis_cluster import RedisClusterSet
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
    with pytest.raises(SettingsError, match="wait_replicas with cluster: not supported"):
        load({}, {**env, "CALLROUTER_REDIS_WAIT_REPLICAS": "1"})
    with pytest.raises(ValueError, match="database 0 only"):
        RedisTarget("redis://10.0.0.1:7000/3", cluster=True)


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
        request = urllib.request.Request(
            base + "/api/v1/live", headers={"Authorization": f"Bearer {token.read_text().strip()}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # the live feed's reads
            tiles = json.loads(answer.read())["tiles"]
        assert tiles["feed"]["ok"] is True  # its one pipelined read of the centre's keys worked
        assert (tiles["plan"]["version"], tiles["plan"]["generation"]) == (1, 1)

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
