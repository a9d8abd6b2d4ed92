"""Each pgqueue service of compose.yaml, run outside Docker against a real PostgreSQL: its command
and its environment as written, with PGQUEUE_DATABASE_URL pointing at the test database and the
repository root standing in for /app (where the worker's job modules are mounted).

How the file itself is put together (order, scaling, stop signal) is tests/unit/test_deployment_files.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer

from pgqueue.cli import app
from tests.deployment_files import REPO, pgqueue_arguments, pgqueue_services

pytestmark = pytest.mark.slow  # each test runs pgqueue processes


def service_environment(service: str, database_url: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    environment.update({k: str(v) for k, v in pgqueue_services()[service]["environment"].items()})
    environment["PGQUEUE_DATABASE_URL"] = database_url
    return environment


def run_service(
    service: str, database_url: str, *extra: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`pgqueue` with the service's command (plus `extra`), as its container would run it."""
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", *pgqueue_arguments(pgqueue_services()[service]), *extra],
        cwd=REPO,
        env=service_environment(service, database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _count(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _dispatch_compose_jobs(database_url: str, count: int) -> None:
    """What compose.yaml's header says to run to put work in."""
    subprocess.run(
        [sys.executable, "-m", "examples.compose_jobs", str(count)],
        cwd=REPO,
        env=service_environment("worker", database_url),
        capture_output=True,
        check=True,
        timeout=60,
    )


def test_migrate_service_creates_the_schema(empty_database_url: str) -> None:
    result = run_service("migrate", empty_database_url)

    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_database_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'pgqueue'"
            )
        }
    assert {"jobs", "failed_jobs", "workers"} <= tables


def test_worker_service_works_the_example_jobs(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _dispatch_compose_jobs(database_url, 200)
    assert _count(conn, "SELECT count(*) FROM pgqueue.jobs") == 200

    result = run_service("worker", database_url, "--stop-when-empty")

    assert result.returncode == 0, result.stderr
    assert "completed=200 " in result.stderr  # the stop line (a line per job is DEBUG)
    assert _count(conn, "SELECT count(*) FROM pgqueue.jobs") == 0
    assert _count(conn, "SELECT count(*) FROM pgqueue.failed_jobs") == 0


def test_worker_service_drains_and_exits_0_on_its_stop_signal(
    database_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    worker = pgqueue_services()["worker"]
    log = tmp_path / "worker.log"
    with log.open("w") as output:  # a file, not a pipe: a busy worker never blocks on it
        process = subprocess.Popen(
            [sys.executable, "-m", "pgqueue", *pgqueue_arguments(worker)],
            cwd=REPO,
            env=service_environment("worker", database_url),
            stdout=output,
            stderr=output,
        )
    try:
        deadline = time.monotonic() + 30
        while _count(conn, "SELECT count(*) FROM pgqueue.workers") == 0:
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        _dispatch_compose_jobs(database_url, 100)

        process.send_signal(signal.Signals[worker["stop_signal"]])
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, log.read_text()
    assert "stopping: no new claims" in log.read_text()
    # Whatever it had claimed, it finished or handed back: nothing is left leased.
    assert _count(conn, "SELECT count(*) FROM pgqueue.jobs WHERE lease_token IS NOT NULL") == 0
    assert _count(conn, "SELECT count(*) FROM pgqueue.failed_jobs") == 0


def _insert_failed_job(conn: psycopg.Connection[Any], failed_days_ago: float) -> int:
    row = conn.execute(
        "INSERT INTO pgqueue.failed_jobs (id, queue, job_type, payload, priority, attempts,"
        " max_tries, exception_class, exception_message, enqueued_at, failed_at)"
        " SELECT nextval(pg_get_serial_sequence('pgqueue.jobs', 'id')), 'default',"
        " 'examples.compose_jobs.ResizeImage', '{\"image_id\": 1}', 0, 3, 3,"
        " 'builtins.ValueError', 'boom', now() - interval '40 days',"
        " now() - %s * interval '1 day' RETURNING id",
        (failed_days_ago,),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.skipif(
    "cleanup" not in typer.main.get_command(app).commands,  # type: ignore[attr-defined]
    reason="`pgqueue cleanup` is not in this CLI yet",
)
def test_cleanup_service_prunes_failed_jobs_older_than_its_cutoff(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    old = _insert_failed_job(conn, failed_days_ago=31)
    recent = _insert_failed_job(conn, failed_days_ago=29)

    result = run_service("cleanup", database_url)

    assert result.returncode == 0, result.stderr
    assert "pruned 1 failed job" in result.stdout
    remaining = [row[0] for row in conn.execute("SELECT id FROM pgqueue.failed_jobs")]
    assert remaining == [recent]
    assert old not in remaining
