"""Queue.connect() and AsyncQueue.connect(): a connection of the caller's own to the database the
worker uses, the embedded default included, for dispatching in the caller's transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.embedded import EmbeddedCluster
from pgqueue.errors import DatabaseUnavailableError


class Welcome(Job):
    job_name = "tests.integration.queue_connect.Welcome"

    user_id: int

    def handle(self) -> None:
        return None


def _jobs(conn: psycopg.Connection[Any]) -> list[Any]:
    return [row[0] for row in conn.execute("SELECT payload FROM pgqueue.jobs ORDER BY id")]


def test_connect_commits_the_callers_rows_and_job_together(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("CREATE TABLE users (id bigint PRIMARY KEY)")
    with Queue(settings) as queue, queue.connect() as own, own.transaction():
        assert not own.autocommit
        own.execute("INSERT INTO users VALUES (42)")
        queue.dispatch(Welcome(user_id=42), conn=own)
        assert _jobs(conn) == []  # not visible before the commit
    assert own.closed
    assert conn.execute("SELECT id FROM users").fetchall() == [(42,)]
    assert _jobs(conn) == [{"user_id": 42}]


def test_connect_rolls_the_job_back_with_the_callers_transaction(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    queue = Queue(settings)

    def sign_up() -> None:
        with queue.connect() as own, own.transaction():
            queue.dispatch(Welcome(user_id=7), conn=own)
            raise RuntimeError("the business write failed")

    with pytest.raises(RuntimeError):
        sign_up()
    assert _jobs(conn) == []


def test_connect_names_itself_and_reaches_the_settings_database(
    settings: Settings, database_url: str
) -> None:
    expected = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with Queue(settings).connect() as own:
        row = own.execute("SELECT current_database(), current_setting('application_name')")
        assert row.fetchone() == (expected, "pgqueue-client")


def test_connect_reads_the_url_from_a_dot_env_file(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGQUEUE_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"PGQUEUE_DATABASE_URL='{database_url}'\n")
    expected = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with Queue().connect() as own:
        assert own.execute("SELECT current_database()").fetchone() == (expected,)


def test_connect_without_a_url_reaches_the_embedded_cluster(
    embedded_cluster: EmbeddedCluster | None,
) -> None:
    if embedded_cluster is None:
        pytest.skip("the test server is external (PGQUEUE_TEST_DATABASE_URL or Docker)")
    settings = Settings(database_url=None, embedded_dir=embedded_cluster.data_dir)
    with Queue(settings).connect() as own:
        data_directory = own.execute("SHOW data_directory").fetchone()
    assert data_directory is not None
    assert Path(data_directory[0]).resolve() == embedded_cluster.pgdata.resolve()


def test_connect_to_a_closed_port_is_unavailable_without_the_password() -> None:
    settings = Settings(database_url="postgresql://app:s3cret-closed@127.0.0.1:1/app")
    with pytest.raises(DatabaseUnavailableError) as caught:
        Queue(settings).connect()
    assert "s3cret-closed" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


async def test_async_connect_commits_the_callers_rows_and_job_together(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("CREATE TABLE users (id bigint PRIMARY KEY)")
    async with AsyncQueue(settings) as queue, await queue.connect() as own, own.transaction():
        assert isinstance(own, psycopg.AsyncConnection)
        assert not own.autocommit
        await own.execute("INSERT INTO users VALUES (43)")
        await queue.dispatch(Welcome(user_id=43), conn=own)
    assert conn.execute("SELECT id FROM users").fetchall() == [(43,)]
    assert _jobs(conn) == [{"user_id": 43}]
