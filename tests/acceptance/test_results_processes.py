"""Results and progress with a real `pgqueue work` process (SPEC 11): `def handle` results are
encoded in the worker's child processes and kept, `wait` returns them, progress reported from a
child shows in `status` and `pgqueue stats` while the job runs, and a result that cannot be kept
fails its job at once while the worker goes on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import Queue, Settings
from pgqueue.errors import JobFailedError
from tests.acceptance import results_jobs
from tests.cli_runner import run_pgqueue

APP = ("--app", "tests.acceptance.results_jobs", "--queue", "results")


def test_a_worker_process_keeps_results_that_wait_returns(
    settings: Settings, conn: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        blocking = queue.dispatch(results_jobs.Thumbnail(width=640))
        async_id = queue.dispatch(results_jobs.Summarise(words=["a", "bcd"]))
        worker = start_worker(*APP, "--stop-when-empty", "--sleep", "0.1")
        assert queue.wait(blocking, timeout=60) == {
            "width": 640,
            "height": 320,
            "pid_side": "child",
        }
        assert queue.wait(async_id, timeout=60) == {"a": 1, "bcd": 3}
        status = queue.status(blocking)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert status is not None and status.state == "completed" and status.attempts == 1
    assert conn.execute("SELECT count(*) FROM pgqueue.job_results").fetchone() == (2,)


def test_progress_from_a_child_process_shows_while_the_job_runs(
    settings: Settings, database_url: str, start_worker: Any, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    # A 1.5 s lease: a heartbeat, and so a progress write, every 0.5 s.
    worker = start_worker(*APP, "--sleep", "0.1", env={"PGQUEUE_LEASE": "1.5"})
    with Queue(settings) as queue:
        job_id = queue.dispatch(results_jobs.Crunch(release=str(release)))
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            status = queue.status(job_id)
            if status is not None and status.progress is not None and status.progress >= 0.6:
                break
            time.sleep(0.1)
        assert status is not None and status.state == "running"
        assert status.progress == pytest.approx(0.6)
        assert status.progress_message == "60 of 100 chunks"
        stats = run_pgqueue("stats", env={"PGQUEUE_DATABASE_URL": database_url})
        assert "60 of 100 chunks" in stats.stdout and "60%" in stats.stdout
        release.touch()
        assert queue.wait(job_id, timeout=60) == "crunched"
    worker.terminate()
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr


def test_a_result_that_cannot_be_kept_fails_its_job_at_once_and_the_worker_goes_on(
    settings: Settings, start_worker: Any
) -> None:
    with Queue(settings) as queue:
        bad = queue.dispatch(results_jobs.ReturnsASet())
        good = queue.dispatch(results_jobs.Thumbnail(width=10))
        worker = start_worker(*APP, "--stop-when-empty", "--sleep", "0.1")
        with pytest.raises(JobFailedError) as raised:
            queue.wait(bad, timeout=60)
        assert queue.wait(good, timeout=60) == {"width": 10, "height": 5, "pid_side": "child"}
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert raised.value.exception_class == "pgqueue.errors.InvalidResultError"
    assert "ReturnsASet.handle() returned {<object object" in raised.value.exception_message
    assert "retrying" not in stderr  # max_tries = 3, but the same code returns the same value
