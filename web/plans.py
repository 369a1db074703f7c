"""Routing plans over HTTP: validate, preview, publish, list, show and roll back versions.

The versions live in the plan store (``routing/plan_store.py``); controllers that follow the
store switch to a published version together within a second. Bodies are JSON (``{"text":
the plan's YAML, ...}``), bounded by ``web.max_body_bytes`` (413 beyond it).

Who may do what (engineers; plans are one document for every council):

- read (versions, a version's text, the live version, validate, preview): an engineer of any
  tenant (or of ``*``);
- publish: an engineer of **every tenant the new plan changes** against the live one (a
  tenant added, removed, or any of its settings different); a change outside the tenants
  (``version``, ``centre``, ``centres``, ``unknown_number``) or the first plan of an empty store
  needs an engineer of ``*``. A plan that changes nothing routed but its comments or layout
  needs an engineer of any tenant;
- roll back: an engineer of ``*`` (a rollback may change every tenant at once).

Answers: ``validate`` is a question, so a plan with errors is ``200`` with ``"ok": false``
and every problem (path, line, message); ``preview`` and ``publish`` of a plan with errors are
``422`` whose problem body lists the same ``problems``. The checks run in a worker thread, at
most :data:`CHECKS_AT_ONCE` at a time, so a large plan never stalls other requests.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from routing import plan_store
from routing.core.plan import Plan
from routing.core.problems import Problem as PlanProblem
from routing.core.problems import errors
from routing.plan_file import LoadResult
from web import openapi
from web.auth import authenticated, require
from web.context import REDIS, keys_of, now
from web.identity import Identity
from web.problems import PROBLEM_TYPE, TITLES, Problem, read_model

CHECKS_AT_ONCE = 2
"""Plan checks and previews running at once (CPU work in threads; the host has few cores)."""
MAX_VERSIONS = 200  # versions listed at most per request
MAX_WEEKS = 52
DEFAULT_WEEKS = 4
PLAN_NAME = plan_store.PLAN_NAME
ENGINEER = "engineer"

CHECKS = web.AppKey("plan_checks", asyncio.Semaphore)
# One publish or rollback at a time in this process: the role check of a publish is made against
# the live plan, and no other change of this service lands between that check and the write.
CHANGES = web.AppKey("plan_changes", asyncio.Lock)


class PlanText(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(max_length=8_000_000)


class PreviewRequest(PlanText):
    weeks: int = Field(DEFAULT_WEEKS, ge=1, le=MAX_WEEKS)


class PublishRequest(PlanText):
    comment: str = Field(max_length=plan_store.MAX_COMMENT * 4)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    comment: str = Field(max_length=plan_store.MAX_COMMENT * 4)


# --- pure decisions -----------------------------------------------------------------------------


def touched_tenants(live: Plan | None, candidate: Plan) -> frozenset[str] | None:
    """The tenants whose part of the plan ``candidate`` changes against ``live``: added,
    removed or different in any setting. None when the change reaches beyond the tenants (the
    first plan, or ``version``, ``centre``, ``centres``, ``unknown_number`` changed): only an
    engineer of every tenant (``*``) may publish it."""
    if live is None:
        return None
    shared = ("version", "centre", "centres", "unknown_number")
    if any(getattr(live, name) != getattr(candidate, name) for name in shared):
        return None
    names = set(live.tenants) | set(candidate.tenants)
    return frozenset(t for t in names if live.tenants.get(t) != candidate.tenants.get(t))


def may_publish(identity: Identity, touched: frozenset[str] | None) -> list[str]:
    """The tenants ``identity`` would need engineer on and lacks (``["*"]`` for a change beyond
    the tenants); empty: it may publish."""
    if touched is None:
        return [] if identity.may(ENGINEER, None) else ["*"]
    return sorted(t for t in touched if not identity.may(ENGINEER, t))


def problem_line(problem: PlanProblem) -> int | None:
    """The line a problem's ``source`` names (``plan.yaml:42``), or None."""
    if problem.source is None:
        return None
    _, _, tail = problem.source.rpartition(":")
    return int(tail) if tail.isdigit() else None


def problem_data(problem: PlanProblem) -> dict[str, Any]:
    return {
        "severity": problem.severity,
        "path": problem.path,
        "line": problem_line(problem),
        "message": problem.message,
    }


