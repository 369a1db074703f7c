"""Queued callbacks for supervisors: the pending ones of a council, and cancelling one.

- ``GET /api/v1/tenants/{tenant}/callbacks`` (viewer of that tenant): the council's callbacks
  still holding a place in a queue (pending, or being dialled), queue by queue in join order,
  with their attempts so far. The caller's number is masked (the dialler, the CRM and the
  records export alone see it whole).
- ``POST /api/v1/tenants/{tenant}/callbacks/{id}/cancel`` (supervisor of that tenant), body
  ``{"reason": "..."}``: the callback ends as ``cancelled`` and leaves its queue, audited
  (``callback.cancel``, the authenticated user, the reason) in the same step. A dial under way is
  not hung up; its attempt is still recorded when it ends. 409 when it had ended already.

The store is ``routing/callbacks.py``; the dialler ``ivr/dialler.py``; ``docs/callbacks.md``.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from records.dispositions import submit_callback
from routing.callbacks import (
    CANCEL_REASON_MAX,
    CallbackRefused,
    StoredCallback,
    cancel_for_supervisor,
    supervisor_view,
    tenant_callbacks,
)
from routing.replicas import NotReplicated
from web import openapi
from web.auth import require
from web.context import CONFIG, REDIS, keys_of, now
from web.problems import Problem, read_model
from web.records import RECORDS
from web.toggles import _TENANT, _TENANT_PARAM, tenant_zone

log = structlog.get_logger("callrouter.web.callbacks")
_ID = r"{callback:cb-[0-9a-f]{20}}"


class CancelBody(BaseModel):
    """The body of ``POST .../callbacks/{id}/cancel``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=CANCEL_REASON_MAX)


