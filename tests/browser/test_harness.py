"""The browser harness itself, on a tiny page served by the test: Debian's chromium starts,
axe-core finds a known violation (so a clean result elsewhere means something), the watch
catches a script that runs, and screenshots land in the test's output folder."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import web
from playwright.async_api import Page

from tests.support.browser import (
    PageProblems,
    axe_violations,
    chromium_path,
    describe_violations,
    screenshot,
    serving,
)

# An image with no text alternative and an unlabelled field: two WCAG A failures.
BAD_PAGE = """<!doctype html><html lang="en"><head><title>bad</title></head>
<body><main><h1>Bad</h1><img src="/pixel.png"><input type="text" name="q"></main></body></html>"""
GOOD_PAGE = """<!doctype html><html lang="en"><head><title>good</title></head><body>
<main><h1>Good</h1><label for="q">Search</label><input id="q" type="text" name="q"></main></body></html>"""
SCRIPT_PAGE = """<!doctype html><html lang="en"><head><title>script</title></head>
<body><main><h1>Script</h1><script>alert("ran")</script></main></body></html>"""


def tiny_app() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        body = {"bad": BAD_PAGE, "good": GOOD_PAGE, "script": SCRIPT_PAGE}[request.match_info["name"]]
        return web.Response(text=body, content_type="text/html")

    async def pixel(_: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/pixel.png", pixel)
    app.router.add_get("/{name}", page)
    return app


async def test_the_browser_is_the_chromium_on_the_path(chromium_page: Page) -> None:
    process = await asyncio.create_subprocess_exec(
        chromium_path(), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    version = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    number = re.search(r"\d+\.\d+\.\d+\.\d+", version)
    assert number is not None, version
    cdp = await chromium_page.context.new_cdp_session(chromium_page)
    product = (await cdp.send("Browser.getVersion"))["product"]
    assert product.endswith(f"Chrome/{number.group()}"), (product, version)


async def test_axe_reports_the_violations_of_a_bad_page_and_none_of_a_good_one(
    chromium_page: Page, browser_output_dir: Path
) -> None:
    async with serving(tiny_app()) as base:
        await chromium_page.goto(f"{base}/bad")
        violations = await axe_violations(chromium_page)
        report = describe_violations(violations)
        assert {v["id"] for v in violations} >= {"image-alt", "label"}, report
        assert "image-alt (critical)" in report
        assert "img" in report
        await screenshot(chromium_page, browser_output_dir, "bad")

        await chromium_page.goto(f"{base}/good")
        assert await axe_violations(chromium_page) == []
    assert (browser_output_dir / "bad.png").stat().st_size > 1000


async def test_the_watch_catches_a_script_that_runs(chromium_page: Page, page_problems: PageProblems) -> None:
    async with serving(tiny_app()) as base:
        await chromium_page.goto(f"{base}/script")
        assert page_problems.dialogs == ["alert: ran"]
