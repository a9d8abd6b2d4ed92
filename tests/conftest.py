"""The real PostgreSQL every test that needs one runs against.

The server, in order of preference: `PGQUEUE_TEST_DATABASE_URL` if set; a testcontainers
PostgreSQL where a Docker engine answers; else an embedded cluster this session starts in a
temporary directory and stops at the end. A template database is migrated once per session; each
test gets its own clone (`CREATE DATABASE ... TEMPLATE`), so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgqueue import migrate
from pgqueue.embedded import EmbeddedCluster
from pgqueue.settings import Settings

SCHEMA = "pgqueue"
# Faster, not safer: a throwaway test cluster needs no durability, and tests open many connections.
TEST_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


def _docker_answers() -> bool:
    if "DOCKER_HOST" not in os.environ and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def embedded_cluster() -> Iterator[EmbeddedCluster | None]:
    """The cluster this session started, or None when the server is external (URL or Docker)."""
    if os.environ.get("PGQUEUE_TEST_DATABASE_URL") or _docker_answers():
        yield None
        return
    data_dir = Path(tempfile.mkdtemp(prefix="pgq-test-", dir="/tmp"))
    cluster = EmbeddedCluster(data_dir, server_settings=TEST_SERVER_SETTINGS)
    cluster.ensure_running()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(embedded_cluster: EmbeddedCluster | None) -> Iterator[str]:
    """A superuser URL to the server's maintenance database."""
    explicit = os.environ.get("PGQUEUE_TEST_DATABASE_URL")
    if explicit:
        yield explicit
    elif embedded_cluster is not None:
        yield embedded_cluster.url()
    else:
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """The name of a database migrated to head, cloned for each test."""
    name = f"pgqueue_template_{os.getpid()}"
    _drop_database(server_url, name)
    _admin_execute(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate.upgrade(make_conninfo(server_url, dbname=name), SCHEMA)
    yield name
    _drop_database(server_url, name)


@pytest.fixture
def database_url(server_url: str, template_db: str) -> Iterator[str]:
    """A conninfo string for a fresh, migrated database of this test's own."""
    name = f"pgqueue_test_{uuid.uuid4().hex[:12]}"
    _admin_execute(
        server_url,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_db)
        ),
    )
    yield make_conninfo(server_url, dbname=name)
    _drop_database(server_url, name)


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A conninfo string for a fresh database with no pgqueue schema in it."""
    name = f"pgqueue_empty_{uuid.uuid4().hex[:12]}"
    _admin_execute(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(server_url, dbname=name)
    _drop_database(server_url, name)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, db_schema=SCHEMA)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain connection to the test database, for arranging and checking rows."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def _admin_execute(server_url: str, statement: sql.Composable) -> None:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(statement)


def _drop_database(server_url: str, name: str) -> None:
    with contextlib.suppress(psycopg.Error):
        _admin_execute(
            server_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )
