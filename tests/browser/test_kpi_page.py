"""Today's KPI page in a real browser: a viewer logs in, sees the tiles, the hour chart (under the
service's CSP, its image a data: URI) and the table beside it, and opens the full report; axe-core
finds nothing at WCAG 2.2 AA, the chart has its text alternative, and nothing breaks the CSP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from tests.support.browser import PageProblems, assert_no_axe_violations, screenshot, serving
from tests.support.redis_server import RedisServer
from tests.support.web import PASSWORD, add_user, store_for
from tests.web.records_rig import DAY, records_app, sample_records

BROWSER_DB = 13  # a database of the session's redis-server for this module alone, emptied per test
NOW = DAY + timedelta(hours=17)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    made = Redis(host=redis_server.host, port=redis_server.port, db=BROWSER_DB)
    await made.flushdb()
    yield made
    await made.aclose()


async def log_in(page: Page, base: str, user: str) -> None:
    await page.goto(f"{base}/login")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()


async def test_the_kpi_page_in_a_browser(
    chromium_page: Page, page_problems: PageProblems, browser_output_dir: Path, redis: Redis, tmp_path: Path
) -> None:
    await add_user(store_for(redis), "hview", {"harborough": {"viewer"}}, name="Harborough viewer")
    app = records_app(redis, tmp_path / "archive", sample_records(), clock=lambda: NOW)
    page = chromium_page
    async with serving(app) as base:
        await log_in(page, base, "hview")
        await page.wait_for_url(f"{base}/")
        # the login lands on the home page (/), another feature's, absent from this app: its 404
        # (and the favicon.ico the browser then asks for) are not this page's problems
        page_problems.console_errors.clear()
        await page.goto(f"{base}/tenants/harborough/kpis")
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Today's KPIs: Harborough District Council"
        )
        offered = page.locator("#kpi-offered .tile__figure--main dd")
        await expect(offered).to_have_text("6")
        chart = page.get_by_role("img", name="Bar chart of calls offered in each hour today", exact=False)
        await expect(chart).to_be_visible()
        assert await chart.evaluate("image => image.naturalWidth") > 0  # the data: image loaded under the CSP
        await page.get_by_text("The figures of the chart as a table").click()
        hours = page.get_by_role("table", name="Calls offered by hour, Monday 23 November 2026")
        await expect(hours.get_by_role("row", name="09:00–09:59 2")).to_be_visible()
        await screenshot(page, browser_output_dir, "kpis")
        await assert_no_axe_violations(page)
        await page.set_viewport_size({"width": 360, "height": 800})
        await screenshot(page, browser_output_dir, "kpis-narrow")
        await assert_no_axe_violations(page)
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await page_problems.assert_none(page)

        await page.set_viewport_size({"width": 1280, "height": 900})
        await page.get_by_label("First day").fill("2026-11-23")
        await page.get_by_role("button", name="Open the full report").click()
        await page.wait_for_url("**/tenants/harborough/report.html?**")
        await expect(page.locator("img").first).to_be_visible()
        assert await page.locator("img").first.evaluate("image => image.naturalWidth") > 0
        await screenshot(page, browser_output_dir, "report")
        await page_problems.assert_none(page)  # its own CSP lets its style block and images through
