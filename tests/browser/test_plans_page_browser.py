"""The plans page in a real browser (Debian's chromium): an engineer signs in, uploads a changed
plan, sees the preview, publishes it after the confirmation step, and rolls back; axe-core finds
no WCAG 2.2 AA violation on any step. Screenshots in the test's output folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from routing import plan_store
from tests.support.browser import PageProblems, assert_no_axe_violations, screenshot, serving
from tests.support.redis_server import RedisServer
from tests.support.web import PASSWORD, add_user, store_for, web_test_app

BROWSER_DB = 14
EXAMPLE = (Path(__file__).parents[2] / "examples" / "plan.yaml").read_text()
SHORT_DAY = EXAMPLE.replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-12:00"]', 1)


@pytest.fixture
async def plans_redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis(host=redis_server.host, port=redis_server.port, db=BROWSER_DB)
    await redis.flushdb()
    yield redis
    await redis.aclose()


async def _checked(page: Page, out: Path, name: str) -> None:
    await assert_no_axe_violations(page)
    await screenshot(page, out, name)


async def test_an_engineer_uploads_previews_publishes_and_rolls_back_in_a_browser(
    chromium_page: Page,
    page_problems: PageProblems,
    browser_output_dir: Path,
    plans_redis: Redis,
    tmp_path: Path,
) -> None:
    page, out = chromium_page, browser_output_dir
    await add_user(store_for(plans_redis), "chief", {"*": {"engineer"}}, name="Chief Engineer")
    await plan_store.publish(plans_redis, EXAMPLE, "chief", "first plan", datetime.now(UTC))
    changed = tmp_path / "short-tuesday.yaml"
    changed.write_text(SHORT_DAY)
    app = web_test_app(plans_redis)
    async with serving(app) as base:
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        await page.goto(f"{base}/login")
        await page.get_by_label("User name").fill("chief")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{base}/")
        # Signing in lands on the home page (the user's councils); the sign-in page's own
        # console lines (its favicon.ico) are not this page's.
        page_problems.console_errors.clear()
        await page.goto(f"{base}/plans")
        await expect(page.locator("#live-summary")).to_contain_text("Version 1 is live (generation 1)")
        await _checked(page, out, "1-versions")

        await page.get_by_label("Plan file (YAML)").set_input_files(str(changed))
        await page.get_by_role("button", name="Check and preview").click()
        await expect(page.locator("#touches")).to_have_text("harborough")
        await expect(page.get_by_role("heading", name="Opening times of harborough change")).to_be_visible()
        assert await page.locator("#differences tbody tr").count() > 0
        await _checked(page, out, "2-preview")

        await page.get_by_label("Comment: why this change").fill("short Tuesday <b>trial</b>")
        await page.get_by_role("button", name="Continue to publish").click()
        await expect(page.get_by_role("heading", name="Publish this plan now?")).to_be_visible()
        await expect(page.locator(".confirm")).to_contain_text("short Tuesday <b>trial</b>")
        await _checked(page, out, "3-confirm-publish")
        await page.get_by_role("button", name="Publish").click()
        await expect(page.locator("#messages")).to_contain_text("Version 2 published")
        await expect(page.locator("#live-summary")).to_contain_text("Version 2 is live")
        await _checked(page, out, "4-published")

        await page.get_by_role("link", name="Roll back to version 1").click()
        await expect(page.get_by_role("heading", name="Against the live version 2")).to_be_visible()
        await page.get_by_label("Comment: why roll back").fill("back to the full day")
        await page.get_by_role("button", name="Roll back to version 1").click()
        await expect(page.get_by_role("heading", name="Roll back to version 1 now?")).to_be_visible()
        await _checked(page, out, "5-confirm-rollback")
        await page.get_by_role("button", name="Roll back to version 1").click()
        await expect(page.locator("#messages")).to_contain_text("Rolled back: version 1 is live again")
        await expect(page.locator("#version-1")).to_contain_text("Live")
        await _checked(page, out, "6-rolled-back")
        await page_problems.assert_none(page)
        assert missing == []
    live = await plan_store.live(plans_redis)
    assert live is not None
    assert (live.version, live.generation) == (1, 3)
    assert (out / "6-rolled-back.png").stat().st_size > 0
