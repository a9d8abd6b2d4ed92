"""The real PostgreSQL every test that needs one runs against.

The server and the per-test databases come from pgqueue's own pytest plugin (the one users get,
`pgqueue.testing.pytest_plugin`); the fixtures below give them the short names the suite uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgqueue.embedded import EmbeddedCluster
from pgqueue.settings import Settings

pytest_plugins = ["pgqueue.testing.pytest_plugin"]

SCHEMA = "pgqueue"


@pytest.fixture(scope="session")
def embedded_cluster(pgqueue_embedded_cluster: EmbeddedCluster | None) -> EmbeddedCluster | None:
    """The cluster this session started, or None when the server is external (URL or Docker)."""
    return pgqueue_embedded_cluster


@pytest.fixture(scope="session")
def server_url(pgqueue_server_url: str) -> str:
    """A superuser URL to the server's maintenance database."""
    return pgqueue_server_url


@pytest.fixture
def database_url(pgqueue_database_url: str) -> str:
    """A conninfo string for a fresh, migrated database of this test's own."""
    return pgqueue_database_url


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A conninfo string for a fresh database with no pgqueue schema in it."""
    # Imported here: pytest must import the plugin module itself first, to rewrite its asserts.
    from pgqueue.testing.pytest_plugin import create_database, drop_database

    name = f"pgqueue_empty_{uuid.uuid4().hex[:12]}"
    create_database(server_url, name)
    yield make_conninfo(server_url, dbname=name)
    drop_database(server_url, name)


@pytest.fixture
def settings(pgqueue_settings: Settings) -> Settings:
    return pgqueue_settings


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain connection to the test database, for arranging and checking rows."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection
