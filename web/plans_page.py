"""The engineers' plans page: versions (the live one marked), a version's differences against
its predecessor and the live one, upload → check (every problem with its line) → preview →
publish with a comment after a confirmation step, and rollback with a comment after one.

Server-rendered forms that work without script; every form posts the session's CSRF token
(checked by ``web/auth.py``). The rules of who may publish and roll back are those of the API
(``web/plans.py``): the page refuses what the API would, with the same words.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from routing import plan_store
from web import openapi
from web.auth import IDENTITY, csrf_token
from web.context import REDIS, keys_of, now
from web.identity import Identity
from web.plans import (
    CHANGES,
    ENGINEER,
    Candidate,
    PlanRefused,
    candidate,
    compare,
    may_publish,
    problem_data,
    touched_list,
)
from web.problems import Problem, read_form
from web.templating import page_environment, render_page

ENV = page_environment()
PREVIEW_WEEKS = 4
VERSIONS_SHOWN = 50


def _identity(request: web.Request) -> Identity:
    """The signed-in engineer; to the login page when nobody is signed in."""
    identity: Identity | None = request.get(IDENTITY)
    if identity is None:
        raise web.HTTPSeeOther("/login")
    if not any(identity.may(ENGINEER, tenant) for tenant in identity.roles):
        raise PageRefused(403, f"{identity.user_id} is not an engineer of any tenant.")
    return identity


class PageRefused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _html(
    request: web.Request, identity: Identity, template: str, status: int = 200, **context: Any
) -> web.Response:
    html = render_page(
        ENV,
        template,
        user={"name": identity.display_name, "role": "engineer"},
        csrf_token=csrf_token(request) or "",
        active_nav="plans",
        **context,
    )
    return web.Response(status=status, text=html, content_type="text/html")


def _field(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    if isinstance(value, str):
        return value
    return ""


def _uploaded(form: MultiDictProxy[Any]) -> str:
    """The plan's text: the chosen file, or else the pasted text."""
    upload = form.get("plan_file")
    if upload is not None and not isinstance(upload, str):
        raw = upload.file.read()
        if raw:
            try:
                return str(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise PageRefused(422, "The file is not UTF-8 text.") from None
    return _field(form, "text")


def _number(request: web.Request) -> int:
    return int(request.match_info["n"])


MESSAGES = {
    "published": "Version {n} published: every controller switches to it within a second.",
    "rolledback": "Rolled back: version {n} is live again; every controller switches within a second.",
    "unchanged": "Nothing changed: version {n} is the live plan already.",
}


async def plans_page(request: web.Request) -> web.Response:
    identity = _identity(request)
    redis = request.app[REDIS]
    live = await plan_store.live(redis, keys=keys_of(request))
    found = await plan_store.versions(redis, VERSIONS_SHOWN, keys=keys_of(request))
    messages = []
    for key, text in MESSAGES.items():
        raw = request.query.get(key, "")
        if raw.isdigit() and len(raw) < 19:
            messages.append({"level": "success", "text": text.format(n=int(raw))})
    return _html(
        request,
        identity,
        "plans.html.j2",
        title="Routing plans",
        messages=messages,
        live=live,
        versions=found,
        may_rollback=identity.may(ENGINEER, None),
        text="",
        problems=[],
    )


async def check(request: web.Request) -> web.Response:
    """Upload → every problem with its line, or the preview with the publish form."""
    identity = _identity(request)
    form = await read_form(request)
    text = _uploaded(form)
    if not text.strip():
        nothing = {
            "severity": "error",
            "path": "(plan)",
            "line": None,
            "message": "choose a file or paste a plan",
        }
        return await _upload_again(request, identity, "", [nothing])
    try:
        found = await candidate(request, text)
        preview = await compare(request, found.live_text, text, now(request), PREVIEW_WEEKS)
    except PlanRefused as exc:
        return await _upload_again(request, identity, text, [problem_data(p) for p in exc.problems])
    return _preview(request, identity, text, found, preview, comment="", error=None)


async def _upload_again(
    request: web.Request, identity: Identity, text: str, problems: list[dict[str, Any]]
) -> web.Response:
    redis = request.app[REDIS]
    return _html(
        request,
        identity,
        "plans.html.j2",
        status=422,
        title="Routing plans",
        messages=[],
        live=await plan_store.live(redis, keys=keys_of(request)),
        versions=await plan_store.versions(redis, VERSIONS_SHOWN, keys=keys_of(request)),
        may_rollback=identity.may(ENGINEER, None),
        text=text,
        problems=problems,
    )


def _preview(
    request: web.Request,
    identity: Identity,
    text: str,
    found: Candidate,
    preview: dict[str, Any],
    *,
    comment: str,
    error: str | None,
) -> web.Response:
    missing = may_publish(identity, found.touched)
    return _html(
        request,
        identity,
        "plan_preview.html.j2",
        status=422 if error else 200,
        title="Preview the plan",
        messages=[],
        text=text,
        sha256=plan_store.sha256_text(text),
        live=found.live,
        touches=touched_list(found.touched),
        missing=missing,
        preview=preview,
        weeks=PREVIEW_WEEKS,
        comment=comment,
        error=error,
    )


def _comment_error(identity: Identity, comment: str) -> str | None:
    try:
        plan_store.check_words(identity.by, comment)
    except plan_store.PlanStoreError as exc:
        return str(exc).capitalize() + "."
    return None


async def confirm_publish(request: web.Request) -> web.Response:
    """The confirmation step: exactly what will be published, and by whom."""
    identity = _identity(request)
    form = await read_form(request)
    text, comment = _field(form, "text"), _field(form, "comment")
    try:
        found = await candidate(request, text)
    except PlanRefused as exc:
        return await _upload_again(request, identity, text, [problem_data(p) for p in exc.problems])
    error = _comment_error(identity, comment)
    missing = may_publish(identity, found.touched)
    if error or missing:
        preview = await compare(request, found.live_text, text, now(request), PREVIEW_WEEKS)
        return _preview(request, identity, text, found, preview, comment=comment, error=error)
    rows = [
        {"label": "Comment", "value": comment.strip()},
        {"label": "Published by", "value": identity.by},
        {"label": "Changes", "value": ", ".join(touched_list(found.touched)).replace("*", "every council")},
        {"label": "Live now", "value": f"version {found.live.version}" if found.live else "nothing"},
        {"label": "SHA-256", "value": plan_store.sha256_text(text)},
    ]
    return _html(
        request,
        identity,
        "plan_confirm.html.j2",
        title="Publish the plan",
        messages=[],
        question="Publish this plan now?",
        rows=rows,
        warning="Every controller switches to it within a second; calls are routed by it from then on.",
        action="/plans/publish",
        hidden={"text": text, "comment": comment},
        confirm_label="Publish",
        cancel_href="/plans",
    )


async def do_publish(request: web.Request) -> web.Response:
    identity = _identity(request)
    form = await read_form(request)
    text, comment = _field(form, "text"), _field(form, "comment")
    async with request.app[CHANGES]:  # the role check and the write with no other change between
        try:
            found = await candidate(request, text)
        except PlanRefused as exc:
            return await _upload_again(request, identity, text, [problem_data(p) for p in exc.problems])
        missing = may_publish(identity, found.touched)
        error = _comment_error(identity, comment)
        if not missing and not error:
            change = await plan_store.publish(
                request.app[REDIS], text, identity.by, comment, now(request), keys=keys_of(request)
            )
            key = "published" if change.changed else "unchanged"
            raise web.HTTPSeeOther(f"/plans?{key}={change.live.version}")
    preview = await compare(request, found.live_text, text, now(request), PREVIEW_WEEKS)
    return _preview(request, identity, text, found, preview, comment=comment, error=error)


async def version_page(request: web.Request) -> web.Response:
    identity = _identity(request)
    redis, number = request.app[REDIS], _number(request)
    version = await plan_store.get(redis, number, keys=keys_of(request))
    if version is None:
        raise PageRefused(404, f"There is no version {number}.")
    live = await plan_store.live(redis, keys=keys_of(request))
    previous = await plan_store.get(redis, number - 1, keys=keys_of(request)) if number > 1 else None
    stored_live = (
        await plan_store.get(redis, live.version, keys=keys_of(request))
        if live and live.version != number
        else None
    )
    at = now(request)
    against_previous = (
        await compare(request, previous.text, version.text, at, PREVIEW_WEEKS) if previous else None
    )
    against_live = (
        await compare(request, stored_live.text, version.text, at, PREVIEW_WEEKS) if stored_live else None
    )
    return _html(
        request,
        identity,
        "plan_version.html.j2",
        title=f"Plan version {number}",
        messages=[],
        version=version,
        live=live,
        against_previous=against_previous,
        against_live=against_live,
        weeks=PREVIEW_WEEKS,
        may_rollback=identity.may(ENGINEER, None),
        comment="",
        error=None,
    )


def _rollback_identity(request: web.Request) -> Identity:
    identity = _identity(request)
    if not identity.may(ENGINEER, None):
        raise PageRefused(
            403, f"Only an engineer of every council (*) may roll back; {identity.user_id} is not."
        )
    return identity


async def confirm_rollback(request: web.Request) -> web.Response:
    identity = _rollback_identity(request)
    form = await read_form(request)
    redis, number, comment = request.app[REDIS], _number(request), _field(form, "comment")
    version = await plan_store.get(redis, number, keys=keys_of(request))
    if version is None:
        raise PageRefused(404, f"There is no version {number}.")
    live = await plan_store.live(redis, keys=keys_of(request))
    error = _comment_error(identity, comment)
    if error:
        return _html(
            request,
            identity,
            "plan_version.html.j2",
            status=422,
            title=f"Plan version {number}",
            messages=[],
            version=version,
            live=live,
            against_previous=None,
            against_live=None,
            weeks=PREVIEW_WEEKS,
            may_rollback=True,
            comment=comment,
            error=error,
        )
    rows = [
        {"label": "Make live", "value": f"version {number} ({version.info.comment})"},
        {"label": "Live now", "value": f"version {live.version}" if live else "nothing"},
        {"label": "Comment", "value": comment.strip()},
        {"label": "Rolled back by", "value": identity.by},
    ]
    return _html(
        request,
        identity,
        "plan_confirm.html.j2",
        title="Roll back the plan",
        messages=[],
        question=f"Roll back to version {number} now?",
        rows=rows,
        warning="Every controller switches to it within a second, for every council.",
        action=f"/plans/{number}/rollback",
        hidden={"comment": comment},
        confirm_label=f"Roll back to version {number}",
        cancel_href=f"/plans/{number}",
    )


async def do_rollback(request: web.Request) -> web.Response:
    identity = _rollback_identity(request)
    form = await read_form(request)
    number = _number(request)
    try:
        async with request.app[CHANGES]:
            change = await plan_store.rollback(
                request.app[REDIS],
                number,
                identity.by,
                _field(form, "comment"),
                now(request),
                keys=keys_of(request),
            )
    except plan_store.PlanStoreError as exc:
        status = 404 if str(exc).startswith("no version") else 422
        raise PageRefused(status, str(exc).capitalize() + ".") from None
    key = "rolledback" if change.changed else "unchanged"
    raise web.HTTPSeeOther(f"/plans?{key}={change.live.version}")


def _page(handler: Any) -> Any:
    """A page handler whose refusals are drawn as a page (the API's are problem bodies)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except PageRefused as exc:
            identity: Identity | None = request.get(IDENTITY)
            if identity is None:
                raise web.HTTPSeeOther("/login") from None
            return _html(request, identity, "plan_refused.html.j2", status=exc.status, title="Routing plans",
                         messages=[{"level": "error", "text": exc.text}])  # fmt: skip
        except PlanRefused as exc:  # a stored version that no longer validates (should not happen)
            identity = _identity(request)
            return _html(request, identity, "plan_refused.html.j2", status=409, title="Routing plans",
                         messages=[{"level": "error", "text": exc.detail}])  # fmt: skip
        except Problem as exc:
            identity = request.get(IDENTITY)
            if identity is None or exc.status >= 500:
                raise
            return _html(request, identity, "plan_refused.html.j2", status=exc.status, title="Routing plans",
                         messages=[{"level": "error", "text": exc.detail}])  # fmt: skip
        return response

    return wrapped


def setup(app: web.Application) -> None:
    number = r"{n:[1-9][0-9]{0,17}}"
    app.router.add_get("/plans", _page(plans_page))
    app.router.add_post("/plans/check", _page(check))
    app.router.add_post("/plans/confirm", _page(confirm_publish))
    app.router.add_post("/plans/publish", _page(do_publish))
    app.router.add_get(f"/plans/{number}", _page(version_page))
    app.router.add_post(f"/plans/{number}/rollback/confirm", _page(confirm_rollback))
    app.router.add_post(f"/plans/{number}/rollback", _page(do_rollback))
    openapi.contribute(app, OPENAPI)


# --- the OpenAPI part: the page's routes are documented too (HTML answers) ------------------------

_HTML = {"text/html": {"schema": {"type": "string"}}}
_TO_LOGIN = {
    "description": "not signed in: to the login page; or done: to the plans page with a message",
    "headers": {"Location": {"schema": {"type": "string"}}},
}


def _html_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": _HTML}


_REFUSED = {
    "400": _html_answer("the form cannot be read"),
    "403": _html_answer("not an engineer (of any council; of * to roll back)"),
    "413": {"$ref": "#/components/responses/TooLarge"},
    "415": _html_answer("not a form"),
    "503": {"$ref": "#/components/responses/Unavailable"},
}
_FORM = {"type": "string", "description": "the session's CSRF token (a bearer token needs none)"}
_PLAN_FIELDS = {
    "csrf_token": _FORM,
    "text": {"type": "string", "description": "the plan's YAML text"},
}
_NUMBER = {
    "name": "n",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999},
}


def _form(properties: dict[str, Any], multipart: bool = False) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties}
    content = {"application/x-www-form-urlencoded": {"schema": schema}}
    if multipart:
        upload = {**properties, "plan_file": {"type": "string", "format": "binary"}}
        content["multipart/form-data"] = {"schema": {"type": "object", "properties": upload}}
    return {"required": True, "content": content}


def _operation(summary: str, operation_id: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["plans page"],
        "security": openapi.SECURED,
        "responses": {**responses, **_REFUSED},
        **more,
    }


OPENAPI: dict[str, Any] = {
    "paths": {
        "/plans": {
            "get": _operation(
                "The plans page: the live version, every version, the upload form",
                "plansPage",
                {"200": _html_answer("the page"), "303": _TO_LOGIN},
            )
        },
        "/plans/check": {
            "post": _operation(
                "Check an uploaded plan: its problems with their lines, or its preview and the publish form",
                "plansPageCheck",
                {
                    "200": _html_answer("the preview"),
                    "303": _TO_LOGIN,
                    "422": _html_answer("the plan's problems"),
                },
                requestBody=_form(_PLAN_FIELDS, multipart=True),
            )
        },
        "/plans/confirm": {
            "post": _operation(
                "The confirmation step of a publish",
                "plansPageConfirm",
                {
                    "200": _html_answer("the confirmation step, or the preview with why you cannot publish"),
                    "303": _TO_LOGIN,
                    "422": _html_answer("the plan's problems, or the comment's"),
                },
                requestBody=_form({**_PLAN_FIELDS, "comment": {"type": "string"}}),
            )
        },
        "/plans/publish": {
            "post": _operation(
                "Publish (after the confirmation step)",
                "plansPagePublish",
                {
                    "200": _html_answer("the preview with why you cannot publish"),
                    "303": _TO_LOGIN,
                    "422": _html_answer("the plan's problems, or the comment's"),
                },
                requestBody=_form({**_PLAN_FIELDS, "comment": {"type": "string"}}),
            )
        },
        "/plans/{n}": {
            "get": _operation(
                "A version: its differences against its predecessor and the live one, its text, rollback",
                "plansPageVersion",
                {
                    "200": _html_answer("the version's page"),
                    "303": _TO_LOGIN,
                    "404": _html_answer("no such version"),
                    "409": _html_answer("a stored version no longer validates"),
                },
                parameters=[_NUMBER],
            )
        },
        "/plans/{n}/rollback/confirm": {
            "post": _operation(
                "The confirmation step of a rollback",
                "plansPageRollbackConfirm",
                {
                    "200": _html_answer("the confirmation step"),
                    "303": _TO_LOGIN,
                    "404": _html_answer("no such version"),
                    "422": _html_answer("the comment's problem"),
                },
                parameters=[_NUMBER],
                requestBody=_form({"csrf_token": _FORM, "comment": {"type": "string"}}),
            )
        },
        "/plans/{n}/rollback": {
            "post": _operation(
                "Roll back (after the confirmation step)",
                "plansPageRollback",
                {
                    "303": _TO_LOGIN,
                    "404": _html_answer("no such version"),
                    "422": _html_answer("the comment's problem"),
                },
                parameters=[_NUMBER],
                requestBody=_form({"csrf_token": _FORM, "comment": {"type": "string"}}),
            )
        },
    }
}
