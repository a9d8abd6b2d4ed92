"""Least-privilege roles, created from `roles_sql` and used through `SET ROLE`: each can do its job
with pgqueue's real statements and nothing more."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import Job, Queue, Settings
from pgqueue.errors import DatabaseError
from pgqueue.roles import roles_sql
from pgqueue.schedules import Schedule, fire_plan, parse_cron, register_plan
from pgqueue.sql import queries_for, run_plan
from pgqueue.stats import read_stats

SCHEMA = "pgqueue"
QUERIES = queries_for(SCHEMA)


class Notify(Job):
    queue = "roles"
    job_name = "tests.integration.roles.Notify"

    user_id: int

    def handle(self) -> None:
        pass


@pytest.fixture
def role_names(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """A worker and a dispatch role made by the printed SQL, unique to this test (roles are
    cluster-wide) and dropped afterwards, with the privileges they hold in this database."""
    suffix = uuid.uuid4().hex[:10]
    worker, dispatch = f"pgq_worker_{suffix}", f"pgq_dispatch_{suffix}"
    conn.execute(roles_sql(SCHEMA, worker, dispatch).encode())
    yield worker, dispatch
    for role in (worker, dispatch):
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _as(database_url: str, role: str) -> psycopg.Connection[Any]:
    connection = psycopg.connect(database_url, autocommit=True)
    connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    return connection


def _dispatch(conn: psycopg.Connection[Any], count: int) -> None:
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload)"
        " SELECT 'roles', 'tests.Roles', '{}' FROM generate_series(1, %s)",
        (count,),
    )


def test_worker_role_claims_retries_fails_and_completes_jobs(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    worker, _ = role_names
    _dispatch(conn, 3)
    token = uuid.uuid4()
    with _as(database_url, worker) as as_worker:
        as_worker.execute(
            QUERIES["register_worker"],
            {"id": "w", "host": "h", "pid": 1, "queues": ["roles"], "concurrency": 3},
        )
        claimed = as_worker.execute(
            QUERIES["claim_jobs"],
            {
                "done_ids": [],
                "done_tokens": [],
                "synchronous_commit": "on",
                "queue": "roles",
                "limit": 3,
                "token": token,
                "lease_seconds": 30,
                "worker_id": "w",
            },
        ).fetchall()
        retried, completed, failed = sorted(row[0] for row in claimed)
        as_worker.execute(
            QUERIES["renew_leases"],
            {
                "tokens": [str(token)],
                "ids": [f"{{{retried},{completed},{failed}}}"],
                "lease_seconds": 30,
                "progress_ids": [completed],
                "progress": [0.5],
                "progress_messages": ["half"],
            },
        )
        as_worker.execute(
            QUERIES["retry_job"], {"id": retried, "token": token, "delay": 60, "error": "E: x"}
        )
        as_worker.execute(
            QUERIES["complete_jobs"],
            {"done_ids": [f"{{{completed}}}"], "done_tokens": [str(token)]},
        )
        as_worker.execute(
            QUERIES["fail_job"],
            {
                "id": failed,
                "token": token,
                "attempts": 1,
                "exception_class": "builtins.ValueError",
                "exception_message": "boom",
                "traceback": "",
                "worker_id": "w",
                "results_channel": f"{SCHEMA}:results",
            },
        )
        as_worker.execute(QUERIES["rescue_expired_leases"], {"limit": 10, "channel": SCHEMA})
        as_worker.execute(
            QUERIES["worker_heartbeat"],
            {"id": "w", "queues": ["roles"], "completed": [1], "failed": [1]},
        )
        stats = read_stats(as_worker, SCHEMA)
    assert len(claimed) == 3
    assert [row[0] for row in conn.execute("SELECT id FROM pgqueue.jobs")] == [retried]
    assert [row[0] for row in conn.execute("SELECT id FROM pgqueue.failed_jobs")] == [failed]
    [roles_queue] = stats.queues
    assert (roles_queue.scheduled, roles_queue.failed_total) == (1, 1)


def test_worker_role_is_denied_an_application_table(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    worker, _ = role_names
    conn.execute("CREATE TABLE public.orders (id bigint PRIMARY KEY)")
    with _as(database_url, worker) as as_worker:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="orders"):
            as_worker.execute("SELECT * FROM public.orders")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_worker.execute("CREATE TABLE pgqueue.extra (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="alembic_version"):
            as_worker.execute("SELECT * FROM pgqueue.alembic_version")


def test_dispatch_role_dispatches_in_bulk_and_reads_sizes(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    _, dispatch = role_names
    with (
        Queue(Settings(database_url=database_url, db_schema=SCHEMA)) as queue,
        _as(database_url, dispatch) as as_app,
    ):
        job_id = queue.dispatch(Notify(user_id=1), conn=as_app)
        bulk_ids = queue.bulk([Notify(user_id=2), Notify(user_id=3)], conn=as_app)
        later_id = queue.dispatch(Notify(user_id=4), conn=as_app, delay=60, priority=1)
        size = queue.size("roles", conn=as_app)
    stored = [row[0] for row in conn.execute("SELECT id FROM pgqueue.jobs ORDER BY id")]
    assert stored == sorted([job_id, *bulk_ids, later_id])
    assert size == 4


def test_dispatch_role_cannot_delete_change_or_read_jobs(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    _, dispatch = role_names
    _dispatch(conn, 1)
    denied = [
        "DELETE FROM pgqueue.jobs",
        "UPDATE pgqueue.jobs SET priority = 0",
        "SELECT payload FROM pgqueue.jobs",
        "SELECT payload FROM pgqueue.failed_jobs",
        "DELETE FROM pgqueue.workers",
        "SELECT * FROM pgqueue.schedules",
    ]
    with _as(database_url, dispatch) as as_app:
        for statement in denied:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                as_app.execute(statement.encode())
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (1,)


def test_worker_role_registers_fires_pauses_and_forgets_schedules(
    role_names: tuple[str, str], database_url: str
) -> None:
    worker, _ = role_names
    entry = Schedule(
        "roles-sync",
        parse_cron("* * * * *", "UTC", "roles-sync"),
        Notify,
        "tests",
        Notify(user_id=1),
    )
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with _as(database_url, worker) as as_worker:
        run_plan(register_plan({entry.name: entry}, SCHEMA), as_worker)
        run_plan(fire_plan({entry.name: entry}, SCHEMA, 65536, start), as_worker)
        later = start + timedelta(minutes=1, seconds=1)
        check = run_plan(fire_plan({entry.name: entry}, SCHEMA, 65536, later), as_worker)
        assert [fired.fire_at for fired in check.fired] == [start + timedelta(minutes=1)]
        assert as_worker.execute(QUERIES["list_schedules"], {"defined_within": 0}).fetchall()
        assert as_worker.execute(QUERIES["pause_schedule"], {"name": "roles-sync"}).fetchall()
        assert as_worker.execute(QUERIES["resume_schedule"], {"name": "roles-sync"}).fetchall()
        forgot = as_worker.execute(
            QUERIES["forget_schedule"], {"name": "roles-sync", "defined_within": 0}
        ).fetchall()
        assert forgot == [(False, 1)]


def test_roles_sql_runs_again_and_restates_the_privileges(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    worker, dispatch = role_names
    conn.execute(sql.SQL("GRANT DELETE ON pgqueue.jobs TO {}").format(sql.Identifier(dispatch)))
    conn.execute(roles_sql(SCHEMA, worker, dispatch).encode())
    with (
        _as(database_url, dispatch) as as_app,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        as_app.execute("DELETE FROM pgqueue.jobs")


def test_worker_role_cancels_queued_and_running_jobs(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    worker, _ = role_names
    _dispatch(conn, 2)
    queued, running = (row[0] for row in conn.execute("SELECT id FROM pgqueue.jobs ORDER BY id"))
    conn.execute(
        "UPDATE pgqueue.jobs SET lease_token = gen_random_uuid(),"
        " lease_expires_at = now() + interval '30 seconds' WHERE id = %s",
        (running,),
    )
    with (
        Queue(Settings(database_url=database_url, db_schema=SCHEMA)) as queue,
        _as(database_url, worker) as as_worker,
    ):
        assert queue.cancel(queued, conn=as_worker) is True
        assert queue.cancel(running, conn=as_worker) is True
    assert [row[0] for row in conn.execute("SELECT id FROM pgqueue.failed_jobs")] == [queued]
    assert conn.execute(
        "SELECT id FROM pgqueue.jobs WHERE cancel_requested_at IS NOT NULL"
    ).fetchall() == [(running,)]


def test_dispatch_role_cannot_cancel_jobs(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    _, dispatch = role_names
    _dispatch(conn, 1)
    [(job_id,)] = conn.execute("SELECT id FROM pgqueue.jobs").fetchall()
    with (
        Queue(Settings(database_url=database_url, db_schema=SCHEMA)) as queue,
        _as(database_url, dispatch) as as_app,
        pytest.raises(DatabaseError, match="permission denied"),
    ):
        queue.cancel(job_id, conn=as_app)
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (1,)


def test_pause_and_resume_work_as_either_role_and_dispatch_cannot_set_limits(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    worker, dispatch = role_names
    with Queue(Settings(database_url=database_url, db_schema=SCHEMA)) as queue:
        for role in role_names:
            with _as(database_url, role) as as_role:
                assert queue.pause("roles", conn=as_role, reason=role) is True
                assert queue.resume("roles", conn=as_role) is True
        with _as(database_url, worker) as as_worker:
            assert read_stats(as_worker).queues[0].queue == "roles"
        with _as(database_url, dispatch) as as_app:
            for statement in (
                "UPDATE pgqueue.queues SET concurrency = 1",
                "SELECT concurrency FROM pgqueue.queues",
                "DELETE FROM pgqueue.queues",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    as_app.execute(statement.encode())
    assert conn.execute("SELECT name, paused_at FROM pgqueue.queues").fetchall() == [
        ("roles", None)
    ]


def test_dispatch_role_follows_a_job_with_status_but_reads_no_payload_or_traceback(
    role_names: tuple[str, str], conn: psycopg.Connection[Any], database_url: str
) -> None:
    _, dispatch = role_names
    _dispatch(conn, 1)
    [(queued,)] = conn.execute("SELECT id FROM pgqueue.jobs").fetchall()
    conn.execute(
        "INSERT INTO pgqueue.failed_jobs (id, queue, job_type, payload, priority, attempts,"
        " max_tries, exception_class, exception_message, traceback, enqueued_at)"
        " VALUES (9001, 'roles', 't', '{\"secret\": 1}', 0, 3, 3, 'builtins.ValueError', 'boom',"
        " 'Traceback: secret', now())"
    )
    conn.execute(
        "INSERT INTO pgqueue.job_results (id, queue, job_type, attempts, result, enqueued_at,"
        " keep_until) VALUES (9002, 'roles', 't', 1, '{\"width\": 100}', now(), now() + '1d')"
    )
    with (
        Queue(Settings(database_url=database_url, db_schema=SCHEMA)) as queue,
        _as(database_url, dispatch) as as_app,
    ):
        states = [queue.status(job_id, conn=as_app) for job_id in (queued, 9001, 9002)]
        for statement in (
            "SELECT payload FROM pgqueue.failed_jobs",
            "SELECT traceback FROM pgqueue.failed_jobs",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                as_app.execute(statement.encode())
    assert [status.state if status else None for status in states] == [
        "queued",
        "failed",
        "completed",
    ]
    assert states[1] is not None and states[1].error == "builtins.ValueError: boom"
    assert states[2] is not None and states[2].result == {"width": 100}


def test_doctor_as_the_worker_role_warns_of_the_unread_revision_and_runs_every_check(
    role_names: tuple[str, str], database_url: str
) -> None:
    from pgqueue.doctor import Verdict, diagnose

    worker, _ = role_names
    with _as(database_url, worker) as as_worker:
        checks = diagnose(as_worker, SCHEMA)
    schema_check = checks[0]
    assert schema_check.verdict is Verdict.WARN and "alembic_version" in schema_check.detail
    assert [check.name for check in checks[1:]] == [
        "jobs table",
        "oldest transaction",
        "expired leases",
        "workers",
        "paused queues",
        "notify queue",
    ]
