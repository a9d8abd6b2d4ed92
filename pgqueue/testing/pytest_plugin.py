"""pytest fixtures for a real, migrated, throwaway pgqueue database.

Enable in your conftest.py with `pytest_plugins = ["pgqueue.testing.pytest_plugin"]`.

The server, in order of preference: `PGQUEUE_TEST_DATABASE_URL` (a superuser URL; databases are
created and dropped on it); a testcontainers PostgreSQL where a Docker engine answers; else an
embedded cluster started in a temporary directory for the session. A template database is migrated
once; each test gets its own clone, so tests never see each other's rows.

Fixtures:
    pgqueue_server_url (session): a superuser URL to the server's maintenance database.
    pgqueue_embedded_cluster (session): the cluster the session started, or None.
    pgqueue_database_url: a conninfo string for a fresh, migrated database of this test's own.
    pgqueue_settings: `Settings` pointing at that database.
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
from pgqueue.settings import DEFAULT_SCHEMA, Settings

# Faster, not safer: a throwaway test cluster needs no durability, and tests open many connections.
TEST_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


def docker_answers() -> bool:
    """Whether a Docker engine is reachable (testcontainers can start a server)."""
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
def pgqueue_embedded_cluster() -> Iterator[EmbeddedCluster | None]:
    if os.environ.get("PGQUEUE_TEST_DATABASE_URL") or docker_answers():
        yield None
        return
    # Under /tmp and world-traversable: as root where user namespaces are unavailable, the
    # server runs as `nobody` (pgqueue.embedded), which must reach it.
    data_dir = Path(tempfile.mkdtemp(prefix="pgq-test-", dir="/tmp"))
    data_dir.chmod(0o755)
    cluster = EmbeddedCluster(data_dir / "cluster", server_settings=TEST_SERVER_SETTINGS)
    cluster.ensure_running()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pgqueue_server_url(pgqueue_embedded_cluster: EmbeddedCluster | None) -> Iterator[str]:
    explicit = os.environ.get("PGQUEUE_TEST_DATABASE_URL")
    if explicit:
        yield explicit
    elif pgqueue_embedded_cluster is not None:
        yield pgqueue_embedded_cluster.url()
    else:
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()


@pytest.fixture(scope="session")
def pgqueue_template_database(pgqueue_server_url: str) -> Iterator[str]:
    """The name of a database migrated to head, cloned for each test."""
    name = f"pgqueue_template_{os.getpid()}"
    drop_database(pgqueue_server_url, name)
    create_database(pgqueue_server_url, name)
    migrate.upgrade(make_conninfo(pgqueue_server_url, dbname=name), DEFAULT_SCHEMA)
    yield name
    drop_database(pgqueue_server_url, name)


@pytest.fixture
def pgqueue_database_url(pgqueue_server_url: str, pgqueue_template_database: str) -> Iterator[str]:
    name = f"pgqueue_test_{uuid.uuid4().hex[:12]}"
    create_database(pgqueue_server_url, name, template=pgqueue_template_database)
    yield make_conninfo(pgqueue_server_url, dbname=name)
    drop_database(pgqueue_server_url, name)


@pytest.fixture
def pgqueue_settings(pgqueue_database_url: str) -> Settings:
    return Settings(database_url=pgqueue_database_url, db_schema=DEFAULT_SCHEMA)


def create_database(server_url: str, name: str, template: str | None = None) -> None:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(statement)


def drop_database(server_url: str, name: str) -> None:
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with contextlib.suppress(psycopg.Error), psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(statement)
