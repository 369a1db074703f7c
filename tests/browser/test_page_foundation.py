"""The page foundation in a real browser: base layout, tiles, toggle card, confirmation step,
audit table and form fields, rendered with sample data and served under the service's
Content-Security-Policy. Axe-core finds nothing at WCAG 2.2 AA, the keyboard alone reaches every
control with a visible focus ring, and text a person typed stays text."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Page, expect

from tests.support.browser import (
    PageProblems,
    assert_no_axe_violations,
    focusable_controls,
    screenshot,
    serving,
    tab_stops,
)
from web.templating import STATIC_DIR, page_environment, render_macro, render_page

HERE = Path(__file__).parent
SCRIPT = "<script>alert(1)</script>"
CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


def sample_context() -> dict[str, Any]:
    queue = {"tenant": "Northshire Council", "advisers_logged_in": 6, "age_s": 0}
    return {
        "title": "Live",
        "user": {"name": "j.smith@northshire.example", "role": "supervisor"},
        "csrf_token": "token-123",
        "active_nav": "live",
        "messages": [{"level": "success", "text": f"Saved. {SCRIPT}"}],
        "queues": [
            {
                **queue,
                "id": "housing",
                "name": "Housing",
                "waiting": 3,
                "longest_wait_s": 95,
                "advisers_available": 2,
                "status": "normal",
            },
            {
                **queue,
                "id": "council-tax",
                "name": "Council tax",
                "waiting": 14,
                "longest_wait_s": 734,
                "advisers_available": 0,
                "status": "busy",
            },
            {
                **queue,
                "id": "adult-social-care",
                "name": "Adult social care",
                "waiting": 22,
                "longest_wait_s": 3725,
                "advisers_available": 0,
                "status": "overflow",
            },
            {
                **queue,
                "id": "bins",
                "name": SCRIPT,
                "waiting": 0,
                "longest_wait_s": 0,
                "advisers_available": 1,
                "status": "stale",
                "age_s": 42,
            },
        ],
        "partners": [
            {
                "id": "partner-a",
                "name": "Partner A",
                "tenant": "Northshire Council",
                "capacity": 4,
                "age_s": 2,
                "status": "normal",
            },
            {
                "id": "partner-b",
                "name": "Partner B",
                "tenant": "Southvale Council",
                "capacity": None,
                "age_s": 300,
                "status": "stale",
            },
        ],
        "toggles": [
            {
                "id": "northshire-cover",
                "tenant": "Northshire Council",
                "label": "Emergency cover",
                "on": True,
                "reason": SCRIPT + "\nflood in the contact centre",
                "by": "j.smith@northshire.example",
                "set_at_text": "Sun 29 Nov 2026 09:12 GMT",
                "until_text": "Tue 1 Dec 2026 17:00 GMT",
            },
            {"id": "southvale-cover", "tenant": "Southvale Council", "label": "Emergency cover", "on": False},
        ],
        "values": {"reason": SCRIPT, "until": "2026-11-28T10:00"},
        "errors": {"until": "The expiry must be in the future"},
        "errors_list": [{"id": "toggle-southvale-cover-until", "text": "The expiry must be in the future"}],
        "confirm": {
            "title": "Switch emergency cover on for Southvale Council?",
            "rows": [
                {"label": "Reason", "value": SCRIPT},
                {"label": "Until", "value": "Tue 1 Dec 2026 17:00 GMT"},
            ],
            "hidden": {"toggle": "southvale-cover", "reason": SCRIPT, "until": "2026-12-01T17:00"},
            "warning": "Every call to Southvale Council goes to emergency cover until it is switched off.",
        },
        "audit": [
            {
                "when_text": "Sun 29 Nov 2026 09:12 GMT",
                "who": "j.smith@northshire.example",
                "what": "Emergency cover on",
                "previous": "off",
                "reason": SCRIPT,
                "until_text": "Tue 1 Dec 2026 17:00 GMT",
            },
            {
                "when_text": "Sat 28 Nov 2026 18:00 GMT",
                "who": "a.khan@northshire.example",
                "what": "Emergency cover off",
                "previous": "on",
                "reason": "resolved",
                "until_text": None,
            },
        ],
    }


Update = tuple[str, str] | None  # (event name, HTML) to send; None ends the stream


def demo_app(html: str, updates: asyncio.Queue[Update] | None = None) -> web.Application:
    @web.middleware
    async def csp(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        response.headers["Content-Security-Policy"] = CSP
        return response

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    async def events(request: web.Request) -> web.StreamResponse:
        assert updates is not None
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while (update := await updates.get()) is not None:
            name, fragment = update
            data = "".join(f"data: {line}\n" for line in fragment.splitlines())
            await response.write(f"event: {name}\n{data}\n".encode())
        return response

    app = web.Application(middlewares=[csp])
    app.router.add_get("/", page)
    app.router.add_get("/events", events)
    app.router.add_static("/static", STATIC_DIR)
    return app


def demo_html(**extra: Any) -> str:
    return render_page(page_environment([HERE / "templates"]), "demo.html.j2", **sample_context(), **extra)


async def open_demo(page: Page, base: str) -> None:
    await page.goto(f"{base}/")
    await page.wait_for_function("window.htmx !== undefined && htmx.version.startsWith('2.')")
    # The page's <meta name="htmx-config"> is read: nothing evaluated, no script from a response.
    assert await page.evaluate("[htmx.config.allowEval, htmx.config.allowScriptTags]") == [False, False]


async def test_the_demo_page_has_no_wcag22_aa_violation(
    chromium_page: Page, page_problems: PageProblems, browser_output_dir: Path
) -> None:
    async with serving(demo_app(demo_html())) as base:
        await open_demo(chromium_page, base)
        await screenshot(chromium_page, browser_output_dir, "demo")
        await assert_no_axe_violations(chromium_page)
        await chromium_page.emulate_media(reduced_motion="reduce")
        await chromium_page.set_viewport_size({"width": 360, "height": 800})  # a narrow window, 400% zoom
        await screenshot(chromium_page, browser_output_dir, "demo-narrow")
        # Reflow (WCAG 1.4.10): nothing but the audit table's own scroll region is wider than the window.
        assert await chromium_page.evaluate("document.documentElement.scrollWidth") <= 360
        await assert_no_axe_violations(chromium_page)
        await page_problems.assert_none(chromium_page)


async def test_the_keyboard_alone_reaches_every_control_with_a_visible_focus(
    chromium_page: Page, page_problems: PageProblems, browser_output_dir: Path
) -> None:
    async with serving(demo_app(demo_html())) as base:
        await open_demo(chromium_page, base)
        controls = await focusable_controls(chromium_page)
        stops = await tab_stops(chromium_page)
        await screenshot(chromium_page, browser_output_dir, "last-tab-stop")

    reached = [stop.key for stop in stops]
    assert reached == controls, f"tab order {[str(s) for s in stops]}"
    assert stops[0].text == "Skip to main content"
    invisible = [str(s) for s in stops if not (s.focus_visible and s.outline_style != "none")]
    thin = [str(s) for s in stops if s.outline_width < 2]
    assert invisible == []
    assert thin == []
    await page_problems.assert_none(chromium_page)


async def test_the_skip_link_moves_focus_to_the_main_content(chromium_page: Page) -> None:
    async with serving(demo_app(demo_html())) as base:
        await open_demo(chromium_page, base)
        await chromium_page.keyboard.press("Tab")
        await chromium_page.keyboard.press("Enter")
        assert await chromium_page.evaluate("document.activeElement.id") == "main"
        await chromium_page.keyboard.press("Tab")
        first_in_main = await chromium_page.evaluate("document.activeElement.closest('main') !== null")
        assert first_in_main


async def test_text_people_typed_is_shown_as_text(chromium_page: Page, page_problems: PageProblems) -> None:
    async with serving(demo_app(demo_html())) as base:
        await open_demo(chromium_page, base)
        main = chromium_page.locator("main")
        assert await main.locator("script").count() == 0
        reason = chromium_page.locator("#toggle-northshire-cover .user-text").first
        assert (await reason.inner_text()).startswith(SCRIPT)
        assert SCRIPT in await chromium_page.locator("#audit").inner_text()
        assert SCRIPT in await chromium_page.locator("#messages").inner_text()
        assert await chromium_page.locator("#toggle-southvale-cover-reason").input_value() == SCRIPT
        hidden = chromium_page.locator(".confirm input[name=reason]")
        assert await hidden.get_attribute("value") == SCRIPT
    assert page_problems.dialogs == []
    await page_problems.assert_none(chromium_page)


async def test_a_tile_sent_as_a_server_sent_event_replaces_the_tile_in_place(
    chromium_page: Page, page_problems: PageProblems, browser_output_dir: Path
) -> None:
    updates: asyncio.Queue[Update] = asyncio.Queue()
    env = page_environment()
    housing = sample_context()["queues"][0]
    async with serving(demo_app(demo_html(events_url="/events"), updates)) as base:
        await open_demo(chromium_page, base)
        waiting = chromium_page.locator("#queue-housing .tile__figure--main dd")
        await expect(waiting).to_have_text("3")
        for count in (17, 18):  # the tile keeps listening after a change
            tile = {**housing, "waiting": count, "status": "busy", "name": f"Housing {SCRIPT}"}
            html = render_macro(env, "partials/tiles.html.j2", "queue_tile_body", tile)
            await updates.put(("queue-housing", html))
            await expect(waiting).to_have_text(str(count), timeout=2_000)
        await expect(chromium_page.locator("#queue-housing .tile__badge")).to_have_text("Busy")
        await expect(chromium_page.locator("#queue-housing h3")).to_have_text(f"Housing {SCRIPT}")
        await screenshot(chromium_page, browser_output_dir, "after-update")
        await page_problems.assert_none(chromium_page)
        await updates.put(None)
