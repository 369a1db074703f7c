"""The page templates without a browser: the signed-out frame, strictness, escaping, and the
form field's ties between a control and its hint and error."""

from __future__ import annotations

import re

import pytest
from jinja2 import UndefinedError

from web.templating import page_environment, render_macro, render_page


def test_the_signed_out_frame_has_no_navigation_and_no_sign_out() -> None:
    html = render_page(page_environment(), "base.html.j2", title="Sign in")
    assert "<title>Sign in – callrouter</title>" in html
    assert 'aria-label="Main"' not in html
    assert "Sign out" not in html
    assert 'href="#main"' in html


def test_the_signed_in_frame_marks_the_current_section_and_posts_sign_out_with_the_token() -> None:
    html = render_page(
        page_environment(),
        "base.html.j2",
        title="Audit",
        user={"name": "a.khan@northshire.example"},
        csrf_token="t0k3n",
        active_nav="audit",
    )
    assert re.search(r'href="/audit" aria-current="page">Audit<', html)
    assert html.count('aria-current="page"') == 1
    assert '<form class="site-header__logout" method="post" action="/logout">' in html
    assert '<input type="hidden" name="csrf_token" value="t0k3n">' in html


def test_a_name_the_page_did_not_pass_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(UndefinedError):
        render_page(page_environment(), "base.html.j2")
    with pytest.raises(UndefinedError):  # signed in, but no CSRF token for the sign-out form
        render_page(page_environment(), "base.html.j2", title="Live", user={"name": "x"})


def test_every_value_is_escaped() -> None:
    html = render_page(
        page_environment(),
        "base.html.j2",
        title='"><script>',
        messages=[{"level": "error", "text": "<b>x</b>"}],
    )
    assert "<script>" not in html.split("</head>")[1]
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "&#34;&gt;&lt;script&gt;" in html


def test_a_field_ties_its_hint_and_error_to_the_control() -> None:
    html = render_macro(
        page_environment(),
        "partials/forms.html.j2",
        "field",
        "until",
        "Until",
        hint="Date and time",
        error="Must be in the future",
    )
    assert 'aria-describedby="field-until-hint field-until-error"' in html
    assert 'aria-invalid="true"' in html
    assert 'id="field-until-hint"' in html
    assert 'id="field-until-error"' in html
    assert '<label class="field__label" for="field-until">Until</label>' in html
    plain = render_macro(page_environment(), "partials/forms.html.j2", "field", "q", "Search")
    assert "aria-describedby" not in plain
    assert "aria-invalid" not in plain


def test_a_password_field_never_echoes_its_value() -> None:
    html = render_macro(
        page_environment(),
        "partials/forms.html.j2",
        "field",
        "password",
        "Password",
        "secret",
        type="password",
    )
    assert "secret" not in html
