"""docs/dashboards.md: every ```sql block runs against a populated database and returns rows, and
the views agree with `pgqueue stats` and go away with their migration."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import migrate
from pgqueue.stats import read_stats

DOC = Path(__file__).resolve().parents[2] / "docs" / "dashboards.md"
SQL_BLOCKS = re.findall(r"^```sql\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)
VIEWS = {"queue_backlog", "failures_per_hour", "error_classes", "worker_status"}


def _block_id(block: str) -> str:
    return block.splitlines()[0].removeprefix("-- ")[:60]


@pytest.fixture
def populated(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Jobs in each state in two queues, failures spread over three days, a live and a dead
    worker."""
    conn.execute(
        """
        INSERT INTO pgqueue.jobs (queue, job_type, payload, run_at, lease_token, lease_expires_at)
        VALUES
            ('emails', 'app.SendEmail', '{}', now() - interval '3 minutes', NULL, NULL),
            ('emails', 'app.SendEmail', '{}', now() - interval '20 seconds', NULL, NULL),
            ('emails', 'app.SendEmail', '{}', now() + interval '1 hour', NULL, NULL),
            ('emails', 'app.SendEmail', '{}', now() - interval '1 minute',
             gen_random_uuid(), now() + interval '30 seconds'),
            ('reports', 'app.BuildReport', '{}', now() - interval '10 minutes',
             gen_random_uuid(), now() - interval '2 minutes'),
            ('reports', 'app.BuildReport', '{}', now() + interval '1 day', NULL, NULL)
        """
    )
    conn.execute(
        """
        INSERT INTO pgqueue.failed_jobs (id, queue, job_type, payload, priority, attempts,
            max_tries, exception_class, exception_message, traceback, enqueued_at, failed_at)
        SELECT 1000 + n, queue, job_type, '{}', 0, 3, 3, exception_class, 'failed #' || n, '',
               now() - ago - interval '1 minute', now() - ago
        FROM (VALUES
            (1, 'emails', 'app.SendEmail', 'smtplib.SMTPException', interval '5 minutes'),
            (2, 'emails', 'app.SendEmail', 'smtplib.SMTPException', interval '50 minutes'),
            (3, 'emails', 'app.SendEmail', 'builtins.TimeoutError', interval '2 hours'),
            (4, 'reports', 'app.BuildReport', 'builtins.ValueError', interval '3 hours'),
            (5, 'reports', 'app.BuildReport', 'builtins.ValueError', interval '20 hours'),
            (6, 'reports', 'app.BuildReport', 'builtins.KeyError', interval '3 days')
        ) AS failure (n, queue, job_type, exception_class, ago)
        """
    )
    conn.execute(
        """
        INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, started_at,
            heartbeat_at, jobs_completed, jobs_failed)
        VALUES
            ('web1:100:aaaaaa', 'web1', 100, '{emails,reports}', 50,
             now() - interval '1 hour', now() - interval '5 seconds', 1200, 3),
            ('web2:200:bbbbbb', 'web2', 200, '{emails}', 50,
             now() - interval '2 hours', now() - interval '30 minutes', 800, 1)
        """
    )
    return conn


def test_the_docs_hold_the_usual_panels() -> None:
    text = "\n".join(SQL_BLOCKS)
    assert len(SQL_BLOCKS) >= 10
    for view in VIEWS:
        assert f"pgqueue.{view}" in text


@pytest.mark.parametrize("block", SQL_BLOCKS, ids=[_block_id(b) for b in SQL_BLOCKS])
def test_sql_block_in_the_docs_runs_and_returns_rows(
    populated: psycopg.Connection[Any], block: str
) -> None:
    rows = populated.execute(block.encode()).fetchall()
    assert rows, f"no rows from:\n{block}"


def test_queue_backlog_agrees_with_stats(populated: psycopg.Connection[Any]) -> None:
    backlog = {
        queue: (ready, scheduled, running, expired)
        for queue, ready, scheduled, running, expired in populated.execute(
            "SELECT queue, ready, scheduled, running, expired_leases FROM pgqueue.queue_backlog"
        )
    }
    assert backlog == {"emails": (2, 1, 1, 0), "reports": (0, 1, 1, 1)}
    stats = {q.queue: (q.ready, q.scheduled, q.running) for q in read_stats(populated).queues}
    assert {queue: numbers[:3] for queue, numbers in backlog.items()} == stats


def test_error_classes_and_failures_per_hour_count_each_failure_once(
    populated: psycopg.Connection[Any],
) -> None:
    classes = {
        name: (hour, day, total)
        for name, hour, day, total in populated.execute(
            "SELECT exception_class, failures_last_hour, failures_last_day, failures_total"
            " FROM pgqueue.error_classes"
        )
    }
    assert classes == {
        "smtplib.SMTPException": (2, 2, 2),
        "builtins.TimeoutError": (0, 1, 1),
        "builtins.ValueError": (0, 2, 2),
        "builtins.KeyError": (0, 0, 1),
    }
    per_hour = populated.execute("SELECT sum(failures) FROM pgqueue.failures_per_hour").fetchone()
    assert per_hour == (6,)


def test_worker_status_tells_live_from_dead(populated: psycopg.Connection[Any]) -> None:
    alive = dict(populated.execute("SELECT id, alive FROM pgqueue.worker_status").fetchall())
    assert alive == {"web1:100:aaaaaa": True, "web2:200:bbbbbb": False}


def _views(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'pgqueue'"
        )
        return {row[0] for row in rows}


def test_views_go_with_their_migration(database_url: str) -> None:
    assert _views(database_url) == VIEWS
    migrate.downgrade(database_url, "pgqueue", "0001")
    assert _views(database_url) == set()
    migrate.upgrade(database_url, "pgqueue")
    assert _views(database_url) == VIEWS
