"""What the deployment tests share: the repo root, the settings' variable names, the CLI."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

from callrouter import settings
from callrouter.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def setting_variables() -> set[str]:
    """Every CALLROUTER_* variable a command reads: each setting's, and a secret's ``_FILE``."""
    names = set()
    for row in settings.rows():
        names.add(row.env)
        if row.secret:
            names.add(row.env_file)
    return names


def parse_command(argv: list[str]) -> argparse.Namespace:
    """``callrouter ARGV`` as the CLI parses it; AssertionError (with argparse's message) if not."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"callrouter {' '.join(argv)}: {err.getvalue().strip()}") from None
