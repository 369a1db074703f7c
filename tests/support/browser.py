"""A real browser for the web page's tests: Debian's headless Chromium driven by Playwright.

Playwright's own browser download is never used: the tests launch the ``chromium`` on the
PATH (Debian's package, which ``scripts/bootstrap`` installs) through ``executable_path``.
Every test gets a fresh profile (its own ``--user-data-dir``), bounded timeouts, and an output
folder ``test-output/<test>/`` at the repository's root (git ignores it; ``CALLROUTER_TEST_OUTPUT``
moves it) where screenshots are saved: a test's last screen is always kept there.

Fixtures (import them into a ``conftest.py``, as ``tests/browser/conftest.py`` does):

    chromium_executable   the browser's path; the test fails, saying to run scripts/bootstrap, without it
    browser_output_dir    this test's output folder (emptied at the start)
    chromium_page         a Playwright ``Page`` in a fresh profile; its problems are watched
    page_problems         what went wrong in that page: console errors, uncaught exceptions,
                          Content-Security-Policy violations, dialogs (``alert`` etc.)

Helpers: :func:`serving` (an aiohttp app on 127.0.0.1, port 0), :func:`screenshot`,
:func:`axe_violations` / :func:`assert_no_axe_violations` (axe-core, WCAG 2.2 AA tags),
:func:`tab_stops` / :func:`focusable_controls` (keyboard-only navigation).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from axe_playwright_python.base import AXE_SCRIPT
from playwright.async_api import ConsoleMessage, Dialog, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=en-GB",  # dates in inputs as a UK council PC shows them
)
LAUNCH_TIMEOUT_MS = 30_000  # the first start on a busy machine; a normal one takes about a second
ACTION_TIMEOUT_MS = 5_000
NAVIGATION_TIMEOUT_MS = 10_000
VIEWPORT = {"width": 1280, "height": 900}

# axe-core's tags for WCAG 2.0, 2.1 and 2.2 at levels A and AA.
WCAG22_AA_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")

# Collects what a page reports as wrong; runs before any of the page's own scripts (and so is not
# subject to the page's Content-Security-Policy).
_WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`
    + (e.sample ? `: ${e.sample}` : ''));
});
"""


def chromium_path() -> str:
    """Debian's chromium on the PATH; a clear failure (never a skip) when it is missing."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "the browser tests need Debian's chromium on the PATH: run scripts/bootstrap "
            "(it installs the chromium package)",
            pytrace=False,
        )
    return found


def output_dir_for(nodeid: str) -> Path:
    """``test-output/<test>/`` for a pytest node id (a readable, file-safe name)."""
    root = Path(os.environ.get("CALLROUTER_TEST_OUTPUT", ROOT / "test-output"))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.replace("::", "__").replace("/", ".")).strip("_")
    return root / name[:150]


@dataclass
class PageProblems:
    """Everything a page said was wrong while a test drove it."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def on_page_error(self, error: Exception) -> None:
        self.page_errors.append(str(error))

    async def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    async def collect(self, page: Page) -> None:
        """Read the CSP violations the page recorded so far."""
        found = await page.evaluate("window.__cspViolations || []")
        self.csp_violations = [str(item) for item in found]

    async def assert_none(self, page: Page, allow: tuple[str, ...] = ()) -> None:
        """No problem reported by the page; console errors containing one of ``allow`` (e.g. the
        status of an expected failed request) excepted."""
        await self.collect(page)
        errors = [e for e in self.console_errors if not any(text in e for text in allow)]
        problems = {
            "console errors": errors,
            "uncaught exceptions": self.page_errors,
            "dialogs (script ran?)": self.dialogs,
            "Content-Security-Policy violations": self.csp_violations,
        }
        found = {kind: items for kind, items in problems.items() if items}
        assert not found, "the page reported problems:\n" + json.dumps(found, indent=2)


@pytest.fixture
def chromium_executable() -> str:
    return chromium_path()


@pytest.fixture
def browser_output_dir(request: pytest.FixtureRequest) -> Path:
    out = output_dir_for(request.node.nodeid)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
