"""Where each user's embedded cluster lives: PGQUEUE_EMBEDDED_DIR, XDG_DATA_HOME, the home directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgqueue.embedded import data_dir, default_data_dir
from pgqueue.settings import Settings


def test_default_is_under_the_users_own_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/alice")
    assert default_data_dir() == Path("/home/alice/.local/share/pgqueue/embedded")


def test_xdg_data_home_wins_over_the_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    monkeypatch.setenv("HOME", "/home/alice")
    assert default_data_dir() == Path("/srv/data/pgqueue/embedded")


def test_an_empty_xdg_data_home_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "")
    monkeypatch.setenv("HOME", "/root")
    assert default_data_dir() == Path("/root/.local/share/pgqueue/embedded")


def test_pgqueue_embedded_dir_wins_over_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    settings = Settings(embedded_dir=Path("/tmp/mine"))
    assert data_dir(settings) == Path("/tmp/mine")
    assert data_dir(Settings(embedded_dir=None)) == Path("/srv/data/pgqueue/embedded")
