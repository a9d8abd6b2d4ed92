"""Snooze from a blocking (`def handle`) job in a real `pgqueue work` process: the exception
crosses back from the child process and the job comes back later with no try spent."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg

from pgqueue import Queue, Settings
from tests.acceptance import jobs


def test_a_blocking_job_snoozes_across_the_process_boundary_and_runs_again(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(jobs.BlockingSnoozes(times=2, seconds=0.5))
    worker = start_worker("--max-jobs", "3", "--sleep", "0.1")
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 0, stderr
    events = ledger.execute(
        "SELECT event, attempt, at FROM ledger WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()
    # max_tries = 1, yet three runs: each snooze gave its try back (attempt 1 every time).
    assert [(event, attempt) for event, attempt, _ in events] == [
        ("start", 1),
        ("start", 1),
        ("start", 1),
        ("finish", 1),
    ]
    starts = [at for event, _, at in events if event == "start"]
    assert all((b - a).total_seconds() >= 0.45 for a, b in itertools.pairwise(starts))
    assert ledger.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (0,)
    assert ledger.execute("SELECT count(*) FROM pgqueue.failed_jobs").fetchone() == (0,)
    assert stderr.count("snoozed") >= 2
