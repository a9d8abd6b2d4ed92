"""Cancelling running jobs in real `pgqueue work` processes (SPEC 10): the worker holding the job
stops it within about a second (an async handler cancelled in place, a blocking handler's process
killed) and moves it to failed_jobs as JobCancelledError, without running failed()."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg

from pgqueue import Job, Queue, Settings
from tests.acceptance import cancel_jobs
from tests.acceptance.helpers import count, wait_for

CANCEL_APP = ("--app", "tests.acceptance.cancel_jobs", "--grace", "1")


def _events(ledger: psycopg.Connection[Any], job_id: int) -> list[str]:
    rows = ledger.execute(
        "SELECT event FROM ledger WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()
    return [row[0] for row in rows]


def _started(ledger: psycopg.Connection[Any], job_id: int) -> bool:
    return "start" in _events(ledger, job_id)


def _cancel_and_time(settings: Settings, ledger: psycopg.Connection[Any], job_id: int) -> float:
    """Cancel `job_id` and return the seconds until it is in failed_jobs."""
    with Queue(settings) as queue:
        began = time.monotonic()
        assert queue.cancel(job_id) is True
        wait_for(
            lambda: (
                count(ledger, f"SELECT count(*) FROM pgqueue.failed_jobs WHERE id = {job_id}") == 1
            ),
            timeout=15,
        )
        return time.monotonic() - began


def _assert_cancelled(ledger: psycopg.Connection[Any], job_id: int) -> None:
    row = ledger.execute(
        "SELECT exception_class, exception_message, attempts FROM pgqueue.failed_jobs"
        " WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    assert row[0] == "pgqueue.errors.JobCancelledError"
    assert row[1].startswith("cancelled while running attempt 1; stopped by worker ")
    assert row[2] == 1
    assert count(ledger, f"SELECT count(*) FROM pgqueue.jobs WHERE id = {job_id}") == 0


def _dispatch(settings: Settings, job: Job) -> int:
    with Queue(settings) as queue:
        return queue.dispatch(job)


def _stop(worker: Any) -> str:
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    return str(stderr)


def test_a_running_async_job_is_cancelled_in_place_within_a_second(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    job_id = _dispatch(settings, cancel_jobs.LongAsync())
    worker = start_worker(*CANCEL_APP, "--concurrency", "2")
    wait_for(lambda: _started(ledger, job_id))
    assert _cancel_and_time(settings, ledger, job_id) < 1.5
    _assert_cancelled(ledger, job_id)
    assert _events(ledger, job_id) == ["start", "cancelled-in-place"]  # no failed(), no finish
    # The worker goes on with other work.
    other = _dispatch(settings, cancel_jobs.LongAsync())
    wait_for(lambda: _started(ledger, other))
    stderr = _stop(worker)
    assert "cancelled" in stderr


def test_a_running_blocking_job_has_its_process_killed(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    job_id = _dispatch(settings, cancel_jobs.LongBlocking())
    worker = start_worker(*CANCEL_APP, "--concurrency", "2")
    wait_for(lambda: _started(ledger, job_id))
    row = ledger.execute("SELECT pid FROM ledger WHERE job_id = %s", (job_id,)).fetchone()
    assert row is not None
    child = int(row[0])
    assert child != worker.pid
    os.kill(child, 0)  # alive while it runs
    assert _cancel_and_time(settings, ledger, job_id) < 2.0
    _assert_cancelled(ledger, job_id)

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=5)
    assert _events(ledger, job_id) == ["start"]  # killed: no finish, and no failed()
    _stop(worker)


def test_a_missed_notification_is_made_up_by_the_heartbeat(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    """The cancel request alone, with no NOTIFY (as if the listener were down): the worker finds
    it with its next lease renewal (every lease / 3 s)."""
    job_id = _dispatch(settings, cancel_jobs.LongAsync())
    worker = start_worker(*CANCEL_APP, "--lease", "3")
    wait_for(lambda: _started(ledger, job_id))
    ledger.execute("UPDATE pgqueue.jobs SET cancel_requested_at = now() WHERE id = %s", (job_id,))
    wait_for(
        lambda: count(ledger, f"SELECT count(*) FROM pgqueue.failed_jobs WHERE id = {job_id}") == 1,
        timeout=5,
    )
    _assert_cancelled(ledger, job_id)
    assert "failed-called" not in _events(ledger, job_id)
    _stop(worker)