async def get_callbacks(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    require(request, "viewer", tenant)
    await tenant_zone(request, tenant)
    found = await tenant_callbacks(request.app[REDIS], keys_of(request), tenant)
    places: dict[str, int] = {}
    rows = []
    for cb in found:
        places[cb.asterisk_queue] = places.get(cb.asterisk_queue, 0) + 1
        rows.append(supervisor_view(cb, places[cb.asterisk_queue]))
    return web.json_response({"tenant": tenant, "callbacks": rows})


async def post_cancel(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    identity = require(request, "supervisor", tenant)
    await tenant_zone(request, tenant)
    body = await read_model(request, CancelBody)
    ident = request.match_info["callback"]
    try:
        stored, before = await cancel_for_supervisor(
            request.app[REDIS],
            keys_of(request),
            tenant=tenant,
            ident=ident,
            by=identity.user_id,
            reason=body.reason,
            now=now(request),
            wait=request.app[CONFIG].redis_wait,
        )
    except LookupError as exc:
        raise Problem(404, str(exc)) from None
    except CallbackRefused as exc:
        status = 409 if "ended already" in str(exc) else 422
        raise Problem(status, str(exc)) from None
    except NotReplicated as exc:
        raise Problem(503, f"not confirmed: {exc}; look at the callback and try again") from None
    log.info("callback.cancelled", tenant=tenant, callback=ident, by=identity.user_id, was=before)
    recorded = await _to_record(request, stored, now(request).timestamp())
    return web.json_response(
        {"id": ident, "tenant": tenant, "queue": stored.queue, "state": "cancelled", "was": before,
         "recorded": recorded}
    )  # fmt: skip


async def _to_record(request: web.Request, stored: StoredCallback, at: float) -> bool:
    """The cancel into the call's contact record (``callback.outcome: cancelled``, the attempts so
    far) when this service has contact records (``records.dispositions.submit_callback``, as
    ``callrouter callbacks cancel --direct`` does). Once per callback (its request id)."""
    source = request.app.get(RECORDS)
    if source is None:
        return False
    try:
        plan = await source.plan()
    except Exception as exc:  # the plan cannot be read just now: the cancel stands, unrecorded
        log.warning("callback.cancel_not_recorded", callback=stored.callback_id, error=type(exc).__name__)
        return False
    try:
        return await submit_callback(
            request.app[REDIS], plan.centre, stored, "cancelled", by="web", at=at, keys=keys_of(request)
        )
    except RedisError as exc:  # the cancel stood and was audited: say it is not in the record
        log.warning("callback.cancel_not_recorded", callback=stored.callback_id, error=type(exc).__name__)
        return False


def setup(app: web.Application) -> None:
    app.router.add_get(f"/api/v1/tenants/{_TENANT}/callbacks", get_callbacks)
    app.router.add_post(f"/api/v1/tenants/{_TENANT}/callbacks/{_ID}/cancel", post_cancel)
    openapi.contribute(app, _openapi())


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _openapi() -> dict[str, Any]:
    number = {"type": "number", "description": "Unix epoch seconds"}
    attempt = {
        "type": "object",
        "required": ["dial", "started_at", "ended_at", "outcome", "adviser"],
        "properties": {
            "dial": {"type": "integer", "minimum": 1},
            "started_at": number,
            "ended_at": number,
            "outcome": {
                "type": "string",
                "enum": [
                    "answered",
                    "short-answer",
                    "no-answer",
                    "busy",
                    "failed",
                    "no-adviser",
                    "interrupted",
                ],
            },
            "adviser": {"type": "string", "description": "the adviser who answered (empty: none)"},
        },
    }
    callback = {
        "type": "object",
        "required": [
            "id",
            "tenant",
            "queue",
            "state",
            "position",
            "number",
            "language",
            "call_id",
            "joined_at",
            "requested_at",
            "next_at",
            "attempts",
            "outcome",
            "attempt_log",
        ],
        "properties": {
            "id": {"type": "string", "pattern": "^cb-[0-9a-f]{20}$"},
            "tenant": {"type": "string"},
            "queue": {"type": "string", "description": "the plan's queue"},
            "state": {"type": "string", "enum": ["pending", "dialling"]},
            "position": {"type": ["integer", "null"], "description": "its place among its queue's callbacks"},
            "number": {"type": "string", "description": "the number to call back, masked"},
            "language": {"type": "string"},
            "call_id": {"type": "string", "description": "the original call's contact record id"},
            "joined_at": {**number, "description": "when the call joined the queue: its place"},
            "requested_at": number,
            "next_at": {**number, "description": "not dialled before this"},
            "attempts": {"type": "integer", "description": "times the caller was dialled"},
            "outcome": {"type": ["string", "null"]},
            "attempt_log": {"type": "array", "items": _ref("CallbackAttempt")},
        },
    }
    callback_param = {
        "name": "callback",
        "in": "path",
        "required": True,
        "description": "the callback's id",
        "schema": {"type": "string", "pattern": "^cb-[0-9a-f]{20}$"},
    }
    return {
        "paths": {
            "/api/v1/tenants/{tenant}/callbacks": {
                "get": {
                    "summary": "The council's queued callbacks still waiting (or being dialled)",
                    "operationId": "listCallbacks",
                    "security": openapi.SECURED,
                    "parameters": [_TENANT_PARAM],
                    "responses": {
                        "200": {"description": "the callbacks", "content": _json(_ref("TenantCallbacks"))},
                        **openapi.errors(401, 403, 404, 503),
                    },
                }
            },
            "/api/v1/tenants/{tenant}/callbacks/{callback}/cancel": {
                "post": {
                    "summary": "Cancel a queued callback, with a reason",
                    "description": "Needs the supervisor role for the tenant. Audited (callback.cancel) "
                    "with the authenticated user. A dial under way is not hung up.",
                    "operationId": "cancelCallback",
                    "security": openapi.SECURED,
                    "parameters": [_TENANT_PARAM, callback_param, openapi.CSRF_HEADER_PARAM],
                    "requestBody": {"required": True, "content": _json(_ref("CallbackCancel"))},
                    "responses": {
                        "200": {"description": "cancelled", "content": _json(_ref("CallbackCancelled"))},
                        **openapi.errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "CallbackAttempt": attempt,
                "Callback": callback,
                "TenantCallbacks": {
                    "type": "object",
                    "required": ["tenant", "callbacks"],
                    "properties": {
                        "tenant": {"type": "string"},
                        "callbacks": {"type": "array", "items": _ref("Callback")},
                    },
                },
                "CallbackCancel": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["reason"],
                    "properties": {
                        "reason": {"type": "string", "minLength": 1, "maxLength": CANCEL_REASON_MAX}
                    },
                },
                "CallbackCancelled": {
                    "type": "object",
                    "required": ["id", "tenant", "queue", "state", "was", "recorded"],
                    "properties": {
                        "id": {"type": "string"},
                        "tenant": {"type": "string"},
                        "queue": {"type": "string"},
                        "state": {"type": "string", "enum": ["cancelled"]},
                        "was": {"type": "string", "enum": ["pending", "dialling"]},
                        "recorded": {
                            "type": "boolean",
                            "description": "whether the cancel went into the call's contact record "
                            "(false: this service keeps no records, or they could not be reached)",
                        },
                    },
                },
            }
        },
    }
