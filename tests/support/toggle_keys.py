"""The toggle key of the tests: a keyring in memory, and the same key in a mode-600 file.

Test-only; production keys come from a file of the operator's (``docs/security.md``)."""

from __future__ import annotations

from pathlib import Path

from routing.toggle_mac import ToggleKeyring, write_key_file

TEST_KEY = "test-only toggle key: 0123456789abcdef0123456789abcdef"
KEYRING = ToggleKeyring((TEST_KEY.encode(),))
OTHER_KEYRING = ToggleKeyring((b"another key, which no controller of the tests has",))


def key_file(folder: Path) -> Path:
    """A key file holding the tests' key, readable by its owner only, in ``folder``."""
    return write_key_file(folder / "toggle.key", TEST_KEY)
