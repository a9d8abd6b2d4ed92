"""Real `pgqueue work` processes against real PostgreSQL: outcomes, signals, crashes, timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import Queue, Settings
from tests.acceptance import jobs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute(
        "CREATE TABLE ledger (job_id bigint, attempt int, event text, pid int, "
        "at timestamptz DEFAULT clock_timestamp())"
    )
    return conn


@pytest.fixture
def start_worker(database_url: str) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(*flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
        environment.update({"PGQUEUE_DATABASE_URL": database_url, **(env or {})})
        process = subprocess.Popen(
            [sys.executable, "-m", "pgqueue", "work", "--app", "tests.acceptance.jobs", *flags],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def _wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _count(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_two_workers_run_every_job_exactly_once(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.Record() for _ in range(3000)])
    workers = [start_worker("--concurrency", "8", "--stop-when-empty") for _ in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
    assert _count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0
    assert (
        _count(ledger, "SELECT count(DISTINCT job_id) FROM ledger WHERE event = 'finish'") == 3000
    )
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 3000


def test_sigterm_lets_running_jobs_finish_and_exits_zero(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.Record(seconds=1.0) for _ in range(10)])
    worker = start_worker("--concurrency", "4", "--grace", "10")
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 4)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 4
    assert _count(ledger, "SELECT count(*) FROM pgqueue.jobs WHERE lease_token IS NULL") == 6
    assert "worker stopped" in stderr


def test_sigterm_returns_unfinished_jobs_at_once_after_the_grace_period(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.Record(seconds=30) for _ in range(3)])
    worker = start_worker("--concurrency", "3", "--grace", "0.5", "--lease", "60")
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 3)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    # Back in the queue now, not after the 60 s lease, and the interrupted try is not counted.
    assert ledger.execute(
        "SELECT count(*), max(attempts) FROM pgqueue.jobs WHERE lease_token IS NULL"
    ).fetchone() == (3, 0)


def test_a_second_signal_stops_hard(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.Record(seconds=30) for _ in range(2)])
    worker = start_worker("--concurrency", "2", "--grace", "60")
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 2)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    worker.send_signal(signal.SIGINT)
    worker.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert worker.returncode == 1
    assert _count(ledger, "SELECT count(*) FROM pgqueue.jobs WHERE lease_token IS NULL") == 2


def test_jobs_of_a_sigkilled_worker_are_rescued_and_run_again(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.Record(seconds=0.2) for _ in range(40)])
    fast = {"PGQUEUE_RESCUE_INTERVAL": "0.5"}
    victim = start_worker("--concurrency", "4", "--lease", "1", env=fast)
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") >= 6)
    victim.kill()
    victim.communicate(timeout=10)
    survivor = start_worker("--concurrency", "4", "--lease", "1", env=fast)
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0, timeout=60)
    survivor.send_signal(signal.SIGTERM)
    survivor.communicate(timeout=30)
    assert _count(ledger, "SELECT count(DISTINCT job_id) FROM ledger WHERE event = 'finish'") == 40
    # A job ran twice only if it was running in the killed worker.
    twice = ledger.execute(
        "SELECT job_id FROM ledger WHERE event = 'start' GROUP BY job_id HAVING count(*) > 1"
    ).fetchall()
    killed_pid = victim.pid
    for (job_id,) in twice:
        pids = ledger.execute(
            "SELECT pid FROM ledger WHERE job_id = %s AND event = 'start'", (job_id,)
        ).fetchall()
        assert (killed_pid,) in pids
    assert _count(ledger, "SELECT count(*) FROM pgqueue.failed_jobs") == 0


def test_a_job_that_kills_its_process_ends_in_failed_jobs(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(jobs.KillsItsProcess())
    fast = {"PGQUEUE_RESCUE_INTERVAL": "0.3"}
    for _ in range(2):
        worker = start_worker("--lease", "0.5", env=fast)
        worker.communicate(timeout=30)
        assert worker.returncode == -signal.SIGKILL
    finisher = start_worker("--lease", "0.5", env=fast)
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.failed_jobs") == 1)
    finisher.send_signal(signal.SIGTERM)
    finisher.communicate(timeout=30)
    row = ledger.execute("SELECT id, exception_class, attempts FROM pgqueue.failed_jobs").fetchone()
    assert row == (job_id, "pgqueue.errors.LeaseExpiredError", 2)
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 2


def test_an_async_job_past_its_timeout_is_cancelled_and_fails(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(jobs.SlowAsync())
    worker = start_worker("--stop-when-empty")
    worker.communicate(timeout=30)
    row = ledger.execute(
        "SELECT exception_class, exception_message FROM pgqueue.failed_jobs"
    ).fetchone()
    assert row is not None
    assert row[0] == "pgqueue.blocking.JobTimeoutError"
    assert "0.5 s timeout" in row[1]


def test_a_blocking_job_past_its_timeout_is_killed_while_others_run(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(jobs.SlowBlocking())
        queue.bulk([jobs.Record(seconds=0.05) for _ in range(50)])
    started = time.monotonic()
    worker = start_worker("--concurrency", "4", "--stop-when-empty")
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert time.monotonic() - started < 20
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 50
    row = ledger.execute("SELECT exception_message FROM pgqueue.failed_jobs").fetchone()
    assert row is not None
    assert "killed" in row[0]
    pids = {row[0] for row in ledger.execute("SELECT pid FROM ledger WHERE event = 'start'")}
    assert len(pids) == 2  # the blocking job ran in a child process of its own


def test_an_unknown_job_type_ends_visibly_in_failed_jobs(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    ledger.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload) VALUES ('default', 'nobody.Knows', '{}')"
    )
    worker = start_worker("--stop-when-empty")
    worker.communicate(timeout=30)
    row = ledger.execute(
        "SELECT exception_class, exception_message FROM pgqueue.failed_jobs"
    ).fetchone()
    assert row is not None
    assert row[0] == "pgqueue.errors.UnknownJobTypeError"
    assert "nobody.Knows" in row[1]


def test_failed_hook_that_raises_does_not_stop_the_move(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(jobs.FailedRaises())
    worker = start_worker("--stop-when-empty")
    worker.communicate(timeout=30)
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'failed-called'") == 1
    row = ledger.execute("SELECT exception_class, traceback FROM pgqueue.failed_jobs").fetchone()
    assert row is not None
    assert row[0] == "builtins.RuntimeError"
    assert "failed() broke too" in row[1]
    assert _count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0


def test_fixed_retry_after_pushes_run_at_out_in_database_time(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(jobs.FixedRetry())
    worker = start_worker("--stop-when-empty")
    worker.communicate(timeout=30)
    row = ledger.execute(
        "SELECT attempts, extract(epoch FROM run_at - claimed_at), last_error "
        "FROM pgqueue.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    assert row[0] == 1
    assert float(row[1]) == pytest.approx(30, abs=1)
    assert "ValueError: always" in row[2]


def test_list_retry_after_gives_each_attempt_its_delay_and_repeats_the_last(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(jobs.ListRetry())
    worker = start_worker("--sleep", "0.05")
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.failed_jobs") == 1)
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=30)
    gaps = [
        float(row[0])
        for row in ledger.execute(
            "SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at)) FROM ledger "
            "WHERE event = 'start' ORDER BY at OFFSET 1"
        )
    ]
    assert len(gaps) == 3
    assert gaps[0] == pytest.approx(0.3, abs=0.2)
    assert gaps[1] == pytest.approx(0.6, abs=0.2)
    assert gaps[2] == pytest.approx(0.6, abs=0.2)
    assert _count(ledger, "SELECT count(*) FROM pgqueue.failed_jobs") == 1


def test_max_tries_flag_overrides_the_job_class(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(jobs.FixedRetry())
    worker = start_worker("--stop-when-empty", "--max-tries", "1")
    worker.communicate(timeout=30)
    assert ledger.execute("SELECT attempts FROM pgqueue.failed_jobs").fetchone() == (1,)
