"""Benchmark: the live view's delay from an AMI event to the tile, over HTTP and in a real browser
(goal: under one second).

Run: ``.venv/bin/python -m benchmarks.live_http_bench [--events N] [--no-browser]``.

A fake AMI (``emulator.ami``) sends ``QueueCallerJoin`` events one at a time to a real AMI
consumer holding the writer lease, which writes a real Redis; the real web app (``web/live.py``,
its one live feed) serves the live view on 127.0.0.1. For each event, the delay is measured
from just before the fake sends it until each of these sees the new ``waiting`` figure, all
watching the same events in the same run:

* feed (in-process): a subscriber of the app's own live feed (the baseline: no HTTP);
* SSE JSON: ``GET /api/v1/live/events`` read by an HTTP client (aiohttp), the ``changes`` event;
* SSE HTML: ``GET /api/v1/live/events?format=html``, the tile's fragment event;
* browser, swapped: Debian's headless Chromium showing ``/live``, where htmx's SSE extension
  swaps the tile; the page notes the time (``Date.now()``) its DOM shows the new figure;
* browser, next frame: the same, at the next animation frame after the swap (painted).

Events are spaced by a random pause (0-250 ms), so they fall anywhere in the feed's poll
interval. Times are the machine's wall clock in both Python and the browser. The whole run is
bounded by ``--limit-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.live_web import GENERAL, GENERAL_REGION, GENERAL_TILE, live_config, live_rig
from tests.support.redis_server import running_redis
from tests.support.web import PASSWORD, add_user, make_token, store_for, web_test_app
from web.live import LIVE

WATCH = """(id) => {
  window.__swapped = {}; window.__painted = {};
  const slot = document.getElementById(id);
  const note = () => {
    const dd = slot.querySelector('.tile__figure--main dd');
    const n = dd ? parseInt(dd.textContent, 10) : NaN;
    if (Number.isNaN(n) || window.__swapped[n] !== undefined) return;
    window.__swapped[n] = Date.now();
    requestAnimationFrame(() => { window.__painted[n] = Date.now(); });
  };
  new MutationObserver(note).observe(slot, {childList: true, subtree: true, characterData: true});
}"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Watcher:
    """When (wall clock, s) a watcher first saw each waiting figure."""

    name: str
    seen: dict[int, float] = field(default_factory=dict)

    def saw(self, waiting: int) -> None:
        self.seen.setdefault(waiting, time.time())


async def watch_feed(app: web.Application, watcher: Watcher) -> None:
    async with app[LIVE].feed.subscribe({"charnwood"}) as sub:
        async for message in sub:
            tile = (message.get("tiles") or message.get("changed") or {}).get(GENERAL_TILE)
            if tile is not None:
                watcher.saw(tile["waiting"])


async def sse_events(response: aiohttp.ClientResponse) -> Any:
    """(event name, data) of each event of an SSE response."""
    name, data = "", []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "", []
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])


async def watch_sse(url: str, token: str, html: bool, watcher: Watcher, ready: asyncio.Event) -> None:
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + ("?format=html" if html else ""), headers=headers) as response,
    ):
        assert response.status == 200, response.status
        ready.set()
        async for name, data in sse_events(response):
            if html and name == GENERAL_REGION:
                figure = data.split("<dt>Waiting</dt><dd>", 1)[1].split("<", 1)[0]
                watcher.saw(int(figure))
            elif not html:
                tiles = json.loads(data)
                tile = (tiles.get("tiles") or tiles.get("changed") or {}).get(GENERAL_TILE)
                if tile is not None:
                    watcher.saw(tile["waiting"])


@dataclass
class Browser:
    page: Any
    close: Callable[[], Awaitable[None]]


async def open_browser(base: str, user: str) -> Browser:
    from playwright.async_api import async_playwright  # only with the browser rows

    chromium = shutil.which("chromium")
    assert chromium is not None, "no chromium on the PATH: run scripts/bootstrap, or pass --no-browser"
    profile = tempfile.TemporaryDirectory(prefix="callrouter-bench-chromium-")
    playwright = await async_playwright().start()
    context = await playwright.chromium.launch_persistent_context(
        profile.name, executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
    )
    page = context.pages[0] if context.pages else await context.new_page()
    await context.add_init_script(
        "document.addEventListener('htmx:sseOpen', () => { window.__open = true; });"
    )
    await page.goto(f"{base}/login")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(lambda url: not url.endswith("/login"))
    await page.goto(f"{base}/live")
    await page.wait_for_function("window.__open === true", timeout=10_000)
    await page.evaluate(WATCH, GENERAL_REGION)

    async def close() -> None:
        await context.close()
        await playwright.stop()
        profile.cleanup()

    return Browser(page, close)


