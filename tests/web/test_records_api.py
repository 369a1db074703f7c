"""The records API against a real Redis, the real app and an archive of real records: who may
read and change what, paging, the audited caller search, the disposition as a new version that
reaches the CRM, the report as ``callrouter report`` gives it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from redis.asyncio import Redis

from callrouter.cli import main
from emulator.crm import FakeCrm
from records.archive import Archive
from records.builder import caller_hash
from records.delivery import DeliveryWorker
from records.sinks import ArchiveSink, WebhookSink
from records.stream import parse_entry
from routing.masking import mask_number
from routing.redis_keys import KEYS
from tests.records.conftest import FAST, webhook_config
from tests.records.factory import record
from tests.records.support import KEY
from tests.support.web import add_user, bearer, login, make_token
from tests.web.records_rig import (
    CALLER,
    DAY,
    EXAMPLE_PLAN,
    audit_entries,
    raw_audit,
    records_app,
    sample_records,
    settled,
)
from web.identity import IdentityStore

Client = TestClient[web.Request, web.Application]
NOW = DAY + timedelta(hours=17)
RANGE = {"from": "2026-11-23", "to": "2026-11-23"}
HARBOROUGH = "/api/v1/tenants/harborough"


@pytest.fixture
async def client(web_redis: Redis, tmp_path: Path) -> AsyncIterator[Client]:
    app = records_app(web_redis, tmp_path / "archive", sample_records(), clock=lambda: NOW)
    async with TestClient(TestServer(app, host="127.0.0.1")) as made:
        yield made


async def token_of(store: IdentityStore, user: str, roles: dict[str, set[str]]) -> dict[str, str]:
    await add_user(store, user, roles)
    return bearer(await make_token(store, user))


async def ids(client: Client, headers: dict[str, str], **query: str) -> list[str]:
    answer = await client.get(f"{HARBOROUGH}/records", params={**RANGE, **query}, headers=headers)
    assert answer.status == 200, await answer.text()
    return [r["id"] for r in (await answer.json())["records"]]


# --- who may see what ---------------------------------------------------------------------------


async def test_unauthenticated_is_401(client: Client) -> None:
    for path in (f"{HARBOROUGH}/records", f"{HARBOROUGH}/report", "/tenants/harborough/report.html"):
        answer = await client.get(path, params=RANGE)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_viewer_sees_their_council_and_not_another(client: Client, web_store: IdentityStore) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    mine = await ids(client, viewer)
    assert len(mine) == 6
    other = await client.get("/api/v1/tenants/charnwood/records", params=RANGE, headers=viewer)
    assert other.status == 403
    assert "not a viewer of tenant charnwood" in (await other.json())["detail"]
    # charnwood's record through harborough's path: not found (each tenant reads its own folder)
    charnwood_id = next(r.id for r in sample_records() if r.tenant == "charnwood")
    through = await client.get(f"{HARBOROUGH}/records/{charnwood_id}", headers=viewer)
    assert through.status == 404
    report = await client.get("/api/v1/tenants/charnwood/report", params=RANGE, headers=viewer)
    assert report.status == 403


async def test_an_unknown_tenant_is_404_even_for_an_admin(client: Client, web_store: IdentityStore) -> None:
    admin = await token_of(web_store, "root", {"*": {"admin"}})
    answer = await client.get("/api/v1/tenants/nowhere/records", params=RANGE, headers=admin)
    assert answer.status == 404


async def test_the_api_never_shows_a_complete_caller_number(client: Client, web_store: IdentityStore) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    page = await client.get(f"{HARBOROUGH}/records", params=RANGE, headers=viewer)
    text = await page.text()
    assert CALLER not in text
    assert mask_number(CALLER) in text
    first = (await page.json())["records"][0]["id"]
    one = await client.get(f"{HARBOROUGH}/records/{first}", headers=viewer)
    body = await one.json()
    assert body["record"]["caller"]["number"] == mask_number(CALLER)
    [version] = body["versions"]
    assert version == {"version": 1, "updated_at": body["record"]["updated_at"], "disposition": "resolved"}


# --- paging, filters, bad input ------------------------------------------------------------------


async def test_pages_follow_the_cursor_in_arrival_order(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {**RANGE, "limit": "4", **({"cursor": cursor} if cursor else {})}
        answer = await client.get(f"{HARBOROUGH}/records", params=params, headers=viewer)
        body = await answer.json()
        seen += [r["id"] for r in body["records"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    expected = sorted((r for r in sample_records() if r.tenant == "harborough"), key=lambda r: r.arrived_at)
    assert seen == [r.id for r in expected]
    assert pages == 2
    audited = [(e["what"], e["page"]) for e in await audit_entries(web_redis)]
    assert audited == [("records.list", "next"), ("records.list", "first")]  # each page, newest first


async def test_filters_by_disposition(client: Client, web_store: IdentityStore) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    assert len(await ids(client, viewer, disposition="resolved")) == 1
    assert len(await ids(client, viewer, disposition="none")) == 5
    assert await ids(client, viewer, disposition="complaint") == []


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"from": "23/11/2026", "to": "2026-11-23"}, "from must be a date"),
        ({"from": "2026-11-23"}, "to is required"),
        ({"from": "2026-11-24", "to": "2026-11-23"}, "before from"),
        ({"from": "2025-01-01", "to": "2026-11-23"}, "at most 93 days"),
        ({**RANGE, "limit": "0"}, "limit must be"),
        ({**RANGE, "limit": "9999"}, "limit must be"),
        ({**RANGE, "disposition": "happy"}, "disposition must be one of"),
        ({**RANGE, "cursor": "not-a-cursor"}, "cursor is not one"),
    ],
)
async def test_bad_queries_get_a_clear_400(
    client: Client, web_store: IdentityStore, query: dict[str, str], words: str
) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    answer = await client.get(f"{HARBOROUGH}/records", params=query, headers=viewer)
    assert answer.status == 400
    assert answer.content_type == "application/problem+json"
    assert words in (await answer.json())["detail"]


async def test_an_unknown_record_is_404(client: Client, web_store: IdentityStore) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    for record_id in ("1764000000.9", "nonsense", "99999999999999999999.1"):
        answer = await client.get(f"{HARBOROUGH}/records/{record_id}", headers=viewer)
        assert answer.status == 404, record_id


async def test_a_record_id_is_a_linkedid_within_its_bounds(client: Client, web_store: IdentityStore) -> None:
    """``routing.core.linkedid``: the longest Linkedid Asterisk can make is looked for (and not
    found); one digit more, or a trailing newline, is not a record id at all."""
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    for record_id, words in (
        ("9" * 19 + "." + "9" * 10, "no record"),
        ("9" * 20 + ".1", "the call's Linkedid"),
        ("1795424400." + "1" * 11, "the call's Linkedid"),
        ("1795424400.1%0A", "the call's Linkedid"),
    ):
        answer = await client.get(f"{HARBOROUGH}/records/{record_id}", headers=viewer)
        assert answer.status == 404, record_id
        assert words in (await answer.json())["detail"], record_id


# --- the caller search --------------------------------------------------------------------------


async def test_a_caller_search_finds_their_calls_and_is_audited_without_the_number(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    found = await ids(client, viewer, caller=CALLER)
    mine = [r.id for r in sample_records() if r.tenant == "harborough" and r.caller.number == CALLER]
    assert found == mine
    entry = (await audit_entries(web_redis))[0]
    assert entry["what"] == "records.find"
    assert entry["by"] == "hview"
    assert entry["tenant"] == "harborough"
    assert entry["at"] == NOW.isoformat()
    # as `callrouter records find` audits it: the keyed hash and the masked number
    assert entry["caller_hash"] == caller_hash(KEY, CALLER)
    assert entry["caller"] == mask_number(CALLER)
    assert entry["page"] == "first"
    assert CALLER not in await raw_audit(web_redis)
    assert CALLER[1:] not in await raw_audit(web_redis)  # nor its national digits in another form


# --- the disposition -----------------------------------------------------------------------------


def target() -> str:
    """A harborough call with no disposition yet (the abandoned 09:30 one)."""
    return next(r.id for r in sample_records() if r.tenant == "harborough" and r.disposition is None)


async def stream_versions(redis: Redis, record_id: str) -> list[dict[str, Any]]:
    rows = await redis.xrange(KEYS.records_stream("charnwood"))
    envelopes = [parse_entry(sid, fields).envelope for sid, fields in rows]
    return [e.payload for e in envelopes if e.record_id == record_id]


async def test_a_supervisor_posts_a_disposition_and_version_2_is_in_the_stream(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    """No controller holds the call (no controller here): the service's archive consumer makes
    version 2 from the archived version 1; a second disposition waits until version 2 is
    archived (202 pending, never a 409)."""
    supervisor = await token_of(web_store, "hsup", {"harborough": {"supervisor"}})
    record_id = target()
    answer = await client.post(
        f"{HARBOROUGH}/records/{record_id}/disposition",
        json={"kind": "avoidable", "reason": "chasing-progress"},
        headers=supervisor,
    )
    assert answer.status == 202, await answer.text()
    body = await answer.json()
    assert (body["status"], body["record"], body["version"]) == ("pending", record_id, None)
    assert answer.headers["Location"] == f"{HARBOROUGH}/dispositions/{body['request']}"
    status = await settled(client, supervisor, answer.headers["Location"])
    assert (status["status"], status["version"], status["changed"]) == ("applied", 2, True)
    assert (status["kind"], status["reason"], status["by"], status["at"]) == (
        "avoidable", "chasing-progress", "hsup", "2026-11-23T17:00:00+00:00",
    )  # fmt: skip
    [payload] = await stream_versions(web_redis, record_id)
    assert payload["version"] == 2
    assert payload["disposition"]["by"] == "hsup"  # the authenticated identity, not a typed name
    whole = next(r.caller.number for r in sample_records() if r.id == record_id)
    assert payload["caller"]["number"] == whole  # the CRM's copy is whole
    entry = (await audit_entries(web_redis))[0]
    assert (entry["what"], entry["by"], entry["record"], entry["request"]) == (
        "records.disposition", "hsup", record_id, body["request"],
    )  # fmt: skip
    # posted again before the archive has version 2: accepted, and it waits for the archive
    again = await client.post(
        f"{HARBOROUGH}/records/{record_id}/disposition", json={"kind": "complaint"}, headers=supervisor
    )
    assert again.status == 202
    await asyncio.sleep(0.3)  # several rounds of the archive consumer
    waiting = await client.get(again.headers["Location"], headers=supervisor)
    assert (await waiting.json())["status"] == "pending"
    assert len(await stream_versions(web_redis, record_id)) == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kind": "happy"}, "kind"),
        ({"kind": "avoidable", "reason": "weather"}, "reason must be one of the tenant's list"),
        ({"kind": "avoidable"}, "reason must be one of"),
        ({"kind": "back_office"}, "back_office needs team"),
        ({"kind": "back_office", "team": "Council Tax <b>"}, "back_office needs team"),
        ({"kind": "resolved", "reason": "chasing-progress"}, "reason is only for avoidable"),
        ({"kind": "resolved", "by": "someone else"}, "Extra inputs are not permitted"),
    ],
)
async def test_an_invalid_disposition_is_422_and_changes_nothing(
    client: Client, web_store: IdentityStore, web_redis: Redis, body: dict[str, str], words: str
) -> None:
    supervisor = await token_of(web_store, "hsup", {"harborough": {"supervisor"}})
    answer = await client.post(f"{HARBOROUGH}/records/{target()}/disposition", json=body, headers=supervisor)
    assert answer.status == 422
    assert words in (await answer.json())["detail"]
    assert await stream_versions(web_redis, target()) == []


async def test_who_may_post_a_disposition(client: Client, web_store: IdentityStore, web_redis: Redis) -> None:
    path = f"{HARBOROUGH}/records/{target()}/disposition"
    resolved = {"kind": "resolved"}
    assert (await client.post(path, json=resolved)).status == 401
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    assert (await client.post(path, json=resolved, headers=viewer)).status == 403
    other = await token_of(web_store, "csup", {"charnwood": {"supervisor"}})
    assert (await client.post(path, json=resolved, headers=other)).status == 403
    supervisor = await token_of(web_store, "hsup", {"harborough": {"supervisor"}})
    unknown = f"{HARBOROUGH}/records/1764000000.9/disposition"
    assert (await client.post(unknown, json=resolved, headers=supervisor)).status == 404
    # a cookie session needs its CSRF token
    csrf = await login(client, "hsup")
    assert (await client.post(path, json=resolved)).status == 403
    answer = await client.post(path, json=resolved, headers={"X-CSRF-Token": csrf})
    assert answer.status == 202
    assert (await settled(client, supervisor, answer.headers["Location"]))["version"] == 2
    assert await stream_versions(web_redis, target()) != []


async def test_the_same_disposition_again_makes_no_version(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    supervisor = await token_of(web_store, "hsup", {"harborough": {"supervisor"}})
    held = next(r for r in sample_records() if r.disposition is not None)
    answer = await client.post(
        f"{HARBOROUGH}/records/{held.id}/disposition", json={"kind": "resolved"}, headers=supervisor
    )
    status = await settled(client, supervisor, answer.headers["Location"])
    assert (status["status"], status["version"], status["changed"]) == ("applied", 1, False)
    assert await stream_versions(web_redis, held.id) == []


async def test_the_new_version_reaches_the_crm_and_the_archive(
    client: Client, web_store: IdentityStore, web_redis: Redis, tmp_path: Path
) -> None:
    crm = FakeCrm(b"crm-secret")
    await crm.start()
    archive = Archive(tmp_path / "archive")
    sinks = {
        "harborough/crm": WebhookSink("harborough/crm", webhook_config(crm.url), b"crm-secret"),
        "harborough/_owner-archive": ArchiveSink("harborough", archive),
    }
    worker = DeliveryWorker(web_redis, "charnwood", sinks, policy=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        supervisor = await token_of(web_store, "hsup", {"harborough": {"supervisor"}})
        record_id = target()
        answer = await client.post(
            f"{HARBOROUGH}/records/{record_id}/disposition",
            json={"kind": "back_office", "team": "council-tax"},
            headers=supervisor,
        )
        assert answer.status == 202
        await crm.wait_for(1, timeout_s=10)
        assert crm.accepted == [(f"{record_id}:2", record_id, 2)]
        deadline = time.monotonic() + 10
        while True:  # the archive is written in the same batch, before the acknowledgement
            one = await client.get(f"{HARBOROUGH}/records/{record_id}", headers=supervisor)
            versions = (await one.json())["versions"]
            if len(versions) == 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert [v["disposition"] for v in versions] == [None, "back_office"]
        # now the archive has version 2, another disposition makes version 3
        third = await client.post(
            f"{HARBOROUGH}/records/{record_id}/disposition", json={"kind": "complaint"}, headers=supervisor
        )
        assert (await settled(client, supervisor, third.headers["Location"]))["version"] == 3
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await crm.stop()


# --- the report -----------------------------------------------------------------------------------


def cli_report(archive: Path, fmt: str = "json") -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["report", "--tenant", "harborough", "--from", "2026-11-23", "--to", "2026-11-23",
                     "--format", fmt, "--plan", str(EXAMPLE_PLAN), "--archive", str(archive), "--no-redis",
                     "--by", "tests"])  # fmt: skip
    assert code == 0
    return out.getvalue()


async def test_the_report_json_is_the_commands(
    client: Client, web_store: IdentityStore, tmp_path: Path
) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    answer = await client.get(f"{HARBOROUGH}/report", params={**RANGE, "period": "day"}, headers=viewer)
    assert answer.status == 200
    served = await answer.json()
    printed = json.loads(await asyncio.to_thread(cli_report, tmp_path / "archive"))
    assert served.pop("generated_at") == NOW.isoformat()
    printed.pop("generated_at")
    assert served == printed
    assert served["total"]["accessibility"]["offered"] == 6


async def test_a_report_range_and_period_are_checked(client: Client, web_store: IdentityStore) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    too_long = await client.get(
        f"{HARBOROUGH}/report", params={"from": "2024-01-01", "to": "2026-11-23"}, headers=viewer
    )
    assert too_long.status == 400
    assert "at most 366 days" in (await too_long.json())["detail"]
    period = await client.get(f"{HARBOROUGH}/report", params={**RANGE, "period": "year"}, headers=viewer)
    assert period.status == 400


async def test_the_html_report_renders_under_its_own_csp(client: Client, web_store: IdentityStore) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    answer = await client.get("/tenants/harborough/report.html", params=RANGE, headers=viewer)
    assert answer.status == 200
    assert answer.content_type == "text/html"
    html = await answer.text()
    csp = answer.headers["Content-Security-Policy"]
    assert "img-src data:" in csp
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    # the page's one style block is allowed by its hash, and nothing else is
    [style] = re.findall(r"<style>(.*?)</style>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert "<script" not in html
    assert html.count('src="data:image/png;base64,') >= 1
    assert "Harborough" in html
    assert CALLER not in html


async def test_reads_and_reports_are_audited(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    await client.get(f"{HARBOROUGH}/records", params=RANGE, headers=viewer)
    await client.get(f"{HARBOROUGH}/report", params=RANGE, headers=viewer)
    entries = await audit_entries(web_redis)
    assert [(e["what"], e["by"], e.get("format")) for e in entries[:2]] == [
        ("records.report", "hview", "json"), ("records.list", "hview", "api"),
    ]  # fmt: skip


async def test_without_an_archive_the_api_says_so(web_client: Client, web_store: IdentityStore) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    answer = await web_client.get(f"{HARBOROUGH}/records", params=RANGE, headers=viewer)
    assert answer.status == 503
    assert "records.archive_dir" in (await answer.json())["detail"]


async def test_answers_follow_the_openapi_document(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    """Each success answer against its schema in /api/openapi.json (the conformance run's
    generated tenants are mostly unknown, so its answers are mostly 404s)."""
    supervisor = await token_of(web_store, "hsup", {"harborough": {"supervisor"}})
    spec = await (await client.get("/api/openapi.json")).json()

    def check(name: str, body: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        Draft202012Validator(schema).validate(body)

    page = await client.get(f"{HARBOROUGH}/records", params={**RANGE, "limit": "2"}, headers=supervisor)
    check("RecordPage", await page.json())
    one = await client.get(f"{HARBOROUGH}/records/{target()}", headers=supervisor)
    check("RecordVersions", await one.json())
    posted = await client.post(
        f"{HARBOROUGH}/records/{target()}/disposition", json={"kind": "complaint"}, headers=supervisor
    )
    check("DispositionStatus", await posted.json())
    check("DispositionStatus", await settled(client, supervisor, posted.headers["Location"]))
    report = await client.get(f"{HARBOROUGH}/report", params={**RANGE, "period": "week"}, headers=supervisor)
    check("KpiReport", await report.json())
    example = spec["components"]["schemas"]["DispositionRequest"]["example"]
    check("DispositionRequest", example)
    operations = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if path.startswith(("/api/v1/tenants/{tenant}/re", "/tenants/{tenant}/report"))
    }
    assert len(operations) == 5  # and the disposition request's status:
    assert "get" in spec["paths"]["/api/v1/tenants/{tenant}/dispositions/{request_id}"]


# --- the KPI page ----------------------------------------------------------------------------------


async def test_the_kpi_page_shows_todays_figures(client: Client, web_store: IdentityStore) -> None:
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    answer = await client.get("/tenants/harborough/kpis", headers=viewer)
    assert answer.status == 200
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
    html = await answer.text()
    assert "<style" not in html
    assert " style=" not in html
    assert "<script>" not in html  # only the base template's script files
    assert "Monday 23 November 2026" in html
    tiles = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", html))
    assert tiles["Offered"] == "6"
    assert tiles["Answered"] == "4"
    assert tiles["Within 20 s"] == "3"
    assert tiles["Abandoned"] == "2"
    assert tiles["Resolved first time"] == "100.0 %"
    assert tiles["Good"] == "1"
    assert "Target met" in html
    assert 'src="data:image/png;base64,' in html
    assert 'alt="Bar chart of calls offered in each hour today' in html
    hours = dict(re.findall(r'<tr><th scope="row">(\d\d):00–\d\d:59</th><td>(\d+)</td></tr>', html))
    assert (hours["09"], hours["10"], hours["11"], hours["14"], hours["16"], hours["12"]) == (
        "2", "1", "1", "1", "1", "0",
    )  # fmt: skip
    assert 'action="/tenants/harborough/report.html"' in html


async def test_the_kpi_page_is_for_that_councils_viewers(client: Client, web_store: IdentityStore) -> None:
    assert (await client.get("/tenants/harborough/kpis")).status == 401
    other = await token_of(web_store, "cview", {"charnwood": {"viewer"}})
    assert (await client.get("/tenants/harborough/kpis", headers=other)).status == 403
    mine = await client.get("/tenants/charnwood/kpis", headers=other)
    assert mine.status == 200
    assert "Offered</dt><dd>2<" in await mine.text()


async def test_the_reports_page_lists_the_councils_the_user_may_see(
    client: Client, web_store: IdentityStore
) -> None:
    assert (await client.get("/reports")).status == 401
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    html = await (await client.get("/reports", headers=viewer)).text()
    assert re.findall(r'href="(/tenants/[^"]+)"', html) == ["/tenants/harborough/kpis"]
    nobody = await token_of(web_store, "nobody", {})
    html = await (await client.get("/reports", headers=nobody)).text()
    assert "not a viewer of any council" in html


async def test_an_archive_that_cannot_be_read_is_503(
    client: Client, web_store: IdentityStore, tmp_path: Path
) -> None:
    (tmp_path / "archive" / "harborough" / "2026-11-24.jsonl").mkdir()  # a day that cannot be read
    viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
    answer = await client.get(
        f"{HARBOROUGH}/records", params={"from": "2026-11-24", "to": "2026-11-24"}, headers=viewer
    )
    assert answer.status == 503
    assert (await answer.json())["detail"] == "the records archive cannot be read just now"


async def test_a_record_filed_the_day_after_its_linkedid_is_found(
    web_redis: Redis, web_store: IdentityStore, tmp_path: Path
) -> None:
    """A channel made a second before midnight UTC whose arrival was logged after it."""
    made = DAY + timedelta(days=1) - timedelta(seconds=1)
    late = record(f"{int(made.timestamp())}.7", made + timedelta(seconds=2))
    app = records_app(web_redis, tmp_path / "archive", [*sample_records(), late], clock=lambda: NOW)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
        answer = await client.get(f"{HARBOROUGH}/records/{late.id}", headers=viewer)
        assert answer.status == 200
        assert (await answer.json())["record"]["arrived_at"] == "2026-11-24T00:00:01Z"


async def test_records_from_asterisks_with_a_system_name_are_found_by_their_ids(
    web_redis: Redis, web_store: IdentityStore, tmp_path: Path
) -> None:
    """Two centres' Asterisks with ``systemname`` set made calls with the same
    ``<seconds>.<sequence>``: each record is found by its own id (``<systemname>-...`` in the URL
    path), both are listed, a disposition on one changes that one only; a name callrouter does
    not take is not a record id."""
    arrived = DAY + timedelta(hours=13)
    digits = f"{int(arrived.timestamp())}.7"
    ours = record(f"ast1.charnwood.example-{digits}", arrived, caller=CALLER)
    theirs = record(f"harborough-pbx_2-{digits}", arrived + timedelta(seconds=1), caller=CALLER)
    app = records_app(web_redis, tmp_path / "archive", [*sample_records(), ours, theirs], clock=lambda: NOW)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        viewer = await token_of(web_store, "hview", {"harborough": {"viewer"}})
        for made in (ours, theirs):
            answer = await client.get(f"{HARBOROUGH}/records/{made.id}", headers=viewer)
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["record"]["id"] == made.id
        listed = await ids(client, viewer)
        assert listed.index(ours.id) + 1 == listed.index(theirs.id)  # in arrival order
        paged: list[str] = []  # one a page: each cursor carries the last record's id, named or not
        cursor: str | None = ""
        while cursor is not None:
            query = {**RANGE, "limit": "1", **({"cursor": cursor} if cursor else {})}
            page = await (await client.get(f"{HARBOROUGH}/records", params=query, headers=viewer)).json()
            paged += [r["id"] for r in page["records"]]
            cursor = page["next_cursor"]
        assert paged == listed
        for record_id in ("ast%201-" + digits, "..-" + digits, "x" * 65 + "-" + digits, f"ast1-{digits}"):
            answer = await client.get(f"{HARBOROUGH}/records/{record_id}", headers=viewer)
            assert answer.status == 404, record_id
        supervisor = await token_of(web_store, "hsup", {"harborough": {"supervisor"}})
        posted = await client.post(
            f"{HARBOROUGH}/records/{theirs.id}/disposition", json={"kind": "complaint"}, headers=supervisor
        )
        assert posted.status == 202, await posted.text()
        status = await settled(client, supervisor, posted.headers["Location"])
        assert (status["status"], status["record"], status["version"]) == ("applied", theirs.id, 2)
        [payload] = await stream_versions(web_redis, theirs.id)
        assert (payload["id"], payload["disposition"]["kind"]) == (theirs.id, "complaint")
        assert await stream_versions(web_redis, ours.id) == []
