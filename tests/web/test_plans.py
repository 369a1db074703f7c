"""Plans over HTTP against the real app and a real redis-server: who may publish and roll back,
every problem of a bad plan with its line, bounded bodies, publish → versions → preview → rollback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from routing import plan_store
from routing.core.problems import Problem as PlanProblem
from routing.plan_file import load_plan_text
from routing.redis_keys import KEYS
from tests.support.web import add_user, bearer, login, make_token
from web.identity import Identity, IdentityStore
from web.plans import may_publish, problem_line, touched_tenants

Client = TestClient[web.Request, web.Application]
EXAMPLE = (Path(__file__).parents[2] / "examples" / "plan.yaml").read_text()
# Harborough's weekday hours cut short: a change to harborough alone.
SHORT_DAY = EXAMPLE.replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-12:00"]', 1)
# Charnwood's name changed: a change to charnwood alone.
CHARNWOOD_RENAMED = EXAMPLE.replace('name: "Charnwood Borough Council"', 'name: "Charnwood BC"', 1)
# Two errors, one in each tenant.
TWO_ERRORS = EXAMPLE.replace('bank_holidays: "england-and-wales"', 'bank_holidays: "atlantis"')
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


async def _users(store: IdentityStore) -> dict[str, dict[str, str]]:
    roles: dict[str, dict[str, set[str]]] = {
        "chief": {"*": {"engineer"}},
        "harb": {"harborough": {"engineer"}},
        "both": {"harborough": {"engineer"}, "charnwood": {"engineer"}},
        "sup": {"harborough": {"supervisor"}, "charnwood": {"supervisor"}},
        "view": {"*": {"viewer"}},
    }
    headers = {}
    for user, held in roles.items():
        await add_user(store, user, held)
        headers[user] = bearer(await make_token(store, user))
    return headers


async def _publish(client: Client, headers: dict[str, str], text: str, comment: str = "change") -> Any:
    return await client.post("/api/v1/plans", json={"text": text, "comment": comment}, headers=headers)


async def _live_version(redis: Redis) -> int | None:
    live = await plan_store.live(redis)
    return live.version if live else None


# --- the pure rule ---------------------------------------------------------------------------------


def _plan(text: str) -> Any:
    result = load_plan_text(text)
    assert result.ok
    return result.plan


def test_touched_tenants_names_each_changed_tenant_and_star_beyond_them() -> None:
    example = _plan(EXAMPLE)
    assert touched_tenants(None, example) is None
    assert touched_tenants(example, _plan(EXAMPLE + "\n# a comment\n")) == frozenset()
    assert touched_tenants(example, _plan(SHORT_DAY)) == {"harborough"}
    assert touched_tenants(example, _plan(CHARNWOOD_RENAMED)) == {"charnwood"}
    renamed_centre = EXAMPLE.replace('name: "Charnwood Borough Council contact centre"', 'name: "CBC"', 1)
    assert touched_tenants(example, _plan(renamed_centre)) is None


# --- roles -------------------------------------------------------------------------------------------


async def test_viewers_supervisors_and_strangers_cannot_publish_or_read_plans(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = await _users(web_store)
    for user in ("view", "sup"):
        answer = await _publish(web_client, headers[user], EXAMPLE)
        assert answer.status == 403, user
        assert "not an engineer" in (await answer.json())["detail"]
        assert (await web_client.get("/api/v1/plans", headers=headers[user])).status == 403
    assert (await _publish(web_client, {}, EXAMPLE)).status == 401
    assert await _live_version(web_redis) is None


async def test_an_engineer_of_one_council_publishes_only_what_changes_that_council(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = await _users(web_store)
    first = await _publish(web_client, headers["harb"], EXAMPLE)  # the first plan touches all: needs *
    assert first.status == 403
    assert "engineer of *" in (await first.json())["detail"]
    assert (await _publish(web_client, headers["chief"], EXAMPLE, "first")).status == 201

    other = await _publish(web_client, headers["harb"], CHARNWOOD_RENAMED)
    assert other.status == 403
    assert "charnwood" in (await other.json())["detail"]
    assert await _live_version(web_redis) == 1

    own = await _publish(web_client, headers["harb"], SHORT_DAY, "short day")
    assert own.status == 201, await own.text()
    assert (await own.json())["touches"] == ["harborough"]
    assert await _live_version(web_redis) == 2
    # both councils' engineer may change both; rolling back needs an engineer of *
    assert (await _publish(web_client, headers["both"], CHARNWOOD_RENAMED)).status == 201
    for user in ("harb", "both"):
        refused = await web_client.post(
            "/api/v1/plans/1/rollback", json={"comment": "x"}, headers=headers[user]
        )
        assert refused.status == 403
    assert await _live_version(web_redis) == 3
    entries = await web_redis.xrange(KEYS.audit_stream())
    authors = [e[1][b"entry"] for e in entries]
    assert any(b'"by": "harb"' in a or b'"by":"harb"' in a for a in authors), authors


async def test_a_cookie_session_needs_the_csrf_token_to_publish(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    await add_user(web_store, "chief", {"*": {"engineer"}})
    csrf = await login(web_client, "chief")
    refused = await web_client.post("/api/v1/plans", json={"text": EXAMPLE, "comment": "first"})
    assert refused.status == 403
    assert await _live_version(web_redis) is None
    done = await web_client.post(
        "/api/v1/plans", json={"text": EXAMPLE, "comment": "first"}, headers={"X-CSRF-Token": csrf}
    )
    assert done.status == 201
    assert (await done.json())["live"]["version"] == 1


# --- bad plans and bad bodies ------------------------------------------------------------------------


async def test_a_plan_with_errors_lists_every_problem_with_its_line_and_nothing_is_published(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = await _users(web_store)
    expected_lines = [n for n, line in enumerate(TWO_ERRORS.splitlines(), 1) if '"atlantis"' in line]
    assert len(expected_lines) == 2

    checked = await web_client.post(
        "/api/v1/plans/validate", json={"text": TWO_ERRORS}, headers=headers["harb"]
    )
    assert checked.status == 200
    data = await checked.json()
    assert data["ok"] is False
    found = [(p["path"], p["line"]) for p in data["problems"] if p["severity"] == "error"]
    assert found == [
        ("tenants.harborough.bank_holidays", expected_lines[0]),
        ("tenants.charnwood.bank_holidays", expected_lines[1]),
    ]

    bodies = {
        "/api/v1/plans": {"text": TWO_ERRORS, "comment": "x"},
        "/api/v1/plans/preview": {"text": TWO_ERRORS},
    }
    for path, body in bodies.items():
        answer = await web_client.post(path, json=body, headers=headers["chief"])
        assert answer.status == 422, path
        assert answer.content_type == "application/problem+json"
        lines = [p["line"] for p in (await answer.json())["problems"]]
        assert lines == expected_lines, path
    assert await _live_version(web_redis) is None

    good = await web_client.post("/api/v1/plans/validate", json={"text": EXAMPLE}, headers=headers["harb"])
    assert (await good.json()) | {"problems": []} == {
        "ok": True,
        "tenants": ["charnwood", "harborough"],
        "problems": [],
    }


async def test_a_yaml_bomb_and_an_oversized_body_are_refused_fast_and_the_live_plan_stays(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = await _users(web_store)
    assert (await _publish(web_client, headers["chief"], EXAMPLE, "first")).status == 201
    started = time.monotonic()
    bomb = await _publish(web_client, headers["chief"], BOMB, "boom")
    assert bomb.status == 422
    problems = (await bomb.json())["problems"]
    assert any("billion laughs" in p["message"] for p in problems), problems
    big = await _publish(web_client, headers["chief"], EXAMPLE + "#" * 70_000, "too big")  # limit: 64 KB
    assert big.status == 413
    assert time.monotonic() - started < 2.0
    assert await _live_version(web_redis) == 1
    assert [v.number for v in await plan_store.versions(web_redis)] == [1]
    # a body that is not JSON, or has fields of the wrong kind
    wrong = await web_client.post("/api/v1/plans", data=EXAMPLE, headers=headers["chief"])
    assert wrong.status == 415
    typed = await web_client.post("/api/v1/plans", json={"text": 5, "comment": "x"}, headers=headers["chief"])
    assert typed.status == 422
    assert "text" in (await typed.json())["detail"]
    empty = await _publish(web_client, headers["chief"], SHORT_DAY, "")
    assert empty.status == 422
    assert "comment" in (await empty.json())["detail"]
    assert await _live_version(web_redis) == 1


# --- publish, versions, preview, rollback -----------------------------------------------------------


async def test_publish_then_versions_preview_diff_and_rollback(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = await _users(web_store)
    chief = headers["chief"]
    assert (await web_client.get("/api/v1/plans/live", headers=chief)).status == 404
    first = await _publish(web_client, chief, EXAMPLE, "first")
    assert first.status == 201
    assert first.headers["Location"] == "/api/v1/plans/1"
    same = await _publish(web_client, chief, EXAMPLE, "again")
    assert same.status == 200
    assert (await same.json())["changed"] is False
    assert "nothing published" in (await same.json())["message"]

    preview = await web_client.post(
        "/api/v1/plans/preview", json={"text": SHORT_DAY, "weeks": 2}, headers=headers["harb"]
    )
    assert preview.status == 200
    shown = await preview.json()
    assert shown["live_version"] == 1
    assert shown["changes"] > 0
    assert shown["touches"] == ["harborough"]
    assert shown["may_publish"] is True
    assert {d["old"].split(":")[0] for d in shown["differences"]} == {"open"}
    assert shown["timelines"]["harborough"]["changed"] is True
    assert shown["timelines"]["charnwood"]["changed"] is False
    assert (await web_redis.hlen(KEYS.plan_versions())) == 1  # a preview stores nothing

    assert (await _publish(web_client, chief, SHORT_DAY, "short Tuesday")).status == 201
    listed = await (await web_client.get("/api/v1/plans", headers=headers["harb"])).json()
    assert [(v["number"], v["author"], v["comment"], v["live"]) for v in listed["versions"]] == [
        (2, "chief", "short Tuesday", True),
        (1, "chief", "first", False),
    ]
    assert listed["versions"][1]["sha256"] == plan_store.sha256_text(EXAMPLE)
    one = await (await web_client.get("/api/v1/plans/1", headers=chief)).json()
    assert one["text"] == EXAMPLE
    assert one["live"] is False
    assert (await web_client.get("/api/v1/plans/9", headers=chief)).status == 404

    diff = await (await web_client.get("/api/v1/plans/2/diff?weeks=1", headers=chief)).json()
    assert diff["base_version"] == 1
    assert diff["changes"] > 0
    against_live = await (await web_client.get("/api/v1/plans/2/diff?against=live", headers=chief)).json()
    assert against_live["changes"] == 0

    no_comment = await web_client.post("/api/v1/plans/1/rollback", json={"comment": " "}, headers=chief)
    assert no_comment.status == 422
    missing = await web_client.post("/api/v1/plans/7/rollback", json={"comment": "x"}, headers=chief)
    assert missing.status == 404
    rolled = await web_client.post("/api/v1/plans/1/rollback", json={"comment": "back"}, headers=chief)
    assert rolled.status == 200
    assert (await rolled.json())["message"] == "rolled back from version 2 to version 1 (generation 3)"
    live = await (await web_client.get("/api/v1/plans/live", headers=chief)).json()
    assert (live["version"], live["generation"], live["text"]) == (1, 3, EXAMPLE)


def test_problem_lines_and_who_may_publish() -> None:
    assert problem_line(PlanProblem("a", "m", source="plan.yaml:42")) == 42
    assert problem_line(PlanProblem("a", "m")) is None
    harb = Identity("harb", "Harb", {"harborough": frozenset({"engineer"})}, "token")
    chief = Identity("chief", "Chief", {"*": frozenset({"engineer"})}, "token")
    assert may_publish(harb, frozenset({"harborough"})) == []
    assert may_publish(harb, frozenset({"harborough", "charnwood"})) == ["charnwood"]
    assert may_publish(harb, None) == ["*"]
    assert may_publish(chief, None) == []


async def test_concurrent_publishes_are_each_checked_against_the_plan_they_replace(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    """harb's plan keeps charnwood's old name: if both's rename lands first, harb's plan would
    undo it, so it needs charnwood too and is refused; if harb's lands first, both's plan
    (harborough's full day back) is checked against it and both holds both councils."""
    headers = await _users(web_store)
    assert (await _publish(web_client, headers["chief"], EXAMPLE, "first")).status == 201
    for _ in range(3):
        answers = await asyncio.gather(
            _publish(web_client, headers["harb"], SHORT_DAY, "short day"),
            _publish(web_client, headers["both"], CHARNWOOD_RENAMED, "rename"),
        )
        harb, both = answers[0].status, answers[1].status
        assert both == 201
        if harb == 201:  # harb's first: both's plan then changed harborough back as well
            assert (await answers[1].json())["touches"] == ["charnwood", "harborough"]
        else:
            assert harb == 403
            assert "charnwood" in (await answers[0].json())["detail"]
        # back to the first plan for the next round
        rolled = await web_client.post(
            "/api/v1/plans/1/rollback", json={"comment": "again"}, headers=headers["chief"]
        )
        assert rolled.status == 200
    texts = [(await plan_store.get(web_redis, v.number)) for v in await plan_store.versions(web_redis)]
    assert {t.text for t in texts if t is not None} <= {EXAMPLE, SHORT_DAY, CHARNWOOD_RENAMED}
