"""A test feature: serves ``web/static`` at ``/static`` for a page under test (the service's own
static route is wired elsewhere)."""

from __future__ import annotations

from aiohttp import web

from web.templating import STATIC_DIR, STATIC_URL


def setup(app: web.Application) -> None:
    app.router.add_static(STATIC_URL, STATIC_DIR)
