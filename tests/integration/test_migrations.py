"""The schema's alembic migrations: round trip, concurrency, and the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from pgqueue import migrate

REPO = Path(__file__).resolve().parents[2]
PGQUEUE = [sys.executable, "-m", "pgqueue"]


def _tables(url: str, schema: str = "pgqueue") -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (schema,),
        )
        return {row[0] for row in rows}


def _version(url: str, schema: str = "pgqueue") -> list[Any]:
    with psycopg.connect(url) as conn:
        return [
            row[0] for row in conn.execute(f'SELECT version_num FROM "{schema}".alembic_version')
        ]


def test_upgrade_downgrade_upgrade_round_trip(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, "pgqueue")
    assert _tables(empty_database_url) == {
        "jobs",
        "failed_jobs",
        "workers",
        "schedules",
        "queues",
        "job_limits",
        "limit_starts",
        "job_results",
        "queue_throughput",
        "alembic_version",
    }
    assert _version(empty_database_url) == [migrate.head_revision()]
    migrate.downgrade(empty_database_url, "pgqueue", "base")
    assert _tables(empty_database_url) == {"alembic_version"}
    assert _version(empty_database_url) == []
    migrate.upgrade(empty_database_url, "pgqueue")
    assert _tables(empty_database_url) == {
        "jobs",
        "failed_jobs",
        "workers",
        "schedules",
        "queues",
        "job_limits",
        "limit_starts",
        "job_results",
        "queue_throughput",
        "alembic_version",
    }


def test_two_schemas_in_one_database_stay_apart(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, "queue_a")
    migrate.upgrade(empty_database_url, "queue_b")
    migrate.downgrade(empty_database_url, "queue_a", "base")
    assert "jobs" in _tables(empty_database_url, "queue_b")
    assert "jobs" not in _tables(empty_database_url, "queue_a")


def test_alembic_upgrade_head_works_from_a_checkout(empty_database_url: str) -> None:
    env = {**os.environ, "PGQUEUE_DATABASE_URL": empty_database_url, "PGQUEUE_SCHEMA": "ops"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "jobs" in _tables(empty_database_url, "ops")


def test_three_concurrent_migrate_runs_leave_one_correct_schema(empty_database_url: str) -> None:
    env = {**os.environ, "PGQUEUE_DATABASE_URL": empty_database_url}

    def run_migrate(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PGQUEUE, "migrate"], env=env, capture_output=True, text=True, check=False
        )

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run_migrate, range(3)))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert _tables(empty_database_url) == {
        "jobs",
        "failed_jobs",
        "workers",
        "schedules",
        "queues",
        "job_limits",
        "limit_starts",
        "job_results",
        "queue_throughput",
        "alembic_version",
    }
    assert _version(empty_database_url) == [migrate.head_revision()]


def test_migrate_does_not_print_the_password(empty_database_url: str) -> None:
    bad_url = "postgresql://someone:sup3rsecret@127.0.0.1:1/nowhere?connect_timeout=2"
    env = {**os.environ, "PGQUEUE_DATABASE_URL": bad_url}
    result = subprocess.run(
        [*PGQUEUE, "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: migrating postgresql://someone:***@127.0.0.1:1/")
    assert "Traceback" not in result.stderr
    assert "sup3rsecret" not in result.stdout + result.stderr
