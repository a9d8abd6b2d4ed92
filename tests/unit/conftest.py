"""Unit tests run without a database and without the caller's configuration.

Every test starts in an empty working directory (so no `.env` is read) with no `PGQUEUE_*`
variable set, so what a test sees comes only from what it sets itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty working directory and an environment without `PGQUEUE_*` variables."""
    for name in list(os.environ):
        if name.upper().startswith("PGQUEUE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path
