"""``callrouter callbacks list|cancel`` as a client of a real ``callrouter web`` process, and
``--direct`` on Redis (the administrators' break-glass path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from routing.callbacks import load_callback
from routing.redis_keys import KEYS
from tests.support.redis_server import RedisServer
from tests.support.toggle_keys import key_file
from tests.support.web import add_user, make_token
from tests.web.conftest import WEB_DB
from tests.web.test_callbacks_api import callback
from tests.web.test_toggle_cli import callrouter_web, cli
from tests.web.test_toggles import ROLES, publish_plan
from web.identity import IdentityStore


async def test_list_and_cancel_through_the_service_then_direct(
    *,
    web_redis: Redis,
    web_store: IdentityStore,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await publish_plan(web_redis)
    await add_user(web_store, "sup", ROLES["sup"])
    await add_user(web_store, "viewer", ROLES["viewer"])
    first = await callback(web_redis, "rec-1", joined_ago=600)
    second = await callback(web_redis, "rec-2", joined_ago=60)
    token_file = tmp_path / "token"
    url = f"redis://{redis_server.host}:{redis_server.port}/{WEB_DB}"
    with callrouter_web(url, key_file(tmp_path), tmp_path / "web.log") as base:
        monkeypatch.delenv("CALLROUTER_REDIS", raising=False)  # the client needs no Redis
        monkeypatch.setenv("CALLROUTER_API_URL", base)
        monkeypatch.setenv("CALLROUTER_API_TOKEN_FILE", str(token_file))
        token_file.write_text(await make_token(web_store, "viewer") + "\n")
        assert await cli(["callbacks", "list", "harborough"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("Callbacks of harborough: 2 waiting\n")
        assert f"  {first} revenues #1 pending **********123 joined " in out
        assert "+441632960123" not in out  # masked
        cancel = ["callbacks", "cancel", "harborough", first, "--reason", "resident rang back"]
        assert await cli(cancel) == 2  # a viewer may not
        assert "refused (403)" in capsys.readouterr().err
        token_file.write_text(await make_token(web_store, "sup") + "\n")
        assert await cli([*cancel, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["was"] == "pending"
        assert await cli(cancel) == 2
        assert "refused (409)" in capsys.readouterr().err
        assert await cli([*cancel, "--by", "sam"]) == 2
        assert "--by is for --direct only" in capsys.readouterr().err
    stored = await load_callback(web_redis, KEYS, first)
    assert stored is not None
    assert (stored.state, stored.fields["cancelled_by"]) == ("cancelled", "sup")

    monkeypatch.setenv("CALLROUTER_REDIS", url)
    assert await cli(["callbacks", "list", "harborough", "--direct", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["callbacks"]] == [second]
    direct = ["callbacks", "cancel", "harborough", second, "--reason", "duplicate", "--direct"]
    assert await cli(direct) == 2
    assert "--direct needs --by" in capsys.readouterr().err
    assert await cli([*direct, "--by", "admin on call"]) == 0
    assert "cancelled (was pending); audited" in capsys.readouterr().out
    assert (
        await cli(["callbacks", "cancel", "harborough", "cb-nope", "--reason", "x", "--direct", "--by", "a"])
        == 2
    )
    assert "refused: no callback" in capsys.readouterr().err
