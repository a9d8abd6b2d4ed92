"""`pgqueue doctor`: each check provoked on a real database, and the exit codes of the command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from pgqueue import migrate
from pgqueue.doctor import (
    UNSERVED_WAIT_FAIL_SECONDS,
    Check,
    Thresholds,
    Verdict,
    diagnose,
    diagnose_async,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "pgqueue"


def _doctor(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGQUEUE_DATABASE_URL": url, "PGQUEUE_SCHEMA": SCHEMA}
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", "doctor"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _line(output: str, name: str) -> str:
    [line] = [line for line in output.splitlines() if line[6:].startswith(name)]
    return line


def _check(checks: list[Check], name: str) -> Check:
    [found] = [check for check in checks if check.name == name]
    return found


def _live_worker(conn: psycopg.Connection[Any], queues: list[str] | None = None) -> None:
    conn.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency)"
        " VALUES ('host:1:live', 'host', 1, %s, 10)",
        (queues or ["default"],),
    )


def _ready_job(conn: psycopg.Connection[Any], queue: str = "default", waited: float = 0.0) -> None:
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, run_at)"
        " VALUES (%s, 'tests.Doc', '{}', now() - %s * interval '1 second')",
        (queue, waited),
    )


def test_healthy_database_is_ok_on_every_line_and_exits_0(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    _live_worker(conn)
    _ready_job(conn)
    result = _doctor(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["OK"] * 8, result.stdout
    assert [line[6:24].strip() for line in lines] == [
        "database",
        "schema",
        "jobs table",
        "oldest transaction",
        "expired leases",
        "workers",
        "paused queues",
        "notify queue",
    ]


def test_database_without_the_schema_fails_and_exits_1(empty_database_url: str) -> None:
    result = _doctor(empty_database_url)
    assert result.returncode == 1
    assert _line(result.stdout, "schema").startswith("FAIL")
    assert "run `pgqueue migrate`" in _line(result.stdout, "schema")
    # Checks on pgqueue's tables are skipped; the server-wide ones still run.
    assert "jobs table" not in result.stdout
    assert _line(result.stdout, "oldest transaction").startswith("OK")


def test_schema_behind_the_latest_revision_fails(database_url: str) -> None:
    migrate.downgrade(database_url, SCHEMA, "0001")
    with psycopg.connect(database_url, autocommit=True) as conn:
        check = _check(diagnose(conn, SCHEMA), "schema")
    assert check.verdict is Verdict.FAIL
    assert f"at revision 0001, this pgqueue ships {migrate.head_revision()}" in check.detail


def test_schema_at_a_revision_this_pgqueue_does_not_know_warns(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("UPDATE pgqueue.alembic_version SET version_num = '9999'")
    check = _check(diagnose(conn, SCHEMA), "schema")
    assert check.verdict is Verdict.WARN
    assert "upgrade pgqueue" in check.detail


def test_open_transaction_is_named_by_its_pid(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    _live_worker(conn)
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT txid_current()")  # opens a transaction that holds an xid
        pid = holder.info.backend_pid
        result = _doctor(database_url)
        line = _line(result.stdout, "oldest transaction")
        assert f"pid {pid} (idle in transaction" in line
        assert "SELECT txid_current()" in line
        assert line.startswith("OK")  # young: named, but under the warning age
        assert result.returncode == 0
        warn = _check(
            diagnose(conn, SCHEMA, Thresholds(transaction_warn_seconds=0)), "oldest transaction"
        )
        fail = _check(
            diagnose(conn, SCHEMA, Thresholds(transaction_fail_seconds=0)), "oldest transaction"
        )
    assert warn.verdict is Verdict.WARN
    assert fail.verdict is Verdict.FAIL
    assert f"pg_terminate_backend({pid})" in fail.detail


def test_no_open_transaction_is_ok(conn: psycopg.Connection[Any]) -> None:
    check = _check(diagnose(conn, SCHEMA), "oldest transaction")
    assert check == Check("oldest transaction", Verdict.OK, "no open transaction holds back vacuum")


def test_leases_expired_past_the_grace_period_fail_and_exit_1(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    _live_worker(conn)
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, lease_token, lease_expires_at)"
        " SELECT 'default', 'tests.Doc', '{}', gen_random_uuid(), now() - interval '5 minutes'"
        " FROM generate_series(1, 3)"
    )
    result = _doctor(database_url)
    assert result.returncode == 1
    line = _line(result.stdout, "expired leases")
    assert line.startswith("FAIL")
    assert "3 jobs hold leases that expired up to 5m" in line


def test_leases_expired_within_the_grace_period_are_ok(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, lease_token, lease_expires_at)"
        " VALUES ('default', 'tests.Doc', '{}', gen_random_uuid(), now() - interval '5 seconds')"
    )
    check = _check(diagnose(conn, SCHEMA), "expired leases")
    assert check.verdict is Verdict.OK
    assert "1 expired within the last 1m" in check.detail


def test_stale_worker_and_ready_jobs_nobody_serves_fail_and_exit_1(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, heartbeat_at)"
        " VALUES ('host:2:gone', 'host', 2, '{default}', 10, now() - interval '10 minutes')"
    )
    _ready_job(conn, waited=UNSERVED_WAIT_FAIL_SECONDS + 60)
    result = _doctor(database_url)
    assert result.returncode == 1
    line = _line(result.stdout, "workers")
    assert line.startswith("FAIL")
    assert "no live worker serves 'default' (1 ready" in line
    assert "host:2:gone 10m" in line


def test_live_worker_on_another_queue_does_not_serve_ready_jobs(
    conn: psycopg.Connection[Any],
) -> None:
    _live_worker(conn, ["emails"])
    _ready_job(conn, "reports", waited=UNSERVED_WAIT_FAIL_SECONDS + 60)
    check = _check(diagnose(conn, SCHEMA), "workers")
    assert check.verdict is Verdict.FAIL
    assert "'reports'" in check.detail


def test_ready_jobs_that_waited_briefly_for_a_worker_warn_and_exit_0(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    _ready_job(conn, waited=4)  # dispatched a moment before any worker started
    _ready_job(conn, "reports", waited=UNSERVED_WAIT_FAIL_SECONDS - 60)
    result = _doctor(database_url)
    assert result.returncode == 0, result.stdout
    line = _line(result.stdout, "workers")
    assert line.startswith("WARN")
    assert "no live worker serves 'default' (1 ready, oldest waiting " in line
    assert "'reports' (1 ready, oldest waiting 4m" in line


def test_no_worker_and_nothing_ready_warns_and_exits_0(database_url: str) -> None:
    result = _doctor(database_url)
    assert result.returncode == 0
    assert _line(result.stdout, "workers").startswith("WARN")


def test_dead_tuples_in_the_jobs_table_fail(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    conn.execute("ALTER TABLE pgqueue.jobs SET (autovacuum_enabled = false)")
    with psycopg.connect(database_url, autocommit=True) as churn:
        churn.execute(
            "INSERT INTO pgqueue.jobs (queue, job_type, payload)"
            " SELECT 'default', 'tests.Doc', '{}' FROM generate_series(1, 20000)"
        )
        churn.execute("DELETE FROM pgqueue.jobs")
    # Statistics reach the shared counters when the session ends (or within a second).
    deadline = time.monotonic() + 10
    while True:
        check = _check(diagnose(conn, SCHEMA), "jobs table")
        if check.verdict is not Verdict.OK or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert check.verdict is Verdict.FAIL, check.detail
    assert check.detail.startswith("20,000 dead of 20,000 tuples (100%)")
    assert "jobs_claim_idx" in check.detail
    assert "VACUUM pgqueue.jobs" in check.detail


def test_notify_queue_usage_is_reported(conn: psycopg.Connection[Any]) -> None:
    check = _check(diagnose(conn, SCHEMA), "notify queue")
    assert check.verdict is Verdict.OK
    assert check.detail == "0.0% of the NOTIFY queue in use"


def test_notify_queue_thresholds_apply(conn: psycopg.Connection[Any]) -> None:
    check = _check(diagnose(conn, SCHEMA, Thresholds(notify_queue_warn=0.0)), "notify queue")
    assert check.verdict is Verdict.WARN
    assert "every dispatch fails" in check.detail


def test_a_check_that_cannot_run_fails_without_stopping_the_others(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("DROP TABLE pgqueue.alembic_version")
    conn.execute("CREATE TABLE pgqueue.alembic_version (wrong_column text)")
    checks = diagnose(conn, SCHEMA)
    assert _check(checks, "schema").detail.startswith("could not check: column")
    assert _check(checks, "notify queue").verdict is Verdict.OK


def test_unreachable_database_is_one_fail_line_without_the_password() -> None:
    result = _doctor("postgresql://someone:sup3rsecret@127.0.0.1:1/nowhere?connect_timeout=2")
    assert result.returncode == 1
    assert result.stdout.startswith(
        "FAIL  database            cannot connect to postgresql://someone:***@"
    )
    assert len(result.stdout.splitlines()) == 1
    assert "sup3rsecret" not in result.stdout + result.stderr


async def test_diagnose_async_gives_the_same_lines(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    _live_worker(conn)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as aconn:
        lines = await diagnose_async(aconn, SCHEMA)
    assert [(c.name, c.verdict) for c in lines] == [
        (c.name, c.verdict) for c in diagnose(conn, SCHEMA)
    ]


# ---- vacuum held back: a real snapshot pins the dead rows of deleted jobs ---------------------


def _churn(database_url: str, rows: int = 20_000) -> None:
    """Insert and delete `rows` jobs on a connection of its own, then wait until the statistics
    count them dead (they reach the shared counters when that session ends, or within a second)."""
    with psycopg.connect(database_url, autocommit=True) as churn:
        churn.execute(
            "INSERT INTO pgqueue.jobs (queue, job_type, payload)"
            " SELECT 'churn', 'tests.Doc', '{}' FROM generate_series(1, %s)",
            (rows,),
        )
        churn.execute("DELETE FROM pgqueue.jobs WHERE queue = 'churn'")
    with psycopg.connect(database_url, autocommit=True) as reader:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = reader.execute(
                "SELECT n_dead_tup FROM pg_stat_user_tables"
                " WHERE schemaname = 'pgqueue' AND relname = 'jobs'"
            ).fetchone()
            if row is not None and row[0] >= rows:
                return
            time.sleep(0.1)
    raise AssertionError("the dead tuples never reached the statistics")


def _snapshot_holder(database_url: str) -> psycopg.Connection[Any]:
    """A session that holds a snapshot open, as a forgotten report or psql session does."""
    holder = psycopg.connect(database_url, application_name="billing-report")
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT 1")
    return holder


def test_a_snapshot_held_while_jobs_are_deleted_is_named_as_the_cause_of_the_dead_tuples(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    conn.execute("ALTER TABLE pgqueue.jobs SET (autovacuum_enabled = false)")
    with _snapshot_holder(database_url) as holder:
        pid = holder.info.backend_pid
        _churn(database_url)
        # Vacuum really is held back: it has to leave every dead row in place.
        conn.execute("VACUUM pgqueue.jobs")
        aged = Thresholds(held_back_warn_seconds=0)  # as if the snapshot were a minute old
        checks = diagnose(conn, SCHEMA, aged)
    jobs, oldest = _check(checks, "jobs table"), _check(checks, "oldest transaction")
    assert jobs.verdict is Verdict.FAIL
    assert jobs.detail.startswith("20,000 dead of 20,000 tuples (100%)")
    assert f"vacuum is held back by pid {pid} (idle in transaction" in jobs.detail
    assert "application 'billing-report'" in jobs.detail
    assert f"SELECT pg_terminate_backend({pid}), then run VACUUM pgqueue.jobs" in jobs.detail
    assert oldest.verdict is Verdict.WARN  # young for an open transaction alone (5 minutes)
    assert oldest.detail.startswith(f"pid {pid} (idle in transaction, user ")
    assert "the likely cause of the 20,000 dead tuples in pgqueue.jobs" in oldest.detail
    assert f"or SELECT pg_terminate_backend({pid})" in oldest.detail


def test_a_held_back_vacuum_warns_then_fails_by_the_holders_age(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    conn.execute("ALTER TABLE pgqueue.jobs SET (autovacuum_enabled = false)")
    with _snapshot_holder(database_url) as holder:
        pid = holder.info.backend_pid
        _churn(database_url)
        result = _doctor(database_url)
        checks_young = diagnose(conn, SCHEMA)
        young = _check(checks_young, "oldest transaction")
        warn = _check(
            diagnose(conn, SCHEMA, Thresholds(held_back_warn_seconds=0)), "oldest transaction"
        )
        fail = _check(
            diagnose(conn, SCHEMA, Thresholds(held_back_fail_seconds=0)), "oldest transaction"
        )
        # Below dead_tuples_min the same snapshot is no cause: it is rated by age alone.
        calm = _check(
            diagnose(conn, SCHEMA, Thresholds(held_back_fail_seconds=0, dead_tuples_min=1_000_000)),
            "oldest transaction",
        )
    assert (young.verdict, warn.verdict, fail.verdict) == (Verdict.OK, Verdict.WARN, Verdict.FAIL)
    assert "likely cause" not in young.detail  # seconds old: no vacuum run has met it yet
    assert "or the oldest transaction (below, " in _check(checks_young, "jobs table").detail
    assert result.returncode == 1  # the jobs table's FAIL
    line = _line(result.stdout, "oldest transaction")
    assert f"pid {pid} (idle in transaction" in line
    assert "application 'billing-report'" in line
    assert calm.verdict is Verdict.OK
    assert "likely cause" not in calm.detail


def test_a_holder_fails_its_own_line_while_dead_tuples_are_still_a_small_share(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    conn.execute("ALTER TABLE pgqueue.jobs SET (autovacuum_enabled = false)")
    # Few dead tuples in a big table: the jobs table line stays OK, the holder alone fails. The
    # rows go in on a session of their own: PostgreSQL counts them live in its statistics when
    # that session ends, where a session kept open (conn) may report them seconds later.
    with psycopg.connect(database_url, autocommit=True) as filler:
        filler.execute(
            "INSERT INTO pgqueue.jobs (queue, job_type, payload, run_at)"
            " SELECT 'default', 'tests.Doc', '{}', now() + interval '1 day'"
            " FROM generate_series(1, 100000)"
        )
    with _snapshot_holder(database_url):
        _churn(database_url, rows=12_000)
        checks = diagnose(conn, SCHEMA, Thresholds(held_back_fail_seconds=0))
    assert _check(checks, "jobs table").verdict is Verdict.OK  # 11% dead
    oldest = _check(checks, "oldest transaction")
    assert oldest.verdict is Verdict.FAIL
    assert "the likely cause of the 12,000 dead tuples" in oldest.detail


def test_once_the_holder_ends_vacuum_removes_the_rows_and_doctor_is_ok(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    conn.execute("ALTER TABLE pgqueue.jobs SET (autovacuum_enabled = false)")
    with _snapshot_holder(database_url) as holder:
        _churn(database_url)
        holder.rollback()
    conn.execute("VACUUM pgqueue.jobs")
    checks = diagnose(conn, SCHEMA, Thresholds(held_back_warn_seconds=0))
    assert _check(checks, "jobs table").verdict is Verdict.OK
    assert _check(checks, "oldest transaction").detail == "no open transaction holds back vacuum"


def test_dead_tuples_with_nothing_holding_vacuum_back_blame_autovacuum(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    conn.execute("ALTER TABLE pgqueue.jobs SET (autovacuum_enabled = false)")
    _churn(database_url)
    check = _check(diagnose(conn, SCHEMA, Thresholds(held_back_warn_seconds=0)), "jobs table")
    assert check.verdict is Verdict.FAIL
    assert "no transaction holds it back: autovacuum is behind (or off for this table)" in (
        check.detail
    )
    assert check.detail.endswith("; run VACUUM pgqueue.jobs")
