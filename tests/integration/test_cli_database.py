"""The CLI against a real PostgreSQL that refuses it: a missing database, an unknown role, a wrong
password, a schema never migrated. Each is one `error: ...` line, exit code 1, and the password
never shows; `pgqueue work` too (in a process of its own), which waits only for what waiting can
fix (tests/unit/test_cli_errors.py has the cases that need no server).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgqueue.embedded import EmbeddedCluster
from pgqueue.settings import Settings
from tests.cli_runner import one_error, run_pgqueue

PASSWORD = "Wr0ng-S3cret"
COMMANDS = [["stats"], ["size"], ["failed", "list"], ["cleanup"], ["migrate"]]


def test_a_server_that_answers_the_cli_works(settings: Settings) -> None:
    assert settings.database_url is not None
    result = run_pgqueue(
        "size", env={"PGQUEUE_DATABASE_URL": settings.database_url.get_secret_value()}
    )
    assert (result.exit_code, result.stdout, result.stderr) == (0, "0\n", "")


@pytest.fixture
def missing_database_url(server_url: str) -> str:
    return make_conninfo(
        server_url, dbname=f"pgq_missing_{uuid.uuid4().hex[:8]}", password=PASSWORD
    )


@pytest.fixture
def unknown_role_url(server_url: str) -> str:
    return make_conninfo(server_url, user=f"pgq_nobody_{uuid.uuid4().hex[:8]}", password=PASSWORD)


@pytest.fixture
def wrong_password_url(server_url: str, embedded_cluster: EmbeddedCluster | None) -> Iterator[str]:
    """A URL naming a login role that must give its password, with the wrong one.

    The session's embedded cluster trusts local connections, so for this one role a pg_hba.conf
    line asks for a password; another server is used as it is configured (skipped if it trusts).
    """
    role = f"pgq_pw_{uuid.uuid4().hex[:8]}"
    hba = embedded_cluster.pgdata / "pg_hba.conf" if embedded_cluster is not None else None
    original = hba.read_text() if hba is not None else ""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal("the-right-one")
            )
        )
        if hba is not None:
            hba.write_text(
                f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n{original}"
            )
            conn.execute("SELECT pg_reload_conf()")
    url = make_conninfo(server_url, user=role, password=PASSWORD)
    try:
        _wait_until_refused(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            if hba is not None:
                hba.write_text(original)
                conn.execute("SELECT pg_reload_conf()")
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _wait_until_refused(url: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            psycopg.connect(url).close()
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc):
                return
            raise
        time.sleep(0.05)
    pytest.skip("this server lets the role in without its password")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_missing_database_is_one_line_without_the_password(
    command: list[str], missing_database_url: str
) -> None:
    line = one_error(
        run_pgqueue(*command, env={"PGQUEUE_DATABASE_URL": missing_database_url}),
        1,
        secret=PASSWORD,
    )
    assert "does not exist" in line


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_role_is_one_line_without_the_password(
    command: list[str], unknown_role_url: str
) -> None:
    line = one_error(
        run_pgqueue(*command, env={"PGQUEUE_DATABASE_URL": unknown_role_url}), 1, secret=PASSWORD
    )
    assert "does not exist" in line


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_wrong_password_is_one_line_without_it(
    command: list[str], wrong_password_url: str
) -> None:
    line = one_error(
        run_pgqueue(*command, env={"PGQUEUE_DATABASE_URL": wrong_password_url}), 1, secret=PASSWORD
    )
    assert "password authentication failed" in line


@pytest.mark.parametrize("url", ["missing_database_url", "unknown_role_url", "wrong_password_url"])
def test_doctor_reports_a_refused_login_in_one_line(
    request: pytest.FixtureRequest, url: str
) -> None:
    result = run_pgqueue("doctor", env={"PGQUEUE_DATABASE_URL": request.getfixturevalue(url)})
    output = result.stdout + result.stderr
    assert result.exit_code == 1
    assert len(output.strip().splitlines()) == 1, output
    assert "Traceback" not in output
    assert PASSWORD not in output


@pytest.mark.parametrize(
    "command", [["stats"], ["size"], ["failed", "list"], ["cleanup"]], ids=" ".join
)
def test_a_schema_never_migrated_says_to_run_migrate(
    command: list[str], empty_database_url: str
) -> None:
    line = one_error(run_pgqueue(*command, env={"PGQUEUE_DATABASE_URL": empty_database_url}), 1)
    assert "run `pgqueue migrate`" in line


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cli_jobs.py").write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("missing_database_url", "does not exist"),
        ("wrong_password_url", "password authentication failed"),
        ("empty_database_url", "run `pgqueue migrate`"),
    ],
    ids=["missing-database", "wrong-password", "not-migrated"],
)
def test_work_refused_by_the_database_is_one_line_and_exit_one(
    request: pytest.FixtureRequest, app_dir: Path, url: str, says: str
) -> None:
    environment = {"PGQUEUE_DATABASE_URL": request.getfixturevalue(url), "PYTHONPATH": str(app_dir)}
    result = run_pgqueue(
        "work", "--app", "cli_jobs", "--max-time", "5", env=environment, process=True
    )
    assert says in one_error(result, 1, secret=PASSWORD)
