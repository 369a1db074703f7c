"""The supervisors' and engineers' service: an authenticated HTTP API and web page over the
routing state (toggles, plan versions, live view) and the contact records.

Writing a feature (``web/<feature>.py``)::

    from web import openapi
    from web.auth import require, csrf_token
    from web.context import REDIS, now
    from web.problems import Problem, read_model

    async def switch(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        who = require(request, "supervisor", tenant)        # 401 / 403 problem otherwise
        body = await read_model(request, SwitchBody)        # 400 / 415 / 422 problem otherwise
        ...  # audit with by=who.by (the authenticated user id)

    def setup(app: web.Application) -> None:
        app.router.add_post("/api/v1/tenants/{tenant}/toggles/{kind}", switch)
        openapi.contribute(app, {"paths": {...}, "components": {"schemas": {...}}})

and add the module to ``FEATURES`` in ``web/app.py``. The middlewares have already
authenticated the request (bearer token or session cookie) and checked the CSRF token of an
unsafe cookie request; errors raised as :class:`web.problems.Problem` become
``application/problem+json``. Tests: ``tests/support/web.py`` and the fixtures of
``tests/web/conftest.py``.
"""
