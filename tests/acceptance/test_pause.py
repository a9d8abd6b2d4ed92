"""Pausing and resuming a queue with the CLI while real `pgqueue work` processes serve it
(docs/operations.md, 'Pausing a queue'): no claim from the queue once `pause` returns, other
queues flow on, the pause holds across a worker restart, `resume` starts its jobs at once.

Each handler copies its row's queue and claimed_at into the ledger as it starts (pause_jobs.py),
so a job claimed just before the pause, ahead of a free slot, is told apart from one claimed
after it, which must never exist."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest

from tests.acceptance.helpers import count, wait_for
from tests.cli_runner import run_pgqueue

APP = ("--app", "tests.acceptance.pause_jobs")
# `other` first: its few jobs never starve `emails`, which fills the rest of the slot's time.
SERVE = ("--queue", "other,emails", "--concurrency", "1")


@pytest.fixture
def pause_ledger(ledger: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    ledger.execute("ALTER TABLE ledger ADD COLUMN queue text, ADD COLUMN claimed_at timestamptz")
    return ledger


def _dispatch(conn: psycopg.Connection[Any], queue: str, n: int, seconds: float = 0.2) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO pgqueue.jobs (queue, job_type, payload) VALUES (%s, 'pause.Paced', %s)",
            [(queue, json.dumps({"seconds": seconds}))] * n,
        )


def _cli(database_url: str, *args: str) -> str:
    """Run the installed `pgqueue` script, as a user types it; return its output."""
    run = run_pgqueue(*args, env={"PGQUEUE_DATABASE_URL": database_url}, script=True)
    assert run.exit_code == 0, (run.stdout, run.stderr)
    return run.stdout


def _now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def _started(conn: psycopg.Connection[Any], queue: str, after: datetime | None = None) -> int:
    """Jobs of `queue` started (after `after`, if given)."""
    row = conn.execute(
        "SELECT count(*) FROM ledger WHERE queue = %s AND at > coalesce(%s::timestamptz, '-infinity')",
        (queue, after),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _waiting(conn: psycopg.Connection[Any], queue: str) -> int:
    """Jobs of `queue` in the table and not leased: never claimed, or given back."""
    row = conn.execute(
        "SELECT count(*) FROM pgqueue.jobs WHERE queue = %s AND lease_token IS NULL", (queue,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _claimed_after(conn: psycopg.Connection[Any], queue: str, moment: datetime) -> list[Any]:
    """Starts of `queue`'s jobs claimed after `moment`, from the ledger, and rows of it leased
    after `moment`, still in the table: both must be empty once a pause has returned."""
    started = conn.execute(
        "SELECT job_id, claimed_at, at FROM ledger WHERE queue = %s AND claimed_at > %s",
        (queue, moment),
    ).fetchall()
    leased = conn.execute(
        "SELECT id, claimed_at FROM pgqueue.jobs WHERE queue = %s AND claimed_at > %s",
        (queue, moment),
    ).fetchall()
    return [*started, *leased]


def test_a_pause_from_the_cli_stops_its_queue_within_one_round_trip_while_others_flow(
    pause_ledger: psycopg.Connection[Any], database_url: str, start_worker: Any
) -> None:
    conn = pause_ledger
    _dispatch(conn, "emails", 60)
    _dispatch(conn, "other", 2)
    worker = start_worker(*APP, *SERVE, "--sleep", "0.1")
    wait_for(lambda: _started(conn, "emails") >= 3, 15)
    assert _started(conn, "other") == 2  # both queues flow

    assert "paused queue 'emails'" in _cli(
        database_url, "queues", "pause", "emails", "--reason", "provider outage"
    )
    paused_after = _now(conn)
    _dispatch(conn, "other", 6)
    wait_for(lambda: _started(conn, "other", paused_after) == 6, 10)
    time.sleep(1.0)  # five more job lengths: time for any claim of emails to show
    emails_late = _started(conn, "emails", paused_after)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)

    assert _claimed_after(conn, "emails", paused_after) == []
    # What started after the command had been claimed before it, ahead of the one slot: the job
    # being claimed as the pause committed, and the one the buffer may hold (docs/operations.md).
    assert emails_late <= 2, emails_late
    emails_started = count(conn, "SELECT count(*) FROM ledger WHERE queue = 'emails'")
    assert _waiting(conn, "emails") == 60 - emails_started > 40  # the rest wait, unclaimed
    assert count(conn, "SELECT count(*) FROM ledger WHERE attempt <> 1") == 0


def test_a_pause_holds_across_a_worker_restart(
    pause_ledger: psycopg.Connection[Any], database_url: str, start_worker: Any
) -> None:
    conn = pause_ledger
    _dispatch(conn, "emails", 30)
    first = start_worker(*APP, *SERVE, "--sleep", "0.1")
    wait_for(lambda: _started(conn, "emails") >= 2, 15)
    _cli(database_url, "queues", "pause", "emails")
    paused_after = _now(conn)
    first.send_signal(signal.SIGTERM)  # drains: the running job ends, any claimed ahead go back
    assert first.wait(timeout=10) == 0
    emails_started = count(conn, "SELECT count(*) FROM ledger WHERE queue = 'emails'")
    assert _waiting(conn, "emails") == 30 - emails_started

    second = start_worker(*APP, *SERVE, "--sleep", "0.1")
    _dispatch(conn, "other", 3)
    wait_for(lambda: _started(conn, "other", paused_after) == 3, 10)  # the new worker is serving
    time.sleep(1.0)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=10) == 0

    assert count(conn, f"SELECT count(*) FROM ledger WHERE pid = {second.pid}") == 3
    assert count(conn, "SELECT count(*) FROM ledger WHERE queue = 'emails'") == emails_started
    assert _claimed_after(conn, "emails", paused_after) == []
    assert _waiting(conn, "emails") == 30 - emails_started > 20
    rows = {line.split()[0]: line.split() for line in _cli(database_url, "queues").splitlines()}
    assert rows["emails"][1] == "paused"


def test_resume_from_the_cli_starts_the_queues_jobs_at_once(
    pause_ledger: psycopg.Connection[Any], database_url: str, start_worker: Any
) -> None:
    conn = pause_ledger
    _cli(database_url, "queues", "pause", "emails", "--reason", "deploy")
    _dispatch(conn, "emails", 8, seconds=0.05)
    _dispatch(conn, "other", 1, seconds=0.05)
    # Polls twice a minute: only the resume's wake-up can start the jobs within seconds.
    worker = start_worker(*APP, "--queue", "other,emails", "--concurrency", "4", "--sleep", "30")
    wait_for(lambda: _started(conn, "other") == 1, 10)
    time.sleep(0.5)  # the worker has found emails paused and gone idle
    assert _started(conn, "emails") == 0

    resumed = time.monotonic()
    assert "resumed queue 'emails'" in _cli(database_url, "queues", "resume", "emails")
    wait_for(lambda: _started(conn, "emails") == 8, 5)
    took = time.monotonic() - resumed
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert took < 3, took  # the CLI's own start-up included
    assert _waiting(conn, "emails") == 0
