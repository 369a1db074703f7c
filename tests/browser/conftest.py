"""The real-browser fixtures (Debian's chromium through Playwright): see tests/support/browser.py."""

from tests.support.browser import (  # noqa: F401  (fixtures)
    browser_output_dir,
    chromium_executable,
    chromium_page,
    page_problems,
)
