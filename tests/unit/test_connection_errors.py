"""How `pgqueue.connection` classifies and words driver errors, on real psycopg error objects.

What the server sends at connect time carries no SQLSTATE (libpq reports it as text), so these
cover the texts too; tests/integration/test_connection.py provokes the failures for real.
"""

from __future__ import annotations

import traceback

import psycopg
import pytest

from pgqueue.connection import translate, unavailable
from pgqueue.errors import DatabaseError, DatabaseUnavailableError
from pgqueue.settings import Settings

SOCKET = 'connection failed: connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '


@pytest.mark.parametrize(
    "sqlstate", ["57P01", "57P02", "57P03", "53300", "53400", "25006", "08006", "08001"]
)
def test_a_transient_sqlstate_is_unavailable(sqlstate: str) -> None:
    assert unavailable(psycopg.errors.lookup(sqlstate)("the server said no"))


@pytest.mark.parametrize("sqlstate", ["28P01", "28000", "3D000", "42P01", "42501", "23505"])
def test_a_permanent_sqlstate_is_not_unavailable(sqlstate: str) -> None:
    assert not unavailable(psycopg.errors.lookup(sqlstate)("the server said no"))


@pytest.mark.parametrize(
    "text",
    [
        f"{SOCKET}FATAL:  the database system is starting up",
        f"{SOCKET}FATAL:  the database system is shutting down",
        f"{SOCKET}FATAL:  the database system is in recovery mode",
        f"{SOCKET}FATAL:  sorry, too many clients already",
        f"{SOCKET}FATAL:  remaining connection slots are reserved for roles with the SUPERUSER "
        "attribute",
        f"{SOCKET}No such file or directory\n\tIs the server running locally?",
        'connection failed: connection to server at "10.0.0.1", port 5432 failed: Connection '
        "refused",
        "connection timeout expired",
        "server closed the connection unexpectedly\n\tThis probably means the server terminated",
        "consuming input failed: server closed the connection unexpectedly",
        "failed to resolve host 'db': [Errno -3] Temporary failure in name resolution",
    ],
    ids=[
        "starting-up",
        "shutting-down",
        "recovery",
        "too-many-clients",
        "reserved-slots",
        "socket-missing",
        "refused",
        "timeout",
        "closed",
        "closed-consuming",
        "dns-temporary",
    ],
)
def test_a_transient_connect_failure_is_unavailable(text: str) -> None:
    assert unavailable(psycopg.OperationalError(text))


@pytest.mark.parametrize(
    "text",
    [
        f'{SOCKET}FATAL:  password authentication failed for user "app"',
        f'{SOCKET}FATAL:  database "app" does not exist',
        f'{SOCKET}FATAL:  role "app" does not exist',
        f'{SOCKET}FATAL:  no pg_hba.conf entry for host "[local]", user "app"',
        f"{SOCKET}fe_sendauth: no password supplied",
        "failed to resolve host 'dbx': [Errno -2] Name or service not known",
    ],
    ids=["password", "database", "role", "hba", "no-password", "dns-unknown"],
)
def test_a_configuration_problem_is_not_unavailable(text: str) -> None:
    assert not unavailable(psycopg.OperationalError(text))


def test_a_conninfo_parse_error_is_a_plain_database_error() -> None:
    error = translate(psycopg.ProgrammingError('invalid percent-encoded token: "x%zz"'))
    assert type(error) is DatabaseError


def test_translate_keeps_the_first_line_and_names_the_database() -> None:
    settings = Settings(database_url="postgresql://app:s3cret-Pw@db.example/app")
    exc = psycopg.OperationalError(f"{SOCKET}FATAL:  sorry, too many clients already\nmore")
    error = translate(exc, settings, connecting=True)
    assert isinstance(error, DatabaseUnavailableError)
    assert str(error) == (
        f"cannot connect to postgresql://app:***@db.example/app: {SOCKET}FATAL:  sorry, too many "
        "clients already"
    )


def test_translate_masks_the_password_in_the_message_and_in_the_cause() -> None:
    settings = Settings(database_url="postgresql://app:pa%zz-Pw7@db.example/app")
    exc = psycopg.ProgrammingError('invalid percent-encoded token: "pa%zz-Pw7"\n')
    try:
        raise translate(exc, settings, connecting=True) from exc
    except DatabaseError as error:
        shown = "".join(traceback.format_exception(error))
    assert "Pw7" not in shown
    assert 'invalid percent-encoded token: "***"' in shown


def test_translate_says_to_migrate_when_the_tables_are_missing() -> None:
    error = translate(psycopg.errors.UndefinedTable('relation "pgqueue.jobs" does not exist'))
    assert type(error) is DatabaseError
    assert "pgqueue's tables are missing from schema 'pgqueue': run `pgqueue migrate`" in str(error)
