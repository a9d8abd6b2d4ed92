"""Cancelling jobs (SPEC 10) through `Queue.cancel`, `AsyncQueue.cancel` and `pgqueue cancel`,
against real PostgreSQL: queued jobs move to failed_jobs at once, leased ones get a request and a
NOTIFY, and a cancel racing a claim never lets both win. Running jobs stopped by real workers are
tests/acceptance/test_cancel_running.py."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, ClassVar

import psycopg
import pytest

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.sql import queries_for
from pgqueue.worker import Worker, WorkerOptions
from tests.cli_runner import one_error, run_pgqueue

QUERIES = queries_for("pgqueue")
CANCELLED = "pgqueue.errors.JobCancelledError"


class Cancellable(Job):
    queue = "cancel"
    job_name = "tests.integration.cancel.Cancellable"

    n: int = 0

    async def handle(self) -> None:
        pass


def _claim(conn: psycopg.Connection[Any], limit: int = 10) -> list[int]:
    """Claim ready jobs of the `cancel` queue with the worker's own statement; their ids."""
    rows = conn.execute(
        QUERIES["claim_jobs"],
        {
            "done_tokens": [],
            "done_ids": [],
            "synchronous_commit": "off",
            "queue": "cancel",
            "limit": limit,
            "token": uuid.uuid4(),
            "lease_seconds": 30,
            "worker_id": "test-worker",
        },
    ).fetchall()
    return [row[0] for row in rows if row[1] is not None]


def _failed(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT exception_class, exception_message, attempts, worker_id FROM pgqueue.failed_jobs"
        " WHERE id = %s",
        (job_id,),
    ).fetchone()


def _in_jobs(conn: psycopg.Connection[Any], job_id: int) -> bool:
    return conn.execute("SELECT FROM pgqueue.jobs WHERE id = %s", (job_id,)).fetchone() is not None


def test_a_queued_job_moves_to_failed_jobs_at_once_and_is_never_claimed(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable(n=1))
        kept = queue.dispatch(Cancellable(n=2))
        assert queue.cancel(job_id) is True
    assert not _in_jobs(conn, job_id)
    assert _failed(conn, job_id) == (CANCELLED, "cancelled before it ran", 0, None)
    assert _claim(conn) == [kept]


def test_a_scheduled_job_is_cancelled_before_its_time(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable(), delay=3600)
        assert queue.cancel(job_id) is True
    assert not _in_jobs(conn, job_id)
    row = _failed(conn, job_id)
    assert row is not None and row[0] == CANCELLED


def test_a_job_waiting_for_its_retry_is_cancelled_with_its_tries_counted(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable())
        conn.execute(
            "UPDATE pgqueue.jobs SET attempts = 2, run_at = now() + interval '1 hour'"
            " WHERE id = %s",
            (job_id,),
        )
        assert queue.cancel(job_id) is True
    assert _failed(conn, job_id) == (CANCELLED, "cancelled while queued for try 3", 2, None)


def test_unknown_and_ended_ids_return_false_and_change_nothing(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable())
        assert queue.cancel(job_id) is True
        assert queue.cancel(job_id) is False  # already ended (cancelled)
        assert queue.cancel(987_654_321) is False
        assert queue.cancel(2**70) is False  # beyond bigint: no such job, no overflow error
        assert queue.cancel(0) is False
    assert conn.execute("SELECT count(*) FROM pgqueue.failed_jobs").fetchone() == (1,)


def test_cancel_takes_only_an_int(settings: Settings) -> None:
    with Queue(settings) as queue, pytest.raises(TypeError, match="job id"):
        queue.cancel("42")  # type: ignore[arg-type]


