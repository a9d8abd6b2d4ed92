"""The connection seam against the real server: what each failure is classified as, how fast it
comes, what the dispatch pool does after the server restarts or drops its connections, and that
no surface ever shows the password."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.connection import connect, connect_async, translate
from pgqueue.embedded import EmbeddedCluster
from pgqueue.errors import DatabaseError, DatabaseUnavailableError, DispatchOutcomeUnknownError
from pgqueue.failed import FailedJobs
from tests.cli_runner import run_pgqueue

CLOSED_PORT = "postgresql://app:s3cret-closed@127.0.0.1:1/app"


class Ping(Job):
    job_name = "tests.integration.connection.Ping"

    n: int = 0

    def handle(self) -> None:
        return None


def _settings(url: str, **values: Any) -> Settings:
    return Settings(database_url=url, **values)


def _unavailable(error: BaseException) -> bool:
    return isinstance(error, DatabaseUnavailableError)


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word, like a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def _backends(conn: psycopg.Connection[Any], application_name: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = "
        "current_database()",
        (application_name,),
    ).fetchall()
    return [pid for (pid,) in rows]


def _terminate(conn: psycopg.Connection[Any], application_name: str) -> None:
    """Terminate the backends of `application_name` and wait until they are gone."""
    pids = _backends(conn, application_name)
    assert pids, f"no {application_name} connection to terminate"
    for pid in pids:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while _backends(conn, application_name) and time.monotonic() < deadline:
        time.sleep(0.02)


def _jobs(conn: psycopg.Connection[Any]) -> int:
    count: int = conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0]  # type: ignore[index]
    return count


# What each failure is: waiting can fix it, or the configuration must change.


def test_a_closed_port_is_unavailable_at_once_with_the_reason() -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseError) as caught:
        connect(_settings(CLOSED_PORT), application_name="pgqueue-test")
    assert time.monotonic() - started < 3
    assert _unavailable(caught.value)
    assert "Connection refused" in str(caught.value)
    assert str(caught.value).startswith("cannot connect to postgresql://app:***@127.0.0.1:1/app: ")


def test_a_server_that_never_answers_times_out_after_connect_timeout() -> None:
    with _silent_server() as port:
        started = time.monotonic()
        with pytest.raises(DatabaseError) as caught:
            connect(
                _settings(f"postgresql://app:pw@127.0.0.1:{port}/app", connect_timeout=2),
                application_name="pgqueue-test",
            )
        elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 5, elapsed
    assert _unavailable(caught.value)
    assert "timeout expired" in str(caught.value)


async def test_connect_async_times_out_after_connect_timeout() -> None:
    with _silent_server() as port:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="timeout expired"):
            await connect_async(
                _settings(f"postgresql://app:pw@127.0.0.1:{port}/app", connect_timeout=2),
                application_name="pgqueue-test",
            )
    assert time.monotonic() - started < 5


def test_a_missing_socket_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as caught:
        connect(_settings(f"host={tmp_path} dbname=x"), application_name="pgqueue-test")
    assert _unavailable(caught.value)
    assert "No such file or directory" in str(caught.value)


def test_a_missing_database_is_a_configuration_error(server_url: str) -> None:
    url = make_conninfo(server_url, dbname="pgqueue_no_such_database")
    with pytest.raises(
        DatabaseError, match='database "pgqueue_no_such_database" does not exist'
    ) as caught:
        connect(_settings(url), application_name="pgqueue-test")
    assert not _unavailable(caught.value)


def test_a_missing_role_is_a_configuration_error(server_url: str) -> None:
    url = make_conninfo(server_url, user="pgqueue_no_such_role")
    with pytest.raises(DatabaseError, match="does not exist") as caught:
        connect(_settings(url), application_name="pgqueue-test")
    assert not _unavailable(caught.value)


@pytest.fixture
def limited_role(server_url: str) -> Iterator[str]:
    """A role that may open no connection at all (CONNECTION LIMIT 0)."""
    name = f"pgqueue_limited_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(sql.Identifier(name))
        )
    yield name
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_full_connection_limit_is_unavailable(server_url: str, limited_role: str) -> None:
    url = make_conninfo(server_url, user=limited_role)
    with pytest.raises(DatabaseError, match="too many connections for role") as caught:
        connect(_settings(url), application_name="pgqueue-test")
    assert _unavailable(caught.value)


@pytest.fixture
def password_role(server_url: str, embedded_cluster: EmbeddedCluster | None) -> Iterator[str]:
    """A role whose password the server checks: the test cluster trusts everyone else, so a
    scram-sha-256 line for this role alone goes first in pg_hba.conf (restored afterwards)."""
    if embedded_cluster is None:
        pytest.skip("needs the embedded cluster's pg_hba.conf")
    name = f"pgqueue_pw_{uuid.uuid4().hex[:8]}"
    hba = embedded_cluster.pgdata / "pg_hba.conf"
    original = hba.read_text()
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'the-right-one'").format(sql.Identifier(name))
        )
        hba.write_text(
            f"local all {name} scram-sha-256\nhost all {name} all scram-sha-256\n{original}"
        )
        admin.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)  # the postmaster rereads pg_hba.conf on SIGHUP
    try:
        yield name
    finally:
        hba.write_text(original)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_wrong_password_is_a_configuration_error_without_the_password(
    server_url: str, password_role: str
) -> None:
    url = make_conninfo(server_url, user=password_role, password="wr0ng-Pa55word")
    with pytest.raises(DatabaseError, match="password authentication failed") as caught:
        connect(_settings(url), application_name="pgqueue-test")
    assert not _unavailable(caught.value)
    assert "wr0ng-Pa55word" not in "".join(traceback.format_exception(caught.value))


def test_the_right_password_connects(server_url: str, password_role: str) -> None:
    url = make_conninfo(server_url, user=password_role, password="the-right-one")
    with connect(_settings(url), application_name="pgqueue-test") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (password_role,)


def test_a_terminated_backend_is_unavailable(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with connect(settings, application_name="pgqueue-victim") as victim:
        _terminate(conn, "pgqueue-victim")
        with pytest.raises(psycopg.Error) as caught:
            victim.execute("SELECT 1")
    assert caught.value.sqlstate == "57P01"
    assert _unavailable(translate(caught.value, settings))


def test_a_read_only_database_is_unavailable(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(conn.info.dbname)
        )
    )
    with Queue(settings) as queue, pytest.raises(DatabaseError, match="read-only") as caught:
        queue.dispatch(Ping())
    assert _unavailable(caught.value)


def test_a_missing_schema_is_a_configuration_error_naming_the_fix(empty_database_url: str) -> None:
    with Queue(_settings(empty_database_url)) as queue, pytest.raises(DatabaseError) as caught:
        queue.dispatch(Ping())
    assert "run `pgqueue migrate`" in str(caught.value)
    assert not _unavailable(caught.value)


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://app:pa%zzss-Word9@127.0.0.1:1/app", "pa%zzss-Word9"),
        ("postgresql://app@127.0.0.1:1/app?password=qu%zzery-Word9", "qu%zzery-Word9"),
        ("postgresql://app:nul%00-Word9@127.0.0.1:1/app", "nul%00-Word9"),
        ("host=127.0.0.1 port=1 password=spaced Word9 dbname=app", "Word9"),
        ("postgresq://app:typo-Word9@127.0.0.1:1/app", "typo-Word9"),
    ],
    ids=["bad-percent-token", "bad-percent-query", "percent-nul", "unquoted-space", "typo-scheme"],
)
def test_a_malformed_url_is_a_configuration_error_without_the_password(
    url: str, password: str
) -> None:
    with pytest.raises(DatabaseError) as caught:
        connect(_settings(url), application_name="pgqueue-test")
    assert not _unavailable(caught.value)
    shown = "".join(traceback.format_exception(caught.value))
    assert password not in shown and "Word9" not in shown
    assert "***" in str(caught.value)


# What the seam sets on each connection.


def test_connect_names_the_connection_and_turns_autocommit_on(settings: Settings) -> None:
    with connect(settings, application_name="pgqueue-test") as conn:
        assert conn.autocommit
        assert conn.execute("SHOW application_name").fetchone() == ("pgqueue-test",)


def test_an_application_name_in_the_url_wins(database_url: str) -> None:
    url = make_conninfo(database_url, application_name="my-app")
    with connect(_settings(url), application_name="pgqueue-test") as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("my-app",)


def test_options_are_added_to_those_in_the_url(database_url: str) -> None:
    url = make_conninfo(database_url, options="-c statement_timeout=1234")
    with connect(
        _settings(url), application_name="pgqueue-test", options="-c lock_timeout=4321"
    ) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("4321ms",)


def test_connect_timeout_comes_from_settings_unless_the_url_sets_it(database_url: str) -> None:
    with connect(_settings(database_url, connect_timeout=7.5), application_name="t") as conn:
        assert conninfo_to_dict(conn.info.dsn)["connect_timeout"] == "8"
    url = make_conninfo(database_url, connect_timeout=3)
    with connect(_settings(url, connect_timeout=7.5), application_name="t") as conn:
        assert conninfo_to_dict(conn.info.dsn)["connect_timeout"] == "3"


# The dispatch pool: fast failure, stale connections, unknown outcomes.


def test_dispatch_on_a_closed_port_fails_fast_with_the_reason() -> None:
    with Queue(_settings(CLOSED_PORT)) as queue:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="Connection refused") as caught:
            queue.dispatch(Ping())
        assert time.monotonic() - started < 3
        with pytest.raises(DatabaseUnavailableError, match="Connection refused"):
            queue.size()  # and again: a failed connect leaves no slot taken
    assert "s3cret-closed" not in str(caught.value)


async def test_async_dispatch_on_a_closed_port_fails_fast_with_the_reason() -> None:
    async with AsyncQueue(_settings(CLOSED_PORT)) as queue:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="Connection refused"):
            await queue.dispatch(Ping())
        assert time.monotonic() - started < 3


def test_dispatch_on_a_silent_server_fails_after_connect_timeout() -> None:
    with _silent_server() as port:
        url = f"postgresql://app:pw@127.0.0.1:{port}/app"
        with Queue(_settings(url, connect_timeout=2)) as queue:
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError, match="timeout expired"):
                queue.dispatch(Ping())
            assert time.monotonic() - started < 5


def test_dispatch_after_its_idle_connections_were_terminated_succeeds(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings.model_copy(update={"pool_size": 2})) as queue:
        queue.dispatch(Ping(n=1))
        _terminate(conn, "pgqueue-dispatch")
        queue.dispatch(Ping(n=2))
        assert queue.size() == 2


async def test_async_dispatch_after_its_idle_connections_were_terminated_succeeds(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        await queue.dispatch(Ping(n=1))
        _terminate(conn, "pgqueue-dispatch")
        await queue.dispatch(Ping(n=2))
        await queue.bulk([Ping(n=3)])
    assert _jobs(conn) == 3


def test_bulk_after_its_idle_connections_were_terminated_succeeds(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        queue.bulk([Ping(n=1)])
        _terminate(conn, "pgqueue-dispatch")
        queue.bulk([Ping(n=2), Ping(n=3)])
    assert _jobs(conn) == 3


def test_dispatch_after_postgresql_restarts_succeeds(
    settings: Settings, embedded_cluster: EmbeddedCluster | None
) -> None:
    if embedded_cluster is None:
        pytest.skip("restarts the embedded cluster")
    with Queue(settings) as queue:
        queue.dispatch(Ping(n=1))
        embedded_cluster.restart("fast")
        queue.dispatch(Ping(n=2))
        assert queue.size() == 2


@pytest.fixture
def slow_inserts(conn: psycopg.Connection[Any]) -> str:
    """Triggers that make inserts into jobs sleep at the INSERT (`row`) or at COMMIT (`commit`),
    as the returned table's one row says (none: no sleep)."""
    conn.execute("CREATE TABLE pgqueue.test_sleep_at (mode text)")
    conn.execute(
        """
        CREATE FUNCTION pgqueue.test_sleep() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (SELECT mode FROM pgqueue.test_sleep_at) = TG_ARGV[0] THEN
                PERFORM pg_sleep(30);
            END IF;
            RETURN NEW;
        END $$
        """
    )
    conn.execute(
        "CREATE TRIGGER test_sleep_row BEFORE INSERT ON pgqueue.jobs FOR EACH ROW "
        "EXECUTE FUNCTION pgqueue.test_sleep('row')"
    )
    conn.execute(
        "CREATE CONSTRAINT TRIGGER test_sleep_commit AFTER INSERT ON pgqueue.jobs "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pgqueue.test_sleep('commit')"
    )
    return "pgqueue.test_sleep_at"