async def chromium_page(
    chromium_executable: str, browser_output_dir: Path, page_problems: PageProblems
) -> AsyncIterator[Page]:
    """A page in a fresh Chromium profile; its last screen is saved as ``final.png``."""
    with tempfile.TemporaryDirectory(prefix="callrouter-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=chromium_executable,
                headless=True,
                args=list(CHROMIUM_ARGS),
                timeout=LAUNCH_TIMEOUT_MS,
                viewport=VIEWPORT,  # type: ignore[arg-type]
                locale="en-GB",
                timezone_id="Europe/London",
                service_workers="block",
            )
            try:
                context.set_default_timeout(ACTION_TIMEOUT_MS)
                context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
                await context.add_init_script(_WATCH_SCRIPT)
                page = context.pages[0] if context.pages else await context.new_page()
                page.on("console", page_problems.on_console)
                page.on("pageerror", page_problems.on_page_error)
                page.on("dialog", page_problems.on_dialog)
                yield page
                with contextlib.suppress(PlaywrightError):  # a broken page must not hide the failure
                    await screenshot(page, browser_output_dir, "final")
            finally:
                await context.close()


async def screenshot(page: Page, out_dir: Path, name: str) -> Path:
    """Save the whole page as ``<out_dir>/<name>.png``."""
    path = out_dir / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, timeout=ACTION_TIMEOUT_MS)
    return path


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields its base URL (no trailing slash)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --- accessibility -----------------------------------------------------------------------


async def axe_violations(
    page: Page, *, tags: tuple[str, ...] = WCAG22_AA_TAGS, context: str | None = None
) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, for the rules carrying ``tags``."""
    await page.evaluate(AXE_SCRIPT)
    options = {"runOnly": {"type": "tag", "values": list(tags)}, "resultTypes": ["violations"]}
    result: dict[str, Any] = await page.evaluate(
        "([context, options]) => axe.run(context || document, options)", [context, options]
    )
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def describe_violations(violations: list[dict[str, Any]]) -> str:
    """One block per rule: its id, impact, help and link, then each element and what is wrong."""
    lines = [f"{len(violations)} accessibility violation(s) (axe-core, WCAG 2.2 AA):"]
    for violation in violations:
        lines.append(
            f"- {violation['id']} ({violation.get('impact')}): {violation['help']} <{violation['helpUrl']}>"
        )
        for node in violation["nodes"]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html'][:200]}")
            summary = node.get("failureSummary")
            if summary:
                lines.extend(f"      {line}" for line in summary.splitlines())
    return "\n".join(lines)


async def assert_no_axe_violations(page: Page, *, context: str | None = None) -> None:
    violations = await axe_violations(page, context=context)
    assert violations == [], describe_violations(violations)


# --- keyboard ----------------------------------------------------------------------------

_FOCUSABLE = (
    "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), "
    "select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1']), summary"
)

# The focused element's identity and how its focus is drawn.
_FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  return {
    key: el.dataset.tabKey || '',
    tag: el.tagName.toLowerCase(),
    text: (el.innerText || el.value || el.getAttribute('aria-label') || el.id || '').trim().slice(0, 60),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth) || 0,
    outlineColor: style.outlineColor,
    focusVisible: el.matches(':focus-visible'),
  };
}"""


@dataclass(frozen=True)
class TabStop:
    key: str
    tag: str
    text: str
    outline_style: str
    outline_width: float
    outline_color: str
    focus_visible: bool

    def __str__(self) -> str:
        return f"<{self.tag}> {self.text!r} (outline {self.outline_style} {self.outline_width}px)"


async def focusable_controls(page: Page) -> list[str]:
    """Mark every visible control the keyboard should reach; returns their keys in page order."""
    keys: list[str] = await page.evaluate(
        """(selector) => {
          const out = [];
          document.querySelectorAll(selector).forEach((el, i) => {
            const box = el.getBoundingClientRect();
            const style = getComputedStyle(el);
            const hidden = style.visibility === 'hidden' || style.display === 'none'
              || (box.width === 0 && box.height === 0 && !el.classList.contains('skip-link'));
            if (hidden) return;
            el.dataset.tabKey = `c${i}`;
            out.push(el.dataset.tabKey);
          });
          return out;
        }""",
        _FOCUSABLE,
    )
    return keys


async def tab_stops(page: Page, *, limit: int = 200) -> list[TabStop]:
    """Press Tab until focus leaves the page or comes back round; call it on a page just loaded
    (nothing focused yet), so the first Tab goes to the page's first control."""
    stops: list[TabStop] = []
    seen: set[str] = set()
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(_FOCUSED)
        if focused is None:
            break
        stop = TabStop(
            key=focused["key"],
            tag=focused["tag"],
            text=focused["text"],
            outline_style=focused["outlineStyle"],
            outline_width=focused["outlineWidth"],
            outline_color=focused["outlineColor"],
            focus_visible=focused["focusVisible"],
        )
        if stops and stop.key == stops[-1].key:
            continue  # still inside one control (a date and time field has a stop per part)
        if stop.key and stop.key in seen:
            break
        seen.add(stop.key)
        stops.append(stop)
    return stops