def test_a_leased_job_gets_a_cancel_request_and_its_workers_a_notification(
    settings: Settings, conn: psycopg.Connection[Any], database_url: str
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable())
        assert _claim(conn) == [job_id]
        with psycopg.connect(database_url, autocommit=True) as listener:
            listener.execute("LISTEN pgqueue")
            assert queue.cancel(job_id) is True
            payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == [f"cancel:{job_id}"]
    row = conn.execute(
        "SELECT cancel_requested_at IS NOT NULL, lease_token IS NOT NULL FROM pgqueue.jobs"
        " WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (True, True)  # still the worker's to stop and move
    assert _failed(conn, job_id) is None


def test_the_lease_renewal_reports_which_held_jobs_were_cancelled(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        ids = [queue.dispatch(Cancellable(n=n)) for n in range(2)]
        token = uuid.uuid4()
        conn.execute(
            "UPDATE pgqueue.jobs SET lease_token = %s, lease_expires_at = now() + interval '30s'",
            (token,),
        )
        assert queue.cancel(ids[1]) is True
    rows = conn.execute(
        QUERIES["renew_leases"],
        {
            "tokens": [str(token)],
            "ids": ["{" + ",".join(map(str, ids)) + "}"],
            "lease_seconds": 30,
            "progress_ids": [],
            "progress": [],
            "progress_messages": [],
        },
    ).fetchall()
    assert sorted(rows) == [(ids[0], False), (ids[1], True)]


def test_a_cancel_waiting_on_a_claim_in_flight_sees_the_job_running(
    settings: Settings, conn: psycopg.Connection[Any], database_url: str
) -> None:
    """The claim locked the row first: the cancel waits for it, then finds it leased, so the job
    is not also moved to failed_jobs under the worker that just claimed it."""
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable())
        result: list[bool] = []
        with psycopg.connect(database_url) as claimer:
            assert _claim(claimer) == [job_id]  # in an open transaction: the row stays locked
            canceller = threading.Thread(target=lambda: result.append(queue.cancel(job_id)))
            canceller.start()
            canceller.join(0.5)
            assert canceller.is_alive(), "the cancel should wait for the claim's lock"
            claimer.commit()
        canceller.join(10)
    assert result == [True]
    row = conn.execute(
        "SELECT cancel_requested_at IS NOT NULL, lease_token IS NOT NULL FROM pgqueue.jobs"
        " WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (True, True)
    assert _failed(conn, job_id) is None


def test_a_claim_skips_a_job_being_cancelled_and_never_runs_it(
    settings: Settings, conn: psycopg.Connection[Any], database_url: str
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable())
        with psycopg.connect(database_url) as caller:
            assert queue.cancel(job_id, conn=caller) is True  # not committed yet
            assert _claim(conn) == []  # skipped at once, not waited for
            caller.commit()
    assert _claim(conn) == []
    row = _failed(conn, job_id)
    assert row is not None and row[0] == CANCELLED


def test_a_cancel_in_a_rolled_back_transaction_leaves_the_job_queued(
    settings: Settings, conn: psycopg.Connection[Any], database_url: str
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable())
        with psycopg.connect(database_url) as caller:
            assert queue.cancel(job_id, conn=caller) is True
            caller.rollback()
    assert _claim(conn) == [job_id]


def test_async_queue_cancels_too(settings: Settings, conn: psycopg.Connection[Any]) -> None:
    async def scenario() -> tuple[int, bool, bool]:
        async with AsyncQueue(settings) as queue:
            job_id = await queue.dispatch(Cancellable())
            return job_id, await queue.cancel(job_id), await queue.cancel(job_id)

    job_id, first, second = asyncio.run(scenario())
    assert (first, second) == (True, False)
    row = _failed(conn, job_id)
    assert row is not None and row[0] == CANCELLED


def test_pgqueue_cancel_cancels_the_known_ids_and_names_the_others(
    settings: Settings, conn: psycopg.Connection[Any], database_url: str
) -> None:
    with Queue(settings) as queue:
        first = queue.dispatch(Cancellable(n=1))
        second = queue.dispatch(Cancellable(n=2))
        ended = queue.dispatch(Cancellable(n=3))
        assert queue.cancel(ended)
    run = run_pgqueue(
        "cancel", str(first), "99999", str(second), str(ended),
        env={"PGQUEUE_DATABASE_URL": database_url},
    )  # fmt: skip
    line = one_error(run, 1)
    assert line.startswith("error: cancelled 2 jobs; no queued or running job with id ")
    assert f"id 99999, {ended} (" in line
    for job_id in (first, second):
        row = _failed(conn, job_id)
        assert row is not None and row[0] == CANCELLED


def test_pgqueue_cancel_says_what_it_cancelled(settings: Settings, database_url: str) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Cancellable())
    run = run_pgqueue("cancel", str(job_id), env={"PGQUEUE_DATABASE_URL": database_url})
    assert (run.exit_code, run.stdout, run.stderr) == (0, "cancelled 1 job\n", "")


class RecordsRuns(Job):
    queue = "cancel"
    job_name = "tests.integration.cancel.RecordsRuns"
    runs: ClassVar[int] = 0

    async def handle(self) -> None:
        RecordsRuns.runs += 1


async def test_a_job_cancelled_then_released_by_its_worker_ends_at_its_next_claim_unrun(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    # Its worker was asked to cancel it but released it first (a shutdown, or a crash and a
    # rescue): the job is back in the queue with the request still on it.
    with Queue(settings) as queue:
        job_id = queue.dispatch(RecordsRuns())
    conn.execute(
        "UPDATE pgqueue.jobs SET cancel_requested_at = now(), attempts = 1 WHERE id = %s", (job_id,)
    )
    summary = await Worker(
        settings,
        WorkerOptions(queues=("cancel",), sleep=0.05, stop_when_empty=True, grace=0),
    ).run()
    assert RecordsRuns.runs == 0
    assert summary.cancelled == 1
    failed = _failed(conn, job_id)
    assert failed is not None and failed[0] == CANCELLED
    assert not _in_jobs(conn, job_id)