def _terminate_when_sleeping(server_url: str, database: str) -> threading.Thread:
    """In the background: wait for a backend of `database` to sleep in the trigger, kill it."""

    def kill() -> None:
        with psycopg.connect(server_url, autocommit=True) as admin:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'",
                    (database,),
                ).fetchone()
                if row:
                    admin.execute("SELECT pg_terminate_backend(%s)", row)
                    return
                time.sleep(0.02)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_dispatch_whose_connection_dies_in_flight_has_an_unknown_outcome(
    settings: Settings, conn: psycopg.Connection[Any], server_url: str, slow_inserts: str
) -> None:
    conn.execute(f"INSERT INTO {slow_inserts} VALUES ('row')")
    with Queue(settings) as queue:
        killer = _terminate_when_sleeping(server_url, conn.info.dbname)
        with pytest.raises(
            DispatchOutcomeUnknownError, match="whether the job got enqueued is unknown"
        ):
            queue.dispatch(Ping())
        killer.join()
        conn.execute(f"UPDATE {slow_inserts} SET mode = NULL")
        queue.dispatch(Ping())  # the broken connection was not put back
    assert _jobs(conn) == 1


def test_bulk_lost_before_commit_was_sent_is_unavailable_and_wrote_nothing(
    settings: Settings, conn: psycopg.Connection[Any], server_url: str, slow_inserts: str
) -> None:
    conn.execute(f"INSERT INTO {slow_inserts} VALUES ('row')")
    with Queue(settings) as queue:
        killer = _terminate_when_sleeping(server_url, conn.info.dbname)
        with pytest.raises(DatabaseUnavailableError):
            queue.bulk([Ping(n=1), Ping(n=2)])
        killer.join()
    assert _jobs(conn) == 0


