"""Django's database connections as pgqueue uses them.

The backend, the admin and `get_result()` run pgqueue's statements on Django's own connection for
a `DATABASES` alias, so they join whatever `transaction.atomic()` block is open. The management
commands start pgqueue's CLI, which connects on its own: `conninfo` gives it the same database
that alias names, unless `PGQUEUE_DATABASE_URL` says otherwise.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from psycopg.conninfo import make_conninfo

from pgqueue.errors import UnsupportedConnectionError

# What Django's PostgreSQL backend adds to its psycopg connect() arguments beside libpq's own.
_NOT_LIBPQ = frozenset({"context", "cursor_factory", "prepare_threshold", "autocommit"})


def psycopg_connection(alias: str) -> psycopg.Connection[Any]:
    """The psycopg 3 connection of Django's `alias`, opened if Django had not yet (it connects
    lazily), in whatever transaction Django has open on it."""
    wrapper = connections[alias]
    wrapper.ensure_connection()
    raw = wrapper.connection
    if not isinstance(raw, psycopg.Connection):
        raise UnsupportedConnectionError(
            f"DATABASES[{alias!r}] connects with {type(raw).__module__}: pgqueue writes through "
            "psycopg 3 (`pip install psycopg`, which Django's PostgreSQL backend prefers)"
        )
    return raw


def conninfo(alias: str) -> str:
    """A libpq connection string for the database `DATABASES[alias]` names, built the way
    Django's PostgreSQL backend builds its own connection (NAME, USER, PASSWORD, HOST, PORT and
    the libpq OPTIONS)."""
    if alias not in connections:
        raise ImproperlyConfigured(f"DATABASES has no {alias!r} database")
    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}] is a {wrapper.vendor} database: pgqueue needs PostgreSQL"
        )
    params = {
        key: value
        for key, value in wrapper.get_connection_params().items()
        if key not in _NOT_LIBPQ and isinstance(value, str | int) and not isinstance(value, bool)
    }
    return make_conninfo("", **params)
