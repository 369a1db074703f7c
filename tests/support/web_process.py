"""``callrouter web`` as a real process on a free loopback port, and users with API tokens made
through ``callrouter users`` (as an administrator would)::

    with running_web(redis_url) as base_url:
        token_file = user_token_file(redis_url, tmp_path, "eng", ["*:engineer"])
"""

from __future__ import annotations

import io
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from callrouter.cli import main
from tests.support.processes import stop_tree
from tests.support.redis_server import free_port
from tests.support.web import PASSWORD

START_TIMEOUT_S = 20.0


@contextmanager
def running_web(
    redis_url: str,
    *,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
    log: Path | None = None,
    lifetime_s: int | None = None,
) -> Iterator[str]:
    """The base URL of a ``callrouter web`` on 127.0.0.1 (``port``, or a free one; ``extra_env``:
    more settings; ``tls``: its certificate and key, then it serves HTTPS, checked here against
    that certificate; ``log``: a file for its output; ``lifetime_s``: run under ``timeout``,
    ending by itself after that long), stopped (SIGTERM, then kill) after use."""
    port = port or free_port()
    env = {**os.environ, "CALLROUTER_REDIS": redis_url, "CALLROUTER_WEB_PORT": str(port),
           "CALLROUTER_WEB_COOKIE_SECURE": "false", "CALLROUTER_LOG_LEVEL": "warning",
           **(extra_env or {})}  # fmt: skip
    env.pop("CALLROUTER_CONFIG", None)
    context: ssl.SSLContext | None = None
    if tls is not None:
        env.update({"CALLROUTER_WEB_TLS_CERT": str(tls[0]), "CALLROUTER_WEB_TLS_KEY": str(tls[1])})
        context = ssl.create_default_context(cafile=str(tls[0]))
    out = log.open("ab") if log is not None else None
    bounded = ["timeout", str(lifetime_s)] if lifetime_s is not None else []
    process = subprocess.Popen(
        [*bounded, sys.executable, "-m", "callrouter.cli", "web"],
        env=env,
        stdout=out or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
    )
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=1, context=context):
                    break
            except OSError:
                assert process.poll() is None, "callrouter web exited"
                assert time.monotonic() < deadline, "callrouter web did not start"
                time.sleep(0.1)
        yield base
    finally:
        stop_tree(process, timeout_s=10)  # under `timeout`, a kill of `timeout` alone would leave the web
        if out is not None:
            out.close()


def user_token_file(redis_url: str, folder: Path, user: str, roles: Sequence[str]) -> Path:
    """Add ``user`` with ``roles`` (``TENANT:ROLE``) and write a new API token of theirs to a file."""
    secret = folder / f"{user}.password"
    secret.write_text(PASSWORD)
    argv = ["users", "add", user, "--password-file", str(secret), "--redis", redis_url]
    for role in roles:
        argv += ["--role", role]
    assert main(argv) == 0
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["users", "token", user, "--name", "tests", "--redis", redis_url]) == 0
    path = folder / f"{user}.token"
    path.write_text(out.getvalue().strip().splitlines()[-1] + "\n")
    return path