def test_bulk_lost_during_commit_has_an_unknown_outcome(
    settings: Settings, conn: psycopg.Connection[Any], server_url: str, slow_inserts: str
) -> None:
    conn.execute(f"INSERT INTO {slow_inserts} VALUES ('commit')")
    with Queue(settings) as queue:
        killer = _terminate_when_sleeping(server_url, conn.info.dbname)
        with pytest.raises(DispatchOutcomeUnknownError, match="after sending the jobs"):
            queue.bulk([Ping(n=1), Ping(n=2)])
        killer.join()


async def test_async_dispatch_whose_connection_dies_in_flight_has_an_unknown_outcome(
    settings: Settings, conn: psycopg.Connection[Any], server_url: str, slow_inserts: str
) -> None:
    conn.execute(f"INSERT INTO {slow_inserts} VALUES ('row')")
    async with AsyncQueue(settings) as queue:
        killer = _terminate_when_sleeping(server_url, conn.info.dbname)
        with pytest.raises(DispatchOutcomeUnknownError):
            await queue.dispatch(Ping())
        await asyncio.to_thread(killer.join)


# No surface shows the password, whatever its shape.

LEAK_FORMS = [
    ("postgresql://app:plain-Leak7@127.0.0.1:1/app", "plain-Leak7"),
    ("postgresql://app:p@ss#hash-Leak7@127.0.0.1:1/app", "hash-Leak7"),
    ("postgresql://app:at@sign-Leak7@127.0.0.1:1/app", "sign-Leak7"),
    ("postgresql://app@127.0.0.1:1/app?password=query-Leak7", "query-Leak7"),
    ("host=127.0.0.1 port=1 user=app password=kv-Leak7 dbname=app", "kv-Leak7"),
    ("host=127.0.0.1 port=1 user=app password='quoted Leak7' dbname=app", "Leak7"),
    ("postgresql://app:enc%40oded-Leak7@127.0.0.1:1/app", "oded-Leak7"),
    ("postgresql://app:bad%zzpct-Leak7@127.0.0.1:1/app", "pct-Leak7"),
]
LEAK_IDS = ["plain", "hash", "at", "query", "conninfo", "quoted", "percent-encoded", "bad-percent"]


