"""What the dashboard's pages read, beyond what the library already reads for them.

The counts come from `pgqueue.stats.read_stats_async` (queue_stats, as `pgqueue stats` reads them),
failed jobs' details from `AsyncFailedJobs.show`, schedules from `list_schedules` and health from
`diagnose_async`. This module adds the page-sized reads those do not cover, each one statement of
queries.sql (`dashboard_*`) that stops at a LIMIT an index serves, so no page reads a table of a
million jobs through:

- a queue's waiting jobs in claim order (`MAX_SCAN` entries at most, so a type filter searches that
  many and no more), and its running jobs;
- one job wherever it is (jobs, job_results or failed_jobs);
- failed jobs a page at a time, keyset on (failed_at, id), and the queues that have any;
- the workers;
- completions and failures per queue and minute, for the throughput chart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgqueue.errors import JobCancelledError
from pgqueue.outcome import class_name
from pgqueue.sql import Plan, Statement, queries_for, run_plan_async

# Rows per page of a list.
PAGE_SIZE = 50
# The most waiting jobs a queue's page looks at: its last page, and how far a type filter searches.
MAX_SCAN = 10_000
# Running jobs shown on a queue's page (about as many as its workers' slots).
MAX_RUNNING = 200
# Workers listed.
MAX_WORKERS = 500
# Queues offered by the failed page's filter.
MAX_FAILED_QUEUES = 1000
# Minutes of throughput the chart shows.
CHART_MINUTES = 60
# What failed_jobs.exception_class says of a cancelled job.
CANCELLED_CLASS = class_name(JobCancelledError())


@dataclass(frozen=True)
class WaitingJob:
    """A job waiting in a queue: ready (due now) or scheduled (delayed, or backing off)."""

    id: int
    job_type: str
    ready: bool
    priority: int
    run_at: datetime
    attempts: int
    max_tries: int
    enqueued_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class RunningJob:
    """A job a worker holds: running, or claimed ahead of a free slot."""

    id: int
    job_type: str
    worker_id: str | None
    claimed_at: datetime | None
    lease_expires_at: datetime | None
    attempts: int
    max_tries: int
    progress: float | None
    progress_message: str | None
    cancel_requested: bool


@dataclass(frozen=True)
class JobDetail:
    """One job as its page shows it, from whichever table holds it now.

    `state` is one of SPEC 11's: queued, scheduled, running, completed, failed, cancelled.
    `payload` and `result` are JSON text as stored (None where the table keeps none: a completed
    job's payload is not kept).
    """

    state: str
    id: int
    queue: str
    job_type: str
    payload: str | None
    priority: int | None
    attempts: int
    max_tries: int | None
    run_at: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    lease_expires_at: datetime | None
    progress: float | None
    progress_message: str | None
    cancel_requested_at: datetime | None
    last_error: str | None
    exception_class: str | None
    exception_message: str | None
    traceback: str | None
    result: str | None

    @property
    def cancellable(self) -> bool:
        """Still in `jobs`, so `Queue.cancel` can end it."""
        return self.state in ("queued", "scheduled", "running")

    @property
    def retryable(self) -> bool:
        """In `failed_jobs`, so it can be retried or forgotten."""
        return self.state in ("failed", "cancelled")


@dataclass(frozen=True)
class FailedRow:
    """A failed job as the failed jobs page lists it (message and traceback cut short)."""

    id: int
    queue: str
    job_type: str
    attempts: int
    max_tries: int
    exception_class: str
    exception_message: str
    traceback: str
    failed_at: datetime


@dataclass(frozen=True)
class WorkerRow:
    """A registered worker process."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime
    heartbeat_age_seconds: float
    jobs_completed: int
    jobs_failed: int
    holding: int


@dataclass(frozen=True)
class Throughput:
    """Completed and failed jobs per minute: `minutes` ends with the database's current minute
    (oldest first, zero where nothing was recorded); `by_queue` totals the whole span per queue."""

    minutes: tuple[tuple[datetime, int, int], ...]
    by_queue: dict[str, tuple[int, int]]


async def waiting_jobs(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    queue: str,
    *,
    job_type: str | None,
    offset: int,
    limit: int = PAGE_SIZE,
) -> list[WaitingJob]:
    """A page of `queue`'s waiting jobs in claim order, within its first `MAX_SCAN`."""
    params = {
        "queue": queue,
        "job_type": job_type,
        "offset": offset,
        "limit": limit,
        "scan": MAX_SCAN,
    }
    rows = await _rows(conn, schema, "dashboard_waiting_jobs", params)
    return [WaitingJob(*row) for row in rows]


async def running_jobs(
    conn: psycopg.AsyncConnection[Any], schema: str, queue: str
) -> list[RunningJob]:
    """`queue`'s leased jobs, oldest claim first (at most `MAX_RUNNING`)."""
    params = {"queue": queue, "limit": MAX_RUNNING}
    rows = await _rows(conn, schema, "dashboard_running_jobs", params)
    return [RunningJob(*row) for row in rows]


async def job_detail(
    conn: psycopg.AsyncConnection[Any], schema: str, job_id: int
) -> JobDetail | None:
    """Job `job_id` wherever it is, or None when no table holds it (never dispatched, completed
    without `keep_result`, its record pruned, or forgotten)."""
    rows = await _rows(conn, schema, "dashboard_job", {"id": job_id})
    if not rows:
        return None
    place, *columns, now = rows[0]
    (
        id_,
        queue,
        job_type,
        payload,
        priority,
        attempts,
        max_tries,
        run_at,
        enqueued_at,
        started_at,
        finished_at,
        leased,
        worker_id,
        lease_expires_at,
        progress,
        progress_message,
        cancel_requested_at,
        last_error,
        exception_class,
        exception_message,
        traceback,
        result,
    ) = columns
    if place == "jobs":
        state = "running" if leased else ("scheduled" if run_at > now else "queued")
    elif place == "job_results":
        state = "completed"
    else:
        state = "cancelled" if exception_class == CANCELLED_CLASS else "failed"
    return JobDetail(
        state=state,
        id=id_,
        queue=queue,
        job_type=job_type,
        payload=payload,
        priority=priority,
        attempts=attempts,
        max_tries=max_tries,
        run_at=run_at,
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        worker_id=worker_id,
        lease_expires_at=lease_expires_at,
        progress=progress,
        progress_message=progress_message,
        cancel_requested_at=cancel_requested_at,
        last_error=last_error,
        exception_class=exception_class,
        exception_message=exception_message,
        traceback=traceback,
        result=result,
    )


async def failed_rows(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    *,
    queue: str | None,
    job_type: str | None,
    since_seconds: float | None,
    before: tuple[datetime, int] | None,
    limit: int = PAGE_SIZE,
) -> list[FailedRow]:
    """A page of failed jobs, newest first, older than `before` (failed_at, id) when given."""
    params = {
        "queue": queue,
        "job_type": job_type,
        "since_seconds": since_seconds,
        "before_at": before[0] if before else None,
        "before_id": before[1] if before else None,
        "limit": limit,
    }
    rows = await _rows(conn, schema, "dashboard_failed_jobs", params)
    return [FailedRow(*row) for row in rows]


async def failed_queues(conn: psycopg.AsyncConnection[Any], schema: str) -> list[str]:
    """The queues with failed jobs, by name (at most `MAX_FAILED_QUEUES`)."""
    rows = await _rows(conn, schema, "dashboard_failed_queues", {"limit": MAX_FAILED_QUEUES})
    return [str(row[0]) for row in rows]


async def workers(conn: psycopg.AsyncConnection[Any], schema: str) -> list[WorkerRow]:
    """The registered workers, freshest heartbeat first (at most `MAX_WORKERS`)."""
    rows = await _rows(conn, schema, "dashboard_workers", {"limit": MAX_WORKERS})
    return [
        WorkerRow(
            id=row[0],
            host=row[1],
            pid=row[2],
            queues=tuple(row[3]),
            concurrency=row[4],
            started_at=row[5],
            heartbeat_age_seconds=max(float(row[6]), 0.0),
            jobs_completed=int(row[7]),
            jobs_failed=int(row[8]),
            holding=int(row[9]),
        )
        for row in rows
    ]


async def throughput(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    queue: str | None = None,
    minutes: int = CHART_MINUTES,
) -> Throughput:
    """Per minute over the last `minutes` (all queues, or `queue`'s), oldest first."""
    rows = await _rows(conn, schema, "dashboard_throughput", {"queue": queue, "minutes": minutes})
    current: datetime = rows[0][0]
    buckets = {current - timedelta(minutes=back): (0, 0) for back in range(minutes)}
    by_queue: dict[str, tuple[int, int]] = {}
    for _, name, minute, completed, failed in rows:
        if name is None:
            continue
        if minute in buckets:
            done_then, failed_then = buckets[minute]
            buckets[minute] = (done_then + int(completed), failed_then + int(failed))
        done, lost = by_queue.get(name, (0, 0))
        by_queue[name] = (done + int(completed), lost + int(failed))
    ordered = tuple((minute, *counts) for minute, counts in sorted(buckets.items()))
    return Throughput(minutes=ordered, by_queue=by_queue)


def pretty_json(text: str | None) -> str | None:
    """Stored JSON text indented for reading; as it is when Python's json cannot read it."""
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
    except (ValueError, RecursionError):
        return text


async def _rows(
    conn: psycopg.AsyncConnection[Any], schema: str, name: str, params: dict[str, Any]
) -> Sequence[tuple[Any, ...]]:
    return await run_plan_async(_one(queries_for(schema)[name], params), conn)


def _one(query: bytes, params: dict[str, Any]) -> Plan[list[tuple[Any, ...]]]:
    rows = yield Statement(query, params)
    return rows
