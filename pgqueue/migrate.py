"""Run pgqueue's alembic migrations: from `pgqueue migrate`, the test harness or a checkout.

The migrations ship inside the wheel (as `pgqueue/migrations`); in a source checkout they are the
top-level `migrations/` directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError

from pgqueue.embedded import database_url
from pgqueue.errors import DatabaseError
from pgqueue.settings import Settings, redact_url

_PACKAGE_DIR = Path(__file__).resolve().parent


def migrations_dir() -> Path:
    """Where the alembic scripts are: inside the installed package, else the checkout's."""
    for candidate in (_PACKAGE_DIR / "migrations", _PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError(f"pgqueue's migrations are missing next to {_PACKAGE_DIR}")


def resolve_target(url: str | None, schema: str | None) -> tuple[str, str]:
    """The (conninfo, schema) a migration runs against: explicit values, else the settings."""
    settings = Settings() if url is None or schema is None else None
    if url is None:
        assert settings is not None
        url = database_url(settings)
    if schema is None:
        assert settings is not None
        schema = settings.db_schema
    return url, schema


def _config(url: str, schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = url
    config.attributes["schema"] = schema
    return config


def upgrade(url: str, schema: str, revision: str = "head") -> None:
    """Bring `schema` up to `revision`; safe to run from several processes at once."""
    with _database_errors(url):
        command.upgrade(_config(url, schema), revision)


def downgrade(url: str, schema: str, revision: str = "base") -> None:
    """Take `schema` down to `revision` (`base` drops every pgqueue table)."""
    with _database_errors(url):
        command.downgrade(_config(url, schema), revision)


@contextlib.contextmanager
def _database_errors(url: str) -> Iterator[None]:
    """Report a driver error as a one-line DatabaseError that never shows the password."""
    try:
        yield
    except (psycopg.Error, DBAPIError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise DatabaseError(f"migrating {redact_url(url)} failed: {message}") from exc


def head_revision() -> str:
    """The newest revision this version of pgqueue ships."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations_dir()))
    head = script.get_current_head()
    assert head is not None
    return head
