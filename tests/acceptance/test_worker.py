"""Real `pgqueue work` processes against real PostgreSQL: outcomes, signals, crashes, timeouts."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from typing import Any

import psycopg
import pytest

from pgqueue import Queue, Settings
from tests.acceptance import jobs
from tests.acceptance.helpers import count as _count
from tests.acceptance.helpers import wait_for as _wait_for


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
    assert row[0] == "pgqueue.errors.JobTimeoutError"
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


def test_a_new_job_wakes_an_idle_worker_without_waiting_for_the_poll(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    worker = start_worker("--sleep", "60")
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.workers") == 1)
    time.sleep(0.5)  # let the listener settle
    with Queue(settings) as queue:
        dispatched = time.monotonic()
        queue.dispatch(jobs.Record())
        _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger") == 2, timeout=10)
    assert time.monotonic() - dispatched < 2
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=30)


def test_json_logs_name_each_outcome_and_never_the_password(
    settings: Settings, database_url: str, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        ok = queue.dispatch(jobs.Record())
        bad = queue.dispatch(jobs.FailedRaises())
    # Trust authentication ignores the password, so it can be set here and looked for in the logs.
    worker = start_worker(
        "--stop-when-empty",
        "--log-format",
        "json",
        "--log-level",
        "debug",  # a line per completed job is DEBUG
        env={"PGQUEUE_DATABASE_URL": f"{database_url} password=sekrit-pw-123"},
    )
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "sekrit-pw-123" not in stderr
    records = [json.loads(line) for line in stderr.splitlines()]
    by_message = {record["message"]: record for record in records}
    completed = by_message["completed"]
    assert completed["job_id"] == ok
    assert completed["job_type"] == "acceptance.Record"
    assert completed["queue"] == "default"
    assert completed["attempt"] == 1
    assert completed["duration_ms"] >= 0
    assert completed["worker"] == by_message["worker started"]["worker"]
    assert by_message["failed"]["job_id"] == bad
    assert "RuntimeError" in by_message["failed"]["error"]
    assert by_message["worker stopped"]["completed"] == 1


def test_default_backoff_is_exponential_with_jitter_in_database_time(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(jobs.DefaultBackoff())
    worker = start_worker("--sleep", "0.05")
    delays: list[float] = []
    for attempt in (1, 2, 3):
        _wait_for(
            lambda attempt=attempt: (
                _count(
                    ledger,
                    f"SELECT count(*) FROM pgqueue.jobs WHERE attempts = {attempt} "
                    "AND lease_token IS NULL",
                )
                == 1
            )
        )
        row = ledger.execute(
            "SELECT extract(epoch FROM run_at - claimed_at) FROM pgqueue.jobs WHERE id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None
        delays.append(float(row[0]))
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=30)
    # Attempt n waits between 2**(n-1)/2 and 2**(n-1) seconds (plus the attempt's own run time).
    for attempt, delay in zip((1, 2, 3), delays, strict=True):
        ceiling = 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling + 0.2, (attempt, delays)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_to_the_whole_process_group_drains_blocking_jobs(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any, processes: str
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.BlockingRecord(seconds=1.5) for _ in range(4)])
    # A session of its own, like a terminal's foreground job: the signal goes to every process.
    worker = start_worker(
        "--processes", processes, "--concurrency", "2", "--grace", "20", start_new_session=True
    )
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 4)
    os.killpg(worker.pid, signal.SIGINT)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert "stopping hard" not in stderr
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 4
    assert _count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0


def test_workers_prune_failed_jobs_on_an_interval_when_asked(
    ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    from tests.integration.failed_rows import insert_failed

    day = 86400
    (old,) = insert_failed(ledger, failed_ago=31 * day)
    (recent,) = insert_failed(ledger, failed_ago=29 * day)
    worker = start_worker("--cleanup-interval", "1", env={"PGQUEUE_RETENTION": "30d"})
    _wait_for(
        lambda: _count(ledger, f"SELECT count(*) FROM pgqueue.failed_jobs WHERE id = {old}") == 0
    )
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert "pruned failed jobs" in stderr
    assert [row[0] for row in ledger.execute("SELECT id FROM pgqueue.failed_jobs")] == [recent]


def test_no_wake_up_is_lost_while_a_claim_is_in_flight(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    # With a 30 s poll, any NOTIFY the worker misses shows up as a wait of seconds.
    worker = start_worker("--sleep", "30", "--log-level", "warning")
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.workers") == 1)
    time.sleep(0.5)
    rng = random.Random(3)
    with Queue(settings) as queue:
        for _ in range(150):
            queue.dispatch(jobs.Record())
            time.sleep(rng.uniform(0, 0.004))
    _wait_for(
        lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 150,
        timeout=10,
    )
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=30)
