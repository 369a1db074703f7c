"""The web page's templates: one Jinja2 environment, autoescaping every value.

Every page extends ``base.html.j2`` and draws its parts with the macros in ``partials/``
(queue and partner tiles, toggle card, audit table, confirmation step, form fields). The
environment is strict: a name the template uses and the page did not pass is an error, never
an empty string on a supervisor's screen."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"


def page_environment(extra_dirs: Sequence[Path] = ()) -> Environment:
    """The page templates (``extra_dirs`` first, for a page kept elsewhere, e.g. a test's)."""
    return Environment(
        loader=FileSystemLoader([*extra_dirs, TEMPLATES_DIR]),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_macro(env: Environment, template: str, macro: str, *args: Any, **kwargs: Any) -> str:
    """One macro of a template alone, e.g. a tile to send in a server-sent event."""
    module = env.get_template(template).make_module({"static_url": STATIC_URL})
    return str(getattr(module, macro)(*args, **kwargs))


def render_page(env: Environment, name: str, **context: Any) -> str:
    """Render one page; ``static_url`` defaults to where the service serves ``web/static``."""
    context.setdefault("static_url", STATIC_URL)
    return env.get_template(name).render(**context)
