"""The container's health check: 0 when the process answers ``/health`` on loopback, else 1.

Standard library only (the image has no curl). The address is the ops listener's
(``CALLROUTER_OPS_PORT``, ``serve`` and ``records deliver``) unless a URL is given, e.g.
``https://127.0.0.1:8080/health`` for ``web``: the process checks itself on loopback, so the
web service's certificate (made out to its public name) is not verified here.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 2.0


def main(argv: list[str]) -> int:
    port = os.environ.get("CALLROUTER_OPS_PORT", "9100")
    url = argv[1] if len(argv) > 1 else f"http://127.0.0.1:{port}/health"
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:", "http://[::1]:", "https://[::1]:")):
        print(f"healthcheck: {url} is not a loopback URL", file=sys.stderr)
        return 2
    context = ssl._create_unverified_context() if url.startswith("https:") else None  # noqa: S323 - loopback, self
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:  # noqa: S310 - checked above
            healthy = response.status == 200
    except (OSError, urllib.error.URLError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
