"""Test TLS certificates, made by ``openssl`` for the test that needs them (never kept)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(folder: Path, name: str = "") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (valid one day) and its key, in ``folder``:
    ``(<name>cert.pem, <name>key.pem)``. The certificate is its own CA: give it as the
    client's CA file."""
    cert, key = folder / f"{name}cert.pem", folder / f"{name}key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key