@pytest.mark.parametrize(("url", "secret"), LEAK_FORMS, ids=LEAK_IDS)
def test_library_errors_never_show_the_password(url: str, secret: str) -> None:
    settings = _settings(url)
    errors: list[BaseException] = []
    for call in (
        lambda: connect(settings, application_name="pgqueue-test"),
        lambda: Queue(settings).dispatch(Ping()),
        lambda: Queue(settings).bulk([Ping()]),
        lambda: FailedJobs(settings).list(),
    ):
        with pytest.raises(DatabaseError) as caught:
            call()
        errors.append(caught.value)
    for error in errors:
        shown = "".join(traceback.format_exception(error))
        assert secret not in shown and "Leak7" not in shown, shown
    assert "Leak7" not in repr(Queue(settings)) + repr(settings)


@pytest.mark.parametrize(("url", "secret"), LEAK_FORMS, ids=LEAK_IDS)
@pytest.mark.parametrize("command", [["migrate"], ["size"], ["failed", "list"]])
def test_cli_errors_never_show_the_password(url: str, secret: str, command: list[str]) -> None:
    run = run_pgqueue(*command, env={"PGQUEUE_DATABASE_URL": url})
    assert run.exit_code == 1, (run.stdout, run.stderr)
    assert "Leak7" not in run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.stderr.startswith("error: ")
