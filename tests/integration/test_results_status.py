"""`queue.status(id)` and `await aqueue.status(id)` (SPEC 11) against real PostgreSQL: one
`JobStatus` for a job wherever it is (jobs, job_results, failed_jobs), None when nothing is kept.
Rows are arranged with the worker's own statements where a state needs a worker; the worker
itself writing them is tests/integration/test_results_worker.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import AsyncQueue, Job, JobStatus, Queue, Settings
from pgqueue.maintenance import prune_job_results
from pgqueue.results import results_channel
from pgqueue.sql import queries_for

QUERIES = queries_for("pgqueue")


class Reports(Job):
    queue = "status"
    job_name = "tests.results.Reports"
    keep_result = "1h"

    n: int = 0

    async def handle(self) -> dict[str, int]:
        return {"n": self.n}


def _claim(conn: psycopg.Connection[Any]) -> uuid.UUID:
    """Claim every ready job of the `status` queue as a worker would; the lease token."""
    token = uuid.uuid4()
    conn.execute(
        QUERIES["claim_jobs"],
        {
            "done_tokens": [],
            "done_ids": [],
            "synchronous_commit": "off",
            "queue": "status",
            "limit": 100,
            "token": token,
            "lease_seconds": 30,
            "worker_id": "test-worker",
        },
    ).fetchall()
    return token


def _renew(
    conn: psycopg.Connection[Any], token: uuid.UUID, ids: list[int], progress: dict[int, Any]
) -> list[Any]:
    return conn.execute(
        QUERIES["renew_leases"],
        {
            "tokens": [str(token)],
            "ids": ["{" + ",".join(map(str, ids)) + "}"],
            "lease_seconds": 30,
            "progress_ids": list(progress),
            "progress": [value[0] for value in progress.values()],
            "progress_messages": [value[1] for value in progress.values()],
        },
    ).fetchall()


def _complete_kept(
    conn: psycopg.Connection[Any], token: uuid.UUID, job_id: int, result: str, keep: float
) -> list[Any]:
    return conn.execute(
        QUERIES["complete_kept_jobs"],
        {
            "ids": f"{{{job_id}}}",
            "tokens": f"{{{token}}}",
            "results": f"[{result}]",
            "keep_seconds": f"{{{keep}}}",
            "results_channel": results_channel("pgqueue"),
        },
    ).fetchall()


def _fail(conn: psycopg.Connection[Any], token: uuid.UUID, job_id: int) -> None:
    conn.execute(
        QUERIES["fail_job"],
        {
            "id": job_id,
            "token": token,
            "attempts": 1,
            "exception_class": "builtins.ValueError",
            "exception_message": "no such image",
            "traceback": "",
            "worker_id": "test-worker",
            "results_channel": results_channel("pgqueue"),
        },
    )


def test_a_ready_job_is_queued(settings: Settings) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports(n=1))
        status = queue.status(job_id)
    assert isinstance(status, JobStatus)
    assert (status.id, status.state, status.attempts) == (job_id, "queued", 0)
    assert (status.progress, status.progress_message, status.result, status.error) == (
        None,
        None,
        None,
        None,
    )
    assert status.enqueued_at.tzinfo is not None
    assert (status.started_at, status.finished_at) == (None, None)
    assert (status.queue, status.job_type) == ("status", "tests.results.Reports")
    assert not status.ended


def test_a_delayed_job_is_scheduled(settings: Settings) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports(), delay=600)
        status = queue.status(job_id)
    assert status is not None and status.state == "scheduled"


def test_a_job_waiting_for_its_retry_is_scheduled_with_the_last_error(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        token = _claim(conn)
        conn.execute(
            QUERIES["retry_job"],
            {"id": job_id, "token": token, "delay": 600, "error": "builtins.OSError: flaky"},
        )
        status = queue.status(job_id)
    assert status is not None
    assert (status.state, status.attempts, status.error) == (
        "scheduled",
        1,
        "builtins.OSError: flaky",
    )
    assert status.started_at is not None  # the failed attempt's claim


def test_a_claimed_job_is_running_with_the_progress_its_heartbeat_wrote(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id, other = queue.dispatch(Reports(n=1)), queue.dispatch(Reports(n=2))
        token = _claim(conn)
        running = queue.status(job_id)
        assert running is not None
        assert (running.state, running.attempts, running.progress) == ("running", 1, None)
        assert running.started_at is not None and running.finished_at is None
        renewed = _renew(conn, token, [job_id, other], {job_id: (0.4, "40 of 100 done")})
        assert sorted(renewed) == [(job_id, False), (other, False)]
        status, untouched = queue.status(job_id), queue.status(other)
    assert status is not None and untouched is not None
    assert status.progress == 0.4  # exactly what was reported: the column is float8
    assert status.progress_message == "40 of 100 done"
    assert (untouched.progress, untouched.progress_message) == (None, None)


def test_a_heartbeat_without_a_report_keeps_the_last_progress(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        token = _claim(conn)
        _renew(conn, token, [job_id], {job_id: (0.5, None)})
        _renew(conn, token, [job_id], {})
        status = queue.status(job_id)
    assert status is not None and (status.progress, status.progress_message) == (0.5, None)


def test_progress_from_a_lost_lease_is_not_written(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        _claim(conn)
        assert _renew(conn, uuid.uuid4(), [job_id], {job_id: (0.9, "stale")}) == []
        status = queue.status(job_id)
    assert status is not None and status.progress is None


def test_a_completed_job_with_keep_result_has_its_result_and_times(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports(n=3))
        token = _claim(conn)
        assert [row[0] for row in _complete_kept(conn, token, job_id, '{"width": 100}', 3600)] == [
            job_id
        ]
        status = queue.status(job_id)
    assert status is not None
    assert (status.state, status.attempts, status.result, status.error) == (
        "completed",
        1,
        {"width": 100},
        None,
    )
    assert status.started_at is not None and status.finished_at is not None
    assert status.enqueued_at <= status.started_at <= status.finished_at
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (0,)
    keep = conn.execute(
        "SELECT keep_until - finished_at FROM pgqueue.job_results WHERE id = %s", (job_id,)
    ).fetchone()
    assert keep == (timedelta(hours=1),)


def test_a_kept_completion_with_a_lost_lease_changes_nothing(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        _claim(conn)
        assert _complete_kept(conn, uuid.uuid4(), job_id, "null", 60) == []
        status = queue.status(job_id)
    assert status is not None and status.state == "running"
    assert conn.execute("SELECT count(*) FROM pgqueue.job_results").fetchone() == (0,)


def test_a_none_result_is_kept_as_json_null(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        _complete_kept(conn, _claim(conn), job_id, "null", 60)
        status = queue.status(job_id)
    assert status is not None and (status.state, status.result) == ("completed", None)


def test_a_failed_job_has_its_error_and_when_its_last_attempt_started(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        token = _claim(conn)
        claimed_at = conn.execute(
            "SELECT claimed_at FROM pgqueue.jobs WHERE id = %s", (job_id,)
        ).fetchone()
        _fail(conn, token, job_id)
        status = queue.status(job_id)
    assert status is not None
    assert (status.state, status.attempts, status.error, status.result) == (
        "failed",
        1,
        "builtins.ValueError: no such image",
        None,
    )
    assert claimed_at is not None and status.started_at == claimed_at[0]
    assert status.finished_at is not None


def test_a_cancelled_job_is_cancelled(settings: Settings) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        assert queue.cancel(job_id) is True
        status = queue.status(job_id)
    assert status is not None
    assert status.state == "cancelled"
    assert status.error == "pgqueue.errors.JobCancelledError: cancelled before it ran"
    assert status.finished_at is not None and status.started_at is None


def test_an_unknown_id_has_no_status(settings: Settings) -> None:
    with Queue(settings) as queue:
        assert queue.status(123456) is None
        assert queue.status(2**63) is None  # past bigint: no job, no overflow error
        assert queue.status(-1) is None


def test_status_takes_an_int(settings: Settings) -> None:
    with Queue(settings) as queue, pytest.raises(TypeError, match="a job id is an int"):
        queue.status("12")  # type: ignore[arg-type]


def test_a_completed_job_without_keep_result_has_no_status(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        token = _claim(conn)
        conn.execute(
            QUERIES["complete_jobs"],
            {"done_tokens": [str(token)], "done_ids": [f"{{{job_id}}}"]},
        )
        assert queue.status(job_id) is None


def test_a_pruned_result_has_no_status(settings: Settings, conn: psycopg.Connection[Any]) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        _complete_kept(conn, _claim(conn), job_id, "1", 60)
        conn.execute("UPDATE pgqueue.job_results SET keep_until = now() - interval '1 second'")
        assert queue.status(job_id) is not None  # kept until pruned
        assert prune_job_results(conn) == 1
        assert queue.status(job_id) is None


def test_status_reads_in_the_callers_transaction(settings: Settings, database_url: str) -> None:
    with Queue(settings) as queue, psycopg.connect(database_url) as own:
        job_id = queue.dispatch(Reports(), conn=own)
        status = queue.status(job_id, conn=own)
        assert status is not None and status.state == "queued"
        own.rollback()
        assert queue.status(job_id) is None


async def test_async_status_is_the_same(settings: Settings) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Reports(n=5))
        status = await queue.status(job_id)
        assert await queue.status(987654) is None
    assert status is not None and (status.id, status.state) == (job_id, "queued")


def test_status_to_json_is_json_ready(settings: Settings) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Reports())
        status = queue.status(job_id)
    assert status is not None
    document = status.to_json()
    assert document["state"] == "queued" and document["id"] == job_id
    assert datetime.fromisoformat(document["enqueued_at"]) <= datetime.now(UTC)
    assert document["finished_at"] is None
