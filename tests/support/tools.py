"""A test that needs a tool this machine may lack (Chromium, Docker, a PostgreSQL server built with OpenSSL).

On a developer's machine without the tool the test is skipped, with a note on how to get it. In CI (``CI`` set to
``true``, as ``.ci/run`` sets it) it fails instead: ``make test`` installs every one of them there, so a missing tool
is a broken set-up, never a suite that passes without running its tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def tool_missing(note: str) -> NoReturn:
    """Skip the test with ``note`` (what is missing, and how to get it), or in CI fail it."""
    if in_ci():
        pytest.fail(f"{note}. CI is set (CI=true): a test that needs a tool fails without it instead of skipping")
    pytest.skip(note)
