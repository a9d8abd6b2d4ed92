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
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError

from pgqueue.connection import conninfo, first_line, translate
from pgqueue.errors import DatabaseError
from pgqueue.settings import Settings

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
        url = conninfo(settings)
    if schema is None:
        assert settings is not None
        schema = settings.db_schema
    return url, schema


def target_settings(url: str, schema: str) -> Settings:
    """`Settings` for migrating `schema` at `url`, for the connection seam: only these two are
    taken, everything else is a default (no environment is read, so nothing else can be invalid)."""
    return Settings.model_construct(database_url=SecretStr(url), db_schema=schema)


def _config(url: str, schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = url
    config.attributes["schema"] = schema
    return config


def upgrade(url: str, schema: str, revision: str = "head") -> None:
    """Bring `schema` up to `revision`; safe to run from several processes at once."""
    with _database_errors(target_settings(url, schema)):
        command.upgrade(_config(url, schema), revision)


def downgrade(url: str, schema: str, revision: str = "base") -> None:
    """Take `schema` down to `revision` (`base` drops every pgqueue table)."""
    with _database_errors(target_settings(url, schema)):
        command.downgrade(_config(url, schema), revision)


@contextlib.contextmanager
def _database_errors(settings: Settings) -> Iterator[None]:
    """Report a driver error as a one-line DatabaseError (DatabaseUnavailableError when waiting
    may help) that never shows the password, chained to the driver's error (its text masked too)."""
    try:
        yield
    except (psycopg.Error, DBAPIError, DatabaseError) as exc:
        cause: BaseException | None = exc
        if isinstance(exc, DBAPIError):  # SQLAlchemy's wrapper repeats the driver's text: skip it
            cause = exc.orig
        elif isinstance(exc, DatabaseError) and exc.__cause__ is not None:  # from connect()
            cause = exc.__cause__
        if not isinstance(cause, psycopg.Error):
            raise
        error_class = type(translate(cause, settings))  # masks the password in `cause` too
        message = f"migrating {settings.redacted_url} failed: {first_line(cause)}"
        raise error_class(settings.redact(message)) from cause


def head_revision() -> str:
    """The newest revision this version of pgqueue ships."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations_dir()))
    head = script.get_current_head()
    assert head is not None
    return head
