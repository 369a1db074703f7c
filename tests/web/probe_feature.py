"""A test-only feature: one read (viewer) and one change (supervisor) per tenant, so the tests
can check role rules, CSRF and body handling through the same plug-in path real features use."""

from __future__ import annotations

from aiohttp import web

from web import openapi
from web.auth import require
from web.problems import read_json


async def view(request: web.Request) -> web.Response:
    identity = require(request, "viewer", request.match_info["tenant"])
    return web.json_response({"by": identity.by})


async def change(request: web.Request) -> web.Response:
    identity = require(request, "supervisor", request.match_info["tenant"])
    body = await read_json(request)
    return web.json_response({"by": identity.by, "got": body})


async def boom(_request: web.Request) -> web.Response:
    raise RuntimeError("secret-value-must-not-leak")


def setup(app: web.Application) -> None:
    app.router.add_get("/api/test/{tenant}", view)
    app.router.add_post("/api/test/{tenant}", change)
    app.router.add_get("/api/test-boom", boom)
    openapi.contribute(
        app,
        {"paths": {"/api/test/{tenant}": {"get": {"responses": {"200": {"description": "ok"}}}}}},
    )