def version_data(info: plan_store.VersionInfo, live: plan_store.Live | None) -> dict[str, Any]:
    return {**info.data(), "live": live is not None and live.version == info.number}


# --- helpers ------------------------------------------------------------------------------------


def engineer_somewhere(request: web.Request) -> Identity:
    """The identity if it is an engineer of any tenant (or of ``*``); else 401/403."""
    identity = authenticated(request)
    if not any(identity.may(ENGINEER, tenant) for tenant in identity.roles):
        raise Problem(403, f"{identity.user_id} is not an engineer of any tenant")
    return identity


def problems_response(status: int, detail: str, problems: list[PlanProblem]) -> web.Response:
    """A problem body with every plan problem listed (``problems``: severity, path, line, message)."""
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "problems": [problem_data(p) for p in problems],
    }
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE)


class PlanRefused(Exception):
    """A plan with errors: answered as :func:`problems_response`."""

    def __init__(self, detail: str, problems: list[PlanProblem]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = problems

    def response(self) -> web.Response:
        return problems_response(422, self.detail, self.problems)


async def checked(request: web.Request, text: str) -> LoadResult:
    """``text`` validated in a worker thread (bounded)."""
    async with request.app[CHECKS]:
        return await asyncio.to_thread(plan_store.validate, text)


async def live_version(request: web.Request) -> tuple[plan_store.Live | None, plan_store.Version | None]:
    redis = request.app[REDIS]
    current = await plan_store.live(redis, keys=keys_of(request))
    stored = await plan_store.get(redis, current.version, keys=keys_of(request)) if current else None
    return current, stored


@dataclass(frozen=True, slots=True)
class Candidate:
    """A plan checked against the live one: who may publish it."""

    plan: Plan
    touched: frozenset[str] | None
    live: plan_store.Live | None
    live_text: str | None


async def candidate(request: web.Request, text: str) -> Candidate:
    """``text`` checked (:class:`PlanRefused` if it has errors) and compared with the live plan."""
    result = await checked(request, text)
    if not result.ok or result.plan is None:
        found = errors(result.problems) or result.problems
        raise PlanRefused(f"the plan has {len(found)} problem(s)", found)
    current, stored = await live_version(request)
    live_plan: Plan | None = None
    if stored is not None:
        live_result = await checked(request, stored.text)
        live_plan = live_result.plan if live_result.ok else None
    touched = touched_tenants(live_plan, result.plan)
    return Candidate(result.plan, touched, current, stored.text if stored else None)


def touched_list(touched: frozenset[str] | None) -> list[str]:
    return ["*"] if touched is None else sorted(touched)


async def compare(
    request: web.Request, old: str | None, new: str, at: datetime, weeks: int
) -> dict[str, Any]:
    """:func:`routing.plan_store.preview` in a worker thread (bounded); PlanRefused on errors."""
    async with request.app[CHECKS]:
        try:
            return await asyncio.to_thread(plan_store.preview, old, new, at, weeks)
        except plan_store.PlanStoreError as exc:
            raise PlanRefused(str(exc), exc.problems) from None


def _number(request: web.Request) -> int:
    return int(request.match_info["n"])


def _weeks(request: web.Request) -> int:
    raw = request.query.get("weeks", str(DEFAULT_WEEKS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WEEKS:
        raise Problem(400, f"weeks must be a whole number from 1 to {MAX_WEEKS}")
    return int(raw)


# --- handlers -----------------------------------------------------------------------------------


async def validate(request: web.Request) -> web.Response:
    engineer_somewhere(request)
    body = await read_model(request, PlanText)
    result = await checked(request, body.text)
    return web.json_response(
        {
            "ok": result.ok,
            "tenants": sorted(result.plan.tenants) if result.plan is not None else [],
            "problems": [problem_data(p) for p in result.problems],
        }
    )


async def preview(request: web.Request) -> web.Response:
    identity = engineer_somewhere(request)
    body = await read_model(request, PreviewRequest)
    try:
        found = await candidate(request, body.text)
        data = await compare(request, found.live_text, body.text, now(request), body.weeks)
    except PlanRefused as exc:
        return exc.response()
    missing = may_publish(identity, found.touched)
    return web.json_response(
        {
            **data,
            "live_version": found.live.version if found.live else None,
            "live_generation": found.live.generation if found.live else None,
            "touches": touched_list(found.touched),
            "may_publish": not missing,
            "missing": missing,
        }
    )


async def publish(request: web.Request) -> web.Response:
    identity = engineer_somewhere(request)
    body = await read_model(request, PublishRequest)
    try:
        plan_store.check_words(identity.by, body.comment)
    except plan_store.PlanStoreError as exc:
        raise Problem(422, str(exc)) from None
    async with request.app[CHANGES]:
        try:
            found = await candidate(request, body.text)
        except PlanRefused as exc:
            return exc.response()
        missing = may_publish(identity, found.touched)
        if missing:
            raise Problem(
                403,
                f"{identity.user_id} is not an engineer of {', '.join(missing)}, which this plan changes: "
                "nothing published",
            )
        try:
            change = await plan_store.publish(
                request.app[REDIS], body.text, identity.by, body.comment, now(request),
                expect_live_sha=found.live.sha256 if found.live else "", keys=keys_of(request),
            )  # fmt: skip
        except plan_store.LiveMoved as exc:
            raise Problem(409, str(exc)) from None
        except plan_store.PlanStoreError as exc:
            if exc.problems:
                return problems_response(422, str(exc), exc.problems)
            raise Problem(422, str(exc)) from None
    data = {**change.data(), "touches": touched_list(found.touched)}
    if not change.changed:
        return web.json_response(data)
    location = f"/api/v1/plans/{change.live.version}"
    return web.json_response(data, status=201, headers={"Location": location})


async def list_versions(request: web.Request) -> web.Response:
    engineer_somewhere(request)
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_VERSIONS:
        raise Problem(400, f"limit must be a whole number from 1 to {MAX_VERSIONS}")
    redis = request.app[REDIS]
    current = await plan_store.live(redis, keys=keys_of(request))
    found = await plan_store.versions(redis, int(raw), keys=keys_of(request))
    return web.json_response(
        {"live": current.data() if current else None, "versions": [version_data(v, current) for v in found]}
    )


async def show(request: web.Request) -> web.Response:
    engineer_somewhere(request)
    redis = request.app[REDIS]
    version = await plan_store.get(redis, _number(request), keys=keys_of(request))
    if version is None:
        raise Problem(404, f"no version {_number(request)}")
    current = await plan_store.live(redis, keys=keys_of(request))
    return web.json_response({**version_data(version.info, current), "text": version.text})


async def show_live(request: web.Request) -> web.Response:
    engineer_somewhere(request)
    current, stored = await live_version(request)
    if current is None or stored is None:
        raise Problem(404, "no plan is live: nothing has been published")
    return web.json_response({**current.data(), "info": stored.info.data(), "text": stored.text})


async def version_diff(request: web.Request) -> web.Response:
    """A version against its predecessor (``against=previous``) or the live one (``against=live``)."""
    engineer_somewhere(request)
    number, against, weeks = _number(request), request.query.get("against", "previous"), _weeks(request)
    if against not in ("previous", "live"):
        raise Problem(400, "against must be previous or live")
    redis = request.app[REDIS]
    version = await plan_store.get(redis, number, keys=keys_of(request))
    if version is None:
        raise Problem(404, f"no version {number}")
    if against == "previous":
        base_number: int | None = number - 1 if number > 1 else None
    else:
        current = await plan_store.live(redis, keys=keys_of(request))
        base_number = current.version if current else None
    base = (
        await plan_store.get(redis, base_number, keys=keys_of(request)) if base_number is not None else None
    )
    try:
        data = await compare(request, base.text if base else None, version.text, now(request), weeks)
    except PlanRefused as exc:  # a stored version always validated when it was published
        raise Problem(409, f"version {number} or {base_number} no longer validates: {exc.detail}") from None
    return web.json_response({**data, "version": number, "against": against, "base_version": base_number})


async def rollback(request: web.Request) -> web.Response:
    identity = require(request, ENGINEER, None)
    body = await read_model(request, RollbackRequest)
    number = _number(request)
    try:
        async with request.app[CHANGES]:
            change = await plan_store.rollback(
                request.app[REDIS], number, identity.by, body.comment, now(request), keys=keys_of(request)
            )
    except plan_store.PlanStoreError as exc:
        status = 404 if str(exc).startswith("no version") else 422
        raise Problem(status, str(exc)) from None
    return web.json_response(change.data())


# --- wiring and the OpenAPI part ------------------------------------------------------------------


def setup(app: web.Application) -> None:
    app[CHECKS] = asyncio.Semaphore(CHECKS_AT_ONCE)
    app[CHANGES] = asyncio.Lock()
    app.router.add_post("/api/v1/plans/validate", validate)
    app.router.add_post("/api/v1/plans/preview", preview)
    app.router.add_post("/api/v1/plans", publish)
    app.router.add_get("/api/v1/plans", list_versions)
    app.router.add_get("/api/v1/plans/live", show_live)
    app.router.add_get(r"/api/v1/plans/{n:[1-9][0-9]{0,17}}", show)
    app.router.add_get(r"/api/v1/plans/{n:[1-9][0-9]{0,17}}/diff", version_diff)
    app.router.add_post(r"/api/v1/plans/{n:[1-9][0-9]{0,17}}/rollback", rollback)
    openapi.contribute(app, OPENAPI)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NUMBER_PARAM = {
    "name": "n",
    "in": "path",
    "required": True,
    "description": "a version number (1, 2, ...)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999},
}
_TEXT = {"type": "string", "maxLength": 8_000_000, "description": "the plan's YAML text"}
_COMMENT = {"type": "string", "description": "why: one line, 1 to 500 characters, no control characters"}
_PLAN_PROBLEMS = {
    "description": "the request or the plan is invalid: the plan's problems are listed, each with its "
    "path and line",
    "content": {PROBLEM_TYPE: {"schema": _ref("PlanProblems")}},
}
_BODY_ERRORS = openapi.errors(400, 401, 403, 413, 415)
_READ_ERRORS = openapi.errors(401, 403)
_TIMELINE_ITEM = {
    "type": "object",
    "required": ["at", "open", "kind", "cause"],
    "properties": {
        "at": {"type": "string"},
        "open": {"type": "boolean"},
        "kind": {"type": "string"},
        "cause": {"type": "string"},
    },
}
_DIFF = {
    "type": "object",
    "required": ["from", "to", "changes", "differences", "timelines"],
    "properties": {
        "from": {"type": "string", "format": "date-time"},
        "to": {"type": "string", "format": "date-time"},
        "changes": {"type": "integer"},
        "differences": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["number", "keys", "from", "to", "old", "new"],
                "properties": {
                    "number": {"type": "string"},
                    "keys": {"type": ["array", "null"], "items": {"type": "string"}},
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "old": {"type": "string"},
                    "new": {"type": "string"},
                },
            },
        },
        "timelines": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["live", "candidate", "changed"],
                "properties": {
                    "live": {"type": "array", "items": _TIMELINE_ITEM},
                    "candidate": {"type": "array", "items": _TIMELINE_ITEM},
                    "changed": {"type": "boolean"},
                },
            },
        },
    },
}
_LIVE = {
    "type": "object",
    "required": ["generation", "version", "sha256", "activate_at"],
    "properties": {
        "generation": {"type": "integer"},
        "version": {"type": "integer"},
        "sha256": {"type": "string"},
        "activate_at": {"type": "string", "format": "date-time"},
    },
}
_INFO_PROPS = {
    "number": {"type": "integer"},
    "author": {"type": "string"},
    "at": {"type": "string", "format": "date-time"},
    "comment": {"type": "string"},
    "sha256": {"type": "string"},
}
_VERSION = {
    "type": "object",
    "required": [*_INFO_PROPS, "live"],
    "properties": {**_INFO_PROPS, "live": {"type": "boolean", "description": "this version is live"}},
}
_CHANGE = {
    "type": "object",
    "required": ["changed", "live", "previous_version", "message"],
    "properties": {
        "changed": {"type": "boolean", "description": "false: nothing to do (said in message)"},
        "live": _ref("PlanLive"),
        "previous_version": {"type": ["integer", "null"]},
        "message": {"type": "string"},
        "touches": {"type": "array", "items": {"type": "string"}},
    },
}
_PROBLEM_ITEM = {
    "type": "object",
    "required": ["severity", "path", "line", "message"],
    "properties": {
        "severity": {"type": "string", "enum": ["error", "warning"]},
        "path": {"type": "string", "description": "where in the plan, e.g. tenants.harborough.hours"},
        "line": {"type": ["integer", "null"], "description": "the line of the YAML text, when known"},
        "message": {"type": "string"},
    },
}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/v1/plans/validate": {
            "post": {
                "summary": "Check a plan: every problem with its path and line (engineer of any tenant)",
                "operationId": "validatePlan",
                "tags": ["plans"],
                "security": openapi.SECURED,
                "parameters": [openapi.CSRF_HEADER_PARAM],
                "requestBody": {"required": True, "content": _json(_ref("PlanText"))},
                "responses": {
                    "200": {
                        "description": "checked: ok false lists the problems (a question, not a refusal)",
                        "content": _json(_ref("PlanValidation")),
                    },
                    **_BODY_ERRORS,
                    **openapi.errors(422, 503),
                },
            }
        },
        "/api/v1/plans/preview": {
            "post": {
                "summary": "What publishing a plan would change: the diff against the live plan and each "
                "tenant's timeline over the next weeks, and whether you may publish it",
                "operationId": "previewPlan",
                "tags": ["plans"],
                "security": openapi.SECURED,
                "parameters": [openapi.CSRF_HEADER_PARAM],
                "requestBody": {"required": True, "content": _json(_ref("PlanPreviewRequest"))},
                "responses": {
                    "200": {"description": "the preview", "content": _json(_ref("PlanPreview"))},
                    **_BODY_ERRORS,
                    "422": _PLAN_PROBLEMS,
                    **openapi.errors(503),
                },
            }
        },
        "/api/v1/plans": {
            "get": {
                "summary": "The published versions, newest first (engineer of any tenant)",
                "operationId": "listPlanVersions",
                "tags": ["plans"],
                "security": openapi.SECURED,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSIONS, "default": 50},
                    }
                ],
                "responses": {
                    "200": {"description": "the versions", "content": _json(_ref("PlanVersions"))},
                    **openapi.errors(400, 401, 403, 503),
                },
            },
            "post": {
                "summary": "Publish a plan as the next version, with a comment: live on every controller "
                "within a second (engineer of every tenant it changes; * for changes beyond tenants)",
                "operationId": "publishPlan",
                "tags": ["plans"],
                "security": openapi.SECURED,
                "parameters": [openapi.CSRF_HEADER_PARAM],
                "requestBody": {"required": True, "content": _json(_ref("PlanPublishRequest"))},
                "responses": {
                    "201": {
                        "description": "published: the new version is live shortly (activate_at)",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": _json(_ref("PlanChange")),
                    },
                    "200": {
                        "description": "nothing published: the plan is the live version already",
                        "content": _json(_ref("PlanChange")),
                    },
                    **_BODY_ERRORS,
                    "422": _PLAN_PROBLEMS,
                    **openapi.errors(409, 503),
                },
            },
        },
        "/api/v1/plans/live": {
            "get": {
                "summary": "The live version: its generation, metadata and text",
                "operationId": "showLivePlan",
                "tags": ["plans"],
                "security": openapi.SECURED,
                "responses": {
                    "200": {"description": "the live version", "content": _json(_ref("PlanLiveVersion"))},
                    **openapi.errors(401, 403, 404, 503),
                },
            }
        },
        "/api/v1/plans/{n}": {
            "get": {
                "summary": "One version: metadata and text",
                "operationId": "showPlanVersion",
                "tags": ["plans"],
                "security": openapi.SECURED,
                "parameters": [_NUMBER_PARAM],
                "responses": {
                    "200": {"description": "the version", "content": _json(_ref("PlanVersionText"))},
                    **openapi.errors(401, 403, 404, 503),
                },
            }
        },
        "/api/v1/plans/{n}/diff": {
            "get": {
                "summary": "Where a version routes differently from its predecessor or from the live version",
                "operationId": "diffPlanVersion",
                "tags": ["plans"],
                "security": openapi.SECURED,
                "parameters": [
                    _NUMBER_PARAM,
                    {
                        "name": "against",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["previous", "live"], "default": "previous"},
                    },
                    {
                        "name": "weeks",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_WEEKS, "default": 4},
                    },
                ],
                "responses": {
                    "200": {"description": "the differences", "content": _json(_ref("PlanVersionDiff"))},
                    **openapi.errors(400, 401, 403, 404, 409, 503),
                },
            }
        },
        "/api/v1/plans/{n}/rollback": {
            "post": {
                "summary": "Make an earlier version live again, with a comment (engineer of *)",
                "operationId": "rollbackPlan",
                "tags": ["plans"],
                "security": openapi.SECURED,
                "parameters": [_NUMBER_PARAM, openapi.CSRF_HEADER_PARAM],
                "requestBody": {"required": True, "content": _json(_ref("PlanRollbackRequest"))},
                "responses": {
                    "200": {
                        "description": "rolled back (changed false: that version's text is live already)",
                        "content": _json(_ref("PlanChange")),
                    },
                    **_BODY_ERRORS,
                    **openapi.errors(404, 422, 503),
                },
            }
        },
    },
    "components": {
        "schemas": {
            "PlanText": {
                "type": "object",
                "required": ["text"],
                "additionalProperties": False,
                "properties": {"text": _TEXT},
            },
            "PlanPreviewRequest": {
                "type": "object",
                "required": ["text"],
                "additionalProperties": False,
                "properties": {
                    "text": _TEXT,
                    "weeks": {"type": "integer", "minimum": 1, "maximum": MAX_WEEKS, "default": 4},
                },
            },
            "PlanPublishRequest": {
                "type": "object",
                "required": ["text", "comment"],
                "additionalProperties": False,
                "properties": {"text": _TEXT, "comment": _COMMENT},
            },
            "PlanRollbackRequest": {
                "type": "object",
                "required": ["comment"],
                "additionalProperties": False,
                "properties": {"comment": _COMMENT},
            },
            "PlanProblem": _PROBLEM_ITEM,
            "PlanProblems": {
                "allOf": [
                    _ref("Problem"),
                    {
                        "type": "object",
                        "properties": {"problems": {"type": "array", "items": _ref("PlanProblem")}},
                    },
                ]
            },
            "PlanValidation": {
                "type": "object",
                "required": ["ok", "tenants", "problems"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "tenants": {"type": "array", "items": {"type": "string"}},
                    "problems": {"type": "array", "items": _ref("PlanProblem")},
                },
            },
            "PlanDiff": _DIFF,
            "PlanPreview": {
                "allOf": [
                    _ref("PlanDiff"),
                    {
                        "type": "object",
                        "required": ["live_version", "live_generation", "touches", "may_publish", "missing"],
                        "properties": {
                            "live_version": {"type": ["integer", "null"]},
                            "live_generation": {"type": ["integer", "null"]},
                            "touches": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "the tenants the plan changes (* : beyond the tenants)",
                            },
                            "may_publish": {"type": "boolean"},
                            "missing": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "where you would need the engineer role to publish it",
                            },
                        },
                    },
                ]
            },
            "PlanVersionDiff": {
                "allOf": [
                    _ref("PlanDiff"),
                    {
                        "type": "object",
                        "required": ["version", "against", "base_version"],
                        "properties": {
                            "version": {"type": "integer"},
                            "against": {"type": "string", "enum": ["previous", "live"]},
                            "base_version": {"type": ["integer", "null"]},
                        },
                    },
                ]
            },
            "PlanLive": _LIVE,
            "PlanVersion": _VERSION,
            "PlanVersionText": {
                "allOf": [
                    _ref("PlanVersion"),
                    {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
                ]
            },
            "PlanVersions": {
                "type": "object",
                "required": ["live", "versions"],
                "properties": {
                    "live": {"oneOf": [_ref("PlanLive"), {"type": "null"}]},
                    "versions": {"type": "array", "items": _ref("PlanVersion")},
                },
            },
            "PlanLiveVersion": {
                "allOf": [
                    _ref("PlanLive"),
                    {
                        "type": "object",
                        "required": ["info", "text"],
                        "properties": {
                            "info": {
                                "type": "object",
                                "required": list(_INFO_PROPS),
                                "properties": _INFO_PROPS,
                            },
                            "text": {"type": "string"},
                        },
                    },
                ]
            },
            "PlanChange": _CHANGE,
        }
    },
}
