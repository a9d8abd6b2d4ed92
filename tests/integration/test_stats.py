"""Per-queue stats against real PostgreSQL: each count on both sides of its boundary, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue.errors import DatabaseError
from pgqueue.stats import Stats, read_stats, read_stats_async

REPO = Path(__file__).resolve().parents[2]
MS = timedelta(milliseconds=1)


def _now(conn: psycopg.Connection[Any]) -> datetime:
    moment: datetime = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    return moment


def _job(
    conn: psycopg.Connection[Any],
    queue: str = "default",
    run_at: datetime | None = None,
    leased_until: datetime | None = None,
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, run_at, lease_token, lease_expires_at)"
        " VALUES (%s, 'tests.Stat', '{}', coalesce(%s, now()),"
        " CASE WHEN %s::timestamptz IS NULL THEN NULL ELSE gen_random_uuid() END, %s)",
        (queue, run_at, leased_until, leased_until),
    )


def _failure(conn: psycopg.Connection[Any], failed_at: datetime, queue: str = "default") -> None:
    conn.execute(
        "INSERT INTO pgqueue.failed_jobs (id, queue, job_type, payload, priority, attempts,"
        " max_tries, exception_class, exception_message, enqueued_at, failed_at)"
        " VALUES ((SELECT coalesce(max(id), 0) + 1 FROM pgqueue.failed_jobs), %s, 'tests.Stat',"
        " '{}', 0, 3, 3, 'builtins.ValueError', 'boom', %s, %s)",
        (queue, failed_at, failed_at),
    )


def _worker(
    conn: psycopg.Connection[Any], worker_id: str, queues: list[str], completed: int = 0
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, jobs_completed)"
        " VALUES (%s, 'host', 1, %s, 10, %s)",
        (worker_id, queues, completed),
    )


def _only(stats: Stats, queue: str = "default") -> Any:
    [found] = [q for q in stats.queues if q.queue == queue]
    return found


def test_job_due_just_before_the_read_is_ready_and_one_due_just_after_is_scheduled(
    conn: psycopg.Connection[Any],
) -> None:
    at = _now(conn)
    _job(conn, run_at=at - MS)
    _job(conn, run_at=at)
    _job(conn, run_at=at + MS)
    stats = _only(read_stats(conn, at=at))
    assert (stats.ready, stats.scheduled, stats.running) == (2, 1, 0)


def test_failure_59_minutes_before_the_read_counts_in_the_last_hour_and_61_does_not(
    conn: psycopg.Connection[Any],
) -> None:
    at = _now(conn)
    _failure(conn, at - timedelta(minutes=59))
    _failure(conn, at - timedelta(minutes=61))
    stats = _only(read_stats(conn, at=at))
    assert (stats.failed_last_hour, stats.failed_total) == (1, 2)


def test_leased_jobs_count_as_running_even_after_their_lease_expired(
    conn: psycopg.Connection[Any],
) -> None:
    at = _now(conn)
    _job(conn, run_at=at - timedelta(minutes=5), leased_until=at + timedelta(seconds=30))
    _job(conn, run_at=at - timedelta(minutes=5), leased_until=at - timedelta(seconds=30))
    stats = _only(read_stats(conn, at=at))
    assert (stats.ready, stats.scheduled, stats.running) == (0, 0, 2)
    assert stats.oldest_wait_seconds is None


def test_oldest_wait_counts_from_the_oldest_ready_jobs_run_at(
    conn: psycopg.Connection[Any],
) -> None:
    at = _now(conn)
    _job(conn, run_at=at - timedelta(seconds=90))
    _job(conn, run_at=at - timedelta(seconds=10))
    _job(conn, run_at=at + timedelta(hours=1))
    assert _only(read_stats(conn, at=at)).oldest_wait_seconds == pytest.approx(90.0)


def test_queues_come_from_jobs_failures_and_workers(conn: psycopg.Connection[Any]) -> None:
    at = _now(conn)
    _job(conn, queue="emails", run_at=at)
    _failure(conn, at - timedelta(days=3), queue="reports")
    _worker(conn, "w1", ["idle"])
    stats = read_stats(conn, at=at)
    assert [q.queue for q in stats.queues] == ["emails", "idle", "reports"]
    idle = _only(stats, "idle")
    assert (idle.ready, idle.scheduled, idle.running, idle.failed_total) == (0, 0, 0, 0)


def test_a_single_read_leaves_the_completion_rate_unknown(conn: psycopg.Connection[Any]) -> None:
    _worker(conn, "w1", ["default"], completed=100)
    stats = read_stats(conn)
    assert stats.window_seconds is None
    assert stats.completed_per_minute is None
    assert _only(stats).completed_per_minute is None


def test_two_reads_give_completions_per_minute_from_the_workers_counters(
    conn: psycopg.Connection[Any],
) -> None:
    _worker(conn, "solo", ["default"], completed=100)
    _worker(conn, "shared", ["a", "b"], completed=0)
    at = _now(conn)
    earlier = read_stats(conn, at=at)
    conn.execute("UPDATE pgqueue.workers SET jobs_completed = jobs_completed + 30")
    later = read_stats(conn, at=at + timedelta(seconds=30)).since(earlier)
    assert later.window_seconds == pytest.approx(30.0)
    assert _only(later).completed_per_minute == pytest.approx(60.0)
    assert _only(later, "a").completed_per_minute is None  # "shared" serves a and b
    assert later.completed_per_minute == pytest.approx(120.0)


async def test_read_stats_async_reads_the_same_numbers(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    at = _now(conn)
    _job(conn, run_at=at - MS)
    _failure(conn, at - timedelta(minutes=1))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as aconn:
        assert await read_stats_async(aconn, at=at) == read_stats(conn, at=at)


def test_stats_without_pgqueue_tables_says_to_migrate(empty_database_url: str) -> None:
    with (
        psycopg.connect(empty_database_url, autocommit=True) as conn,
        pytest.raises(DatabaseError, match="run `pgqueue migrate`"),
    ):
        read_stats(conn)


def _cli_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "PGQUEUE_DATABASE_URL": database_url, "PGQUEUE_SCHEMA": "pgqueue"}


def test_stats_cli_prints_a_table_and_json(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    _job(conn, queue="emails")
    command = [sys.executable, "-m", "pgqueue", "stats"]
    table = subprocess.run(
        command, cwd=REPO, env=_cli_env(database_url), capture_output=True, text=True, check=True
    )
    assert "emails" in table.stdout
    assert "--watch" in table.stdout
    as_json = subprocess.run(
        [*command, "--json"],
        cwd=REPO,
        env=_cli_env(database_url),
        capture_output=True,
        text=True,
        check=True,
    )
    document = json.loads(as_json.stdout)
    assert document["completed_per_minute"] is None
    assert document["queues"][0]["queue"] == "emails"
    assert document["queues"][0]["ready"] == 1
    assert (document["xmin_holder"], document["warnings"]) == (None, [])


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_stats_watch_json_reports_a_rate_from_the_second_read_and_stops_on_ctrl_c(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    _worker(conn, "w1", ["default"])
    with subprocess.Popen(
        [sys.executable, "-m", "pgqueue", "stats", "--watch", "--interval", "0.2", "--json"],
        cwd=REPO,
        env=_cli_env(database_url),
        stdout=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: Python turns SIGINT into KeyboardInterrupt only if
        # it did not inherit SIGINT ignored, and a CI runner's process may have it ignored.
        preexec_fn=_default_sigint,
    ) as watch:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        second = json.loads(watch.stdout.readline())
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=10) == 0
    assert first["completed_per_minute"] is None
    assert second["window_seconds"] > 0
    assert second["queues"][0]["completed_per_minute"] == 0.0


def _snapshot_holder(database_url: str) -> psycopg.Connection[Any]:
    holder = psycopg.connect(database_url, application_name="billing-report")
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT 1")
    return holder


def test_nothing_holding_vacuum_back_means_no_holder_and_no_warning(
    conn: psycopg.Connection[Any],
) -> None:
    stats = read_stats(conn)
    assert (stats.xmin_holder, stats.warnings) == (None, ())


def test_a_snapshot_held_open_is_named_and_warned_about_once_it_is_old_enough(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    with _snapshot_holder(database_url) as holder:
        pid = holder.info.backend_pid
        young = read_stats(conn)
        old = read_stats(conn, held_back_warn_seconds=0)  # as if it were a minute old
    assert young.xmin_holder is not None
    assert (young.xmin_holder.pid, young.xmin_holder.state) == (pid, "idle in transaction")
    assert young.xmin_holder.application == "billing-report"
    assert young.warnings == ()  # seconds old, under the 60 s
    [warning] = old.warnings
    assert warning.startswith(f"vacuum held back by pid {pid} (idle in transaction, user ")
    assert "application 'billing-report'" in warning
    assert warning.endswith(f"or SELECT pg_terminate_backend({pid})")
    document = old.to_json()
    assert document["warnings"] == [warning]
    assert document["xmin_holder"]["pid"] == pid
    assert document["xmin_holder"]["kind"] == "session"
    assert document["xmin_holder"]["query"] == "SELECT 1"


def test_stats_json_names_what_holds_back_vacuum(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    with _snapshot_holder(database_url) as holder:
        pid = holder.info.backend_pid
        result = subprocess.run(
            [sys.executable, "-m", "pgqueue", "stats", "--json"],
            cwd=REPO,
            env=_cli_env(database_url),
            capture_output=True,
            text=True,
            check=True,
        )
    document = json.loads(result.stdout)
    assert document["xmin_holder"]["pid"] == pid
    assert document["xmin_holder"]["application"] == "billing-report"
    assert document["xmin_holder"]["seconds"] >= 0
    assert document["warnings"] == []


def test_the_stats_table_shows_the_warning_under_it(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    from rich.console import Console

    from pgqueue.cli import _stats_table

    with _snapshot_holder(database_url) as holder:
        pid = holder.info.backend_pid
        old = read_stats(conn, held_back_warn_seconds=0)
    console = Console(width=300, record=True)
    console.print(_stats_table(old))
    assert f"warning: vacuum held back by pid {pid}" in console.export_text()
