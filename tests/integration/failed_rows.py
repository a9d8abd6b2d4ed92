"""Arrange `failed_jobs` rows directly, and run the `pgqueue` CLI, for the failed-job and cleanup tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

REPO = Path(__file__).resolve().parents[2]

# Ids come from the jobs table's sequence, as they do for a job that really failed, so a retried
# job can never collide with one dispatched later.
_INSERT = """
INSERT INTO pgqueue.failed_jobs (
    id, queue, job_type, payload, priority, attempts, max_tries, exception_class,
    exception_message, traceback, worker_id, enqueued_at, failed_at
)
SELECT nextval(pg_get_serial_sequence('pgqueue.jobs', 'id')), %(queue)s, %(job_type)s,
       %(payload)s, 0, %(attempts)s, %(max_tries)s, 'builtins.ValueError', %(message)s,
       %(traceback)s, 'host:1:abc', now() - interval '1 day' - %(ago)s * interval '1 second',
       now() - %(ago)s * interval '1 second'
FROM generate_series(1, %(count)s)
RETURNING id
"""


def insert_failed(
    conn: psycopg.Connection[Any],
    *,
    count: int = 1,
    failed_ago: float = 0.0,
    queue: str = "default",
    job_type: str = "app.jobs.SendEmail",
    payload: Any = None,
    attempts: int = 3,
    max_tries: int = 3,
    message: str = "boom",
    traceback: str = 'Traceback (most recent call last):\n  File "app.py", line 1\nValueError: boom',
) -> list[int]:
    """Insert `count` failed jobs that failed `failed_ago` seconds ago; return their ids."""
    rows = conn.execute(
        _INSERT,
        {
            "queue": queue,
            "job_type": job_type,
            "payload": Jsonb({"user_id": 42} if payload is None else payload),
            "attempts": attempts,
            "max_tries": max_tries,
            "message": message,
            "traceback": traceback,
            "ago": failed_ago,
            "count": count,
        },
    ).fetchall()
    return [row[0] for row in rows]


def ids_in(conn: psycopg.Connection[Any], table: str) -> list[int]:
    return [row[0] for row in conn.execute(f"SELECT id FROM pgqueue.{table} ORDER BY id")]


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PGQUEUE_")}
    return {**env, "PGQUEUE_DATABASE_URL": database_url, "PGQUEUE_SCHEMA": "pgqueue", **extra}


def pgqueue(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m pgqueue ARGS` from the repository root against `database_url`."""
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", *args],
        cwd=REPO,
        env=cli_env(database_url, **env),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
