"""Retention of failed_jobs: prune_failed_jobs (sync and async) and `pgqueue cleanup`, on real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from pgqueue.errors import ConfigurationError
from pgqueue.maintenance import prune_failed_jobs, prune_failed_jobs_async
from tests.integration.failed_rows import REPO, cli_env, ids_in, insert_failed, pgqueue

DAY = 86400.0


def test_prune_deletes_rows_past_the_cutoff_and_keeps_newer_ones(
    conn: psycopg.Connection[Any],
) -> None:
    insert_failed(conn, count=3, failed_ago=30 * DAY + 60)
    newer = insert_failed(conn, count=2, failed_ago=30 * DAY - 60)
    assert prune_failed_jobs(conn, 30 * DAY) == 3
    assert ids_in(conn, "failed_jobs") == newer


def test_prune_in_small_batches_counts_every_row(conn: psycopg.Connection[Any]) -> None:
    insert_failed(conn, count=103, failed_ago=2 * DAY)
    newer = insert_failed(conn, count=5, failed_ago=10)
    # 103 rows in batches of 10: ten full batches, then a short one of 3 that ends the loop.
    assert prune_failed_jobs(conn, DAY, batch_size=10) == 103
    assert ids_in(conn, "failed_jobs") == newer
    assert prune_failed_jobs(conn, DAY, batch_size=10) == 0


def test_prune_of_an_exact_multiple_of_the_batch_size(conn: psycopg.Connection[Any]) -> None:
    insert_failed(conn, count=20, failed_ago=2 * DAY)
    assert prune_failed_jobs(conn, DAY, batch_size=10) == 20
    assert ids_in(conn, "failed_jobs") == []


async def test_prune_async_deletes_rows_past_the_cutoff(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    insert_failed(conn, count=7, failed_ago=2 * DAY)
    newer = insert_failed(conn, failed_ago=DAY - 60)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as aconn:
        assert await prune_failed_jobs_async(aconn, DAY, batch_size=3) == 7
    assert ids_in(conn, "failed_jobs") == newer


def test_prune_skips_rows_locked_elsewhere_instead_of_waiting(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    old = insert_failed(conn, count=5, failed_ago=2 * DAY)
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM pgqueue.failed_jobs WHERE id = %s FOR UPDATE", (old[0],))
        started = time.monotonic()
        assert prune_failed_jobs(conn, DAY) == 4
        assert time.monotonic() - started < 5
        holder.rollback()
    assert prune_failed_jobs(conn, DAY) == 1
    assert ids_in(conn, "failed_jobs") == []


def test_concurrent_prunes_delete_each_row_once(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    insert_failed(conn, count=3000, failed_ago=2 * DAY)
    kept = insert_failed(conn, count=3, failed_ago=60)
    barrier = threading.Barrier(3)
    counts: list[int] = []

    def prune() -> None:
        with psycopg.connect(database_url, autocommit=True) as own:
            barrier.wait()
            counts.append(prune_failed_jobs(own, DAY, batch_size=25))

    threads = [threading.Thread(target=prune) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) == 3000
    assert ids_in(conn, "failed_jobs") == kept


@pytest.mark.parametrize(
    ("older_than", "batch_size", "message"),
    [(-1, 10, "older_than_seconds"), (float("nan"), 10, "older_than_seconds"), (1, 0, "batch")],
)
def test_prune_refuses_bad_arguments(
    conn: psycopg.Connection[Any], older_than: float, batch_size: int, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        prune_failed_jobs(conn, older_than, batch_size)


# ---- the CLI --------------------------------------------------------------------------------


def test_cli_cleanup_prunes_past_the_cutoff_and_prints_one_line(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    insert_failed(conn, count=4, failed_ago=30 * DAY + 60)
    newer = insert_failed(conn, count=2, failed_ago=30 * DAY - 60)
    result = pgqueue(database_url, "cleanup", "--older-than", "30d")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pruned 4 failed jobs that failed over 30d ago\n"
    assert ids_in(conn, "failed_jobs") == newer


def test_cli_cleanup_defaults_to_the_retention_setting(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    insert_failed(conn, failed_ago=2 * 3600 + 60)
    newer = insert_failed(conn, failed_ago=2 * 3600 - 60)
    result = pgqueue(database_url, "cleanup", "--batch-size", "1", PGQUEUE_RETENTION="2h")
    assert (result.returncode, result.stdout) == (
        0,
        "pruned 1 failed job that failed over 2h ago\n",
    ), result.stderr
    assert ids_in(conn, "failed_jobs") == newer


def test_two_concurrent_cli_cleanups_both_exit_0_and_delete_each_row_once(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    insert_failed(conn, count=20_000, failed_ago=2 * DAY)
    kept = insert_failed(conn, count=2, failed_ago=60)
    command = [sys.executable, "-m", "pgqueue", "cleanup", "--older-than", "1d"]
    runs = [
        subprocess.Popen(
            [*command, "--batch-size", "100"],
            cwd=REPO,
            env=cli_env(database_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    counts = [int(stdout.split()[1]) for stdout, _ in outputs]
    assert sum(counts) == 20_000
    assert ids_in(conn, "failed_jobs") == kept


def test_cli_cleanup_refuses_a_bad_duration(database_url: str) -> None:
    result = pgqueue(database_url, "cleanup", "--older-than", "30 days")
    assert result.returncode == 2  # a usage error
    assert result.stderr.startswith("error: --older-than: '30 days' is not a duration")


def test_cli_cleanup_refuses_a_bad_retention_setting(database_url: str) -> None:
    result = pgqueue(database_url, "cleanup", PGQUEUE_RETENTION="forever")
    assert result.returncode != 0
    assert "PGQUEUE_RETENTION: 'forever' is not a duration" in result.stderr