async def send_events(
    fake: Any, events: int, seed: int, watchers: list[Watcher], browser: Browser | None
) -> dict[int, float]:
    """Join ``events`` callers one at a time (the next once all have seen one); when each was sent."""
    rng = random.Random(seed)
    sent: dict[int, float] = {}
    for n in range(1, events + 1):
        await asyncio.sleep(rng.uniform(0, 0.25))
        sent[n] = time.time()
        fake.caller_joins(GENERAL)
        async with asyncio.timeout(5):
            while not all(n in w.seen for w in watchers):  # noqa: ASYNC110 - polled: the watchers only record
                await asyncio.sleep(0.002)
            if browser is not None:
                await browser.page.wait_for_function(
                    "(n) => window.__painted[n] !== undefined", arg=n, timeout=5000
                )
    return sent


def row(name: str, delays: list[float]) -> str:
    ms = [d * 1000 for d in delays]
    return f"| {name} | {len(ms)} | {statistics.median(ms):.1f} | {percentile(ms, 99):.1f} | {max(ms):.1f} |"


async def run(events: int, browser_rows: bool, seed: int) -> None:
    with running_redis(max_lifetime_s=900) as server:
        async with live_rig(f"{server.url}") as rig:
            await add_user(store_for(rig.redis), "viewer", {"charnwood": {"viewer"}})
            token = await make_token(store_for(rig.redis), "viewer")
            app = web_test_app(rig.redis, config=live_config(live_streams_per_user=10))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            base = f"http://127.0.0.1:{port}"
            feed_w, json_w, html_w = Watcher("feed"), Watcher("json"), Watcher("html")
            ready_json, ready_html = asyncio.Event(), asyncio.Event()
            tasks = [
                asyncio.create_task(watch_feed(app, feed_w)),
                asyncio.create_task(
                    watch_sse(f"{base}/api/v1/live/events", token, False, json_w, ready_json)
                ),
                asyncio.create_task(watch_sse(f"{base}/api/v1/live/events", token, True, html_w, ready_html)),
            ]
            browser = await open_browser(base, "viewer") if browser_rows else None
            try:
                await ready_json.wait()
                await ready_html.wait()
                await asyncio.sleep(0.5)
                sent = await send_events(rig.fake, events, seed, [feed_w, json_w, html_w], browser)
                swapped: dict[int, float] = {}
                painted: dict[int, float] = {}
                if browser is not None:
                    swapped = {
                        int(k): v / 1000 for k, v in (await browser.page.evaluate("window.__swapped")).items()
                    }
                    painted = {
                        int(k): v / 1000 for k, v in (await browser.page.evaluate("window.__painted")).items()
                    }
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if browser is not None:
                    await browser.close()
                await runner.cleanup()
    print(f"{events} QueueCallerJoin events, random pause 0-250 ms; delay from the send (ms)\n")
    print("| seen by | events | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    print(row("live feed, in-process subscriber (baseline)", [feed_w.seen[n] - sent[n] for n in sent]))
    print(row("SSE JSON over HTTP (aiohttp client)", [json_w.seen[n] - sent[n] for n in sent]))
    print(row("SSE HTML fragment over HTTP", [html_w.seen[n] - sent[n] for n in sent]))
    if swapped:
        print(row("browser: tile swapped by htmx (DOM)", [swapped[n] - sent[n] for n in sent]))
        print(row("browser: next frame after the swap", [painted[n] - sent[n] for n in sent]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--no-browser", action="store_true", help="only the feed and the HTTP rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--limit-s", type=float, default=600)
    args = parser.parse_args()

    async def bounded() -> None:
        async with asyncio.timeout(args.limit_s):
            await run(args.events, not args.no_browser, args.seed)

    asyncio.run(bounded())


if __name__ == "__main__":
    main()
