"""Emergency cover in a real browser (Debian's chromium): a wrong password is refused; a
supervisor signs in, switches emergency cover on with a reason and an expiry through the
confirmation step, and the next call placed by the emulator on a controller reading the same
Redis with the same toggle key goes to emergency cover; then switches it off. A reason holding
``<script>`` is shown as text. axe-core finds no WCAG 2.2 AA violation on the emergency, the
confirmation and the audit pages. Screenshots in the test's output folder."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from routing.redis_keys import KEYS
from routing.supervisor import when
from tests.scenarios.test_toggles_and_outages import start_centre, stop_centre
from tests.support.browser import PageProblems, assert_no_axe_violations, screenshot, serving
from tests.support.redis_server import RedisServer
from tests.support.toggle_keys import KEYRING
from tests.support.web import PASSWORD, TEST_CONFIG, add_user, store_for, web_test_app
from tests.web.test_toggles import LONDON, publish_plan

EMERGENCY_DB = 15
REASON = "<script>alert('flood')</script> Flooding in Market Harborough"


@pytest.fixture
async def emergency_redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis(host=redis_server.host, port=redis_server.port, db=EMERGENCY_DB)
    await redis.flushdb()
    yield redis
    await redis.aclose()


async def _checked(page: Page, out: Path, name: str) -> None:
    await assert_no_axe_violations(page)
    await screenshot(page, out, name)


async def test_a_supervisor_switches_emergency_cover_on_and_off_in_a_browser(
    chromium_page: Page, page_problems: PageProblems, browser_output_dir: Path, emergency_redis: Redis
) -> None:
    page, out, redis = chromium_page, browser_output_dir, emergency_redis
    await add_user(store_for(redis), "spatel", {"harborough": {"supervisor"}}, name="S. Patel")
    await publish_plan(redis)
    centre, server, refresher = await start_centre(redis, KEYS)
    config = dataclasses.replace(TEST_CONFIG, toggle_keyring=KEYRING)
    app = web_test_app(redis, config=config, clock=lambda: centre.clock[0])
    try:
        async with serving(app) as base:
            missing: list[str] = []
            page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
            await page.goto(f"{base}/login")
            await page.get_by_label("User name").fill("spatel")
            await page.get_by_label("Password").fill("not the password at all")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password.")
            await screenshot(page, out, "0-wrong-password")

            await page.get_by_label("User name").fill("spatel")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_url(f"{base}/tenants/harborough/emergency")  # one council: straight there
            # The sign-in page's own console lines (the refused login's 401, its favicon.ico) are
            # the login feature's; from here on, no page may report any problem.
            page_problems.console_errors.clear()
            missing.clear()
            await expect(page.locator("#state-emergency")).to_contain_text("off")
            await _checked(page, out, "1-emergency-off")

            await page.get_by_label("Reason").fill(REASON)
            await page.get_by_label("Switch off automatically").fill("2h")
            await page.get_by_role("button", name="Switch on…").click()
            await expect(
                page.get_by_role("heading", name="Switch emergency cover on for harborough?")
            ).to_be_visible()
            until = when(centre.clock[0] + timedelta(hours=2), LONDON)
            await expect(page.locator(".confirm")).to_contain_text(
                f"Until{until}"
            )  # date and time, in the zone
            await expect(page.locator(".confirm")).to_contain_text(REASON)  # as text
            assert await redis.get(KEYS.toggle("emergency", "harborough")) is None  # nothing yet
            await _checked(page, out, "2-confirm-on")

            await page.get_by_role("button", name="Confirm: switch emergency cover on").click()
            await expect(page.locator("#messages")).to_contain_text(f"switched on until {until}, by spatel")
            await expect(page.locator("#state-emergency")).to_contain_text(REASON)
            await _checked(page, out, "3-emergency-on")
            async with asyncio.timeout(1.0):  # the next call goes to emergency cover
                while not (summary := await centre.call("1")).startswith("route (emergency)"):
                    await asyncio.sleep(0.02)
            assert summary.startswith("route (emergency) -> queue hdc-emergency")

            await page.get_by_label("Reason").fill("Water receded")
            await page.get_by_role("button", name="Switch off…").click()
            await expect(page.locator(".confirm")).to_contain_text(f"on until {until} (by spatel: {REASON})")
            await _checked(page, out, "4-confirm-off")
            await page.get_by_role("button", name="Confirm: switch emergency cover off").click()
            await expect(page.locator("#messages")).to_contain_text("switched off")
            await expect(page.locator("#state-emergency")).to_contain_text("off")
            async with asyncio.timeout(1.0):
                while not (summary := await centre.call("1")).startswith("route (open)"):
                    await asyncio.sleep(0.02)

            await page.get_by_role("link", name="Audit").click()
            await expect(page.locator("#audit tbody tr")).to_have_count(2)
            await expect(page.locator("#audit")).to_contain_text("Water receded")
            await expect(page.locator("#audit")).to_contain_text(REASON)
            await _checked(page, out, "5-audit")
            assert missing == []
            await page_problems.assert_none(page)  # no alert ran, no CSP violation, no console error
    finally:
        await stop_centre(server, refresher)
    assert (out / "5-audit.png").stat().st_size > 0
