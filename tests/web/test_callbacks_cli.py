"""``callrouter callbacks list|cancel`` as a client of a real ``callrouter web`` process, and
``--direct`` on Redis (the administrators' break-glass path)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from records.dispositions import Request
from routing.callbacks import Attempt, claim, finish, load_callback
from routing.core.callback_order import Next
from routing.redis_keys import KEYS
from tests.controller.conftest import EXAMPLE
from tests.support.redis_server import RedisServer
from tests.support.toggle_keys import key_file
from tests.support.web import add_user, make_token
from tests.web.conftest import WEB_DB
from tests.web.records_rig import example_plan
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


async def test_a_direct_cancel_goes_to_the_calls_record_as_the_services_does(
    *,
    web_redis: Redis,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Where contact records are kept (here ``records.archive_dir``), ``--direct`` puts the cancel
    into the call's record by the same request as the web service's cancel: on the centre's
    dispositions stream (the centre from ``--plan``), ``callback-<id>``, ``outcome: cancelled``
    with the attempts so far. Without a plan it says the cancel is not in the record (the
    cancel stands); where no records are kept it sends nothing."""
    monkeypatch.setenv("CALLROUTER_REDIS", f"redis://{redis_server.host}:{redis_server.port}/{WEB_DB}")
    monkeypatch.delenv("CALLROUTER_PLAN", raising=False)
    monkeypatch.delenv("CALLROUTER_RECORDS_ARCHIVE_DIR", raising=False)
    monkeypatch.delenv("CALLROUTER_RECORDS_CALLER_HASH_KEY", raising=False)
    stream = KEYS.record_dispositions(example_plan().centre)
    recorded = await callback(web_redis, "1795600000.42", joined_ago=600)
    await web_redis.set(KEYS.ami_writer_lease(), "ctl-a")
    assert await claim(web_redis, KEYS, recorded, "ctl-a", time.time()) == 1
    stored = await load_callback(web_redis, KEYS, recorded)
    assert stored is not None
    attempt = Attempt(1, time.time() - 60, time.time() - 30, "no-answer", "")
    retry = Next("pending", time.time() - 1, "", 1)
    assert await finish(web_redis, KEYS, stored, 1, attempt=attempt, nxt=retry, now=time.time()) == "ended"
    unplanned = await callback(web_redis, "1795600000.43", joined_ago=500)
    no_records = await callback(web_redis, "1795600000.44", joined_ago=400)

    def cancel(ident: str) -> list[str]:
        return [
            "callbacks",
            "cancel",
            "harborough",
            ident,
            "--reason",
            "rang back",
            "--direct",
            "--by",
            "admin",
        ]

    archive = ["--archive", str(tmp_path / "archive")]
    assert await cli([*cancel(recorded), *archive, "--plan", str(EXAMPLE), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recorded"] is True
    assert await cli([*cancel(unplanned), *archive]) == 0
    out, err = capsys.readouterr()
    assert "cancelled (was pending); audited" in out
    assert "not in the call's contact record: no plan" in err
    assert await cli([*cancel(no_records), "--plan", str(EXAMPLE)]) == 0
    assert capsys.readouterr().err == ""

    entries = await web_redis.xrange(stream)
    assert len(entries) == 1
    asked = Request.from_json(entries[0][1][b"q"])
    assert (asked.request_id, asked.record_id, asked.tenant, asked.kind) == (
        f"callback-{recorded}", "1795600000.42", "harborough", None
    )  # fmt: skip
    assert asked.callback is not None
    body = json.loads(asked.callback)
    assert body["outcome"] == "cancelled"
    assert [a["outcome"] for a in body["attempts"]] == ["no-answer"]
    for ident in (recorded, unplanned, no_records):
        found = await load_callback(web_redis, KEYS, ident)
        assert found is not None
        assert (found.state, found.outcome) == ("cancelled", "cancelled")
