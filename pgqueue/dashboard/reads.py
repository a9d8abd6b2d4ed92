"""What the dashboard's pages read, beyond what the library already reads for them.

A job's state, result, progress and error come from `AsyncQueue.status` (the one place that
decides a job's state), schedules from `list_schedules` and health from `diagnose_async`. This
module adds the page-sized reads those do not cover, each one statement of queries.sql
(`dashboard_*`) that stops at a LIMIT an index serves, so no page reads a table of a million jobs
through, however often every open browser refreshes it:

- every queue's counts (or one queue's), each exact up to `MAX_COUNT` and shown as "10,000+" past
  it: `pgqueue stats` counts every row (queue_stats), which on a million jobs costs about 130 ms a
  read, where these cost about 10 ms whatever the backlog (docs/dashboard.md has the numbers);
- a queue's waiting jobs in claim order (`MAX_SCAN` entries at most, so a type filter searches that
  many and no more), and its running jobs;
- what a job's page shows beside its status: payload, place in line, lease, traceback;
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

from pgqueue.doctor import HELD_BACK_WARN_SECONDS, XminHolder
from pgqueue.sql import Plan, Statement, queries_for, run_plan_async

# Counts stop one past this: a page shows "10,000+", and a count reads at most that many index
# entries (a queue's ready and scheduled jobs, its failures, the leased jobs).
MAX_COUNT = 10_000
# The (queue, priority) pairs of waiting jobs the counts walk, one index descent each; past them
# the queues page says where the counting stopped.
MAX_LANES = 1000
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


@dataclass(frozen=True)
class QueueCounts:
    """One queue's numbers as the dashboard shows them (`pgqueue stats`' QueueStats, bounded).

    `ready`, `scheduled`, `running`, `failed_last_hour` and `failed_total` are exact up to
    `MAX_COUNT` and `MAX_COUNT + 1` past it ("more than MAX_COUNT"). `waiting_cut` marks the queue
    where the walk of waiting jobs stopped at `MAX_LANES` (its ready and scheduled counts are then
    lower bounds), `running_cut` a walk of the leases that stopped at `MAX_COUNT` (every running
    count is then a lower bound). `oldest_wait_seconds` is exact. `held_by_queue_limit` counts the
    ready jobs the queue's own runtime limit holds back; a job type's limit is not counted here
    (see `Overview.limited_types`).
    """

    queue: str
    ready: int
    scheduled: int
    running: int
    failed_last_hour: int
    failed_total: int
    oldest_wait_seconds: float | None
    paused_at: datetime | None
    paused_reason: str | None
    concurrency: int | None
    rate_limit: int | None
    rate_period_seconds: int | None
    held_by_queue_limit: int
    at_limit: bool
    waiting_cut: bool
    running_cut: bool

    @property
    def paused(self) -> bool:
        """Whether the claim takes none of this queue's jobs (`pgqueue queues pause`)."""
        return self.paused_at is not None

    @property
    def held_is_lower_bound(self) -> bool:
        """The held count is at least what it says: the ready count it comes from was capped."""
        return self.held_by_queue_limit > 0 and (self.ready > MAX_COUNT or self.waiting_cut)


@dataclass(frozen=True)
class Overview:
    """Every queue's counts (or one queue's) at `taken_at` (database time).

    `cut_queue` is the queue in which the walk of waiting jobs stopped at `MAX_LANES` (None when
    it did not: then no queue is missing); queues after it that only have waiting jobs are not
    listed. `limited_types` is how many job types have limits in `job_limits`: the ready jobs
    those hold back are not counted here, since that needs every ready job's payload (`pgqueue
    stats` counts them).
    """

    taken_at: datetime
    queues: tuple[QueueCounts, ...]
    cut_queue: str | None
    limited_types: int


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
class JobDetails:
    """What a job's page shows beside its `JobStatus`, from the table that holds it: `jobs`
    (queued, scheduled, running) or `failed_jobs` (failed, cancelled). A completed job's row in
    `job_results` keeps nothing more than its status, so it has none.

    `payload` is JSON text as stored; `run_at`, `lease_expires_at` and `cancel_requested_at` are
    None once the job is in failed_jobs, `traceback` while it is in jobs.
    """

    payload: str
    priority: int
    max_tries: int
    run_at: datetime | None
    worker_id: str | None
    lease_expires_at: datetime | None
    cancel_requested_at: datetime | None
    traceback: str | None


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


async def overview(
    conn: psycopg.AsyncConnection[Any], schema: str, queue: str | None = None
) -> Overview:
    """Every queue's counts, or only `queue`'s (no queue in it when it has no jobs, failures,
    workers or controls)."""
    params = {"queue": queue, "cap": MAX_COUNT, "max_lanes": MAX_LANES}
    rows = await _rows(conn, schema, "dashboard_queues", params)
    taken_at, cut_queue, leases_cut, limited_types = rows[0][:4]
    queues = tuple(
        QueueCounts(
            queue=str(name),
            ready=int(ready),
            scheduled=int(scheduled),
            running=int(running),
            failed_last_hour=int(failed_last_hour),
            failed_total=int(failed_total),
            oldest_wait_seconds=None if oldest is None else max(float(oldest), 0.0),
            paused_at=paused_at,
            paused_reason=paused_reason,
            concurrency=concurrency,
            rate_limit=rate_limit,
            rate_period_seconds=rate_period,
            held_by_queue_limit=int(held),
            at_limit=bool(at_limit),
            waiting_cut=name == cut_queue,
            running_cut=bool(leases_cut),
        )
        for (
            *_,
            name,
            ready,
            scheduled,
            running,
            failed_last_hour,
            failed_total,
            oldest,
            paused_at,
            paused_reason,
            concurrency,
            rate_limit,
            rate_period,
            held,
            at_limit,
        ) in rows
        if name is not None
    )
    return Overview(
        taken_at=taken_at, queues=queues, cut_queue=cut_queue, limited_types=int(limited_types)
    )


async def vacuum_warning(conn: psycopg.AsyncConnection[Any], schema: str) -> str | None:
    """One line when what holds back vacuum the most is `HELD_BACK_WARN_SECONDS` old or more, as
    `pgqueue stats` warns (a slot's or a standby's age is unknown: the health page rates those)."""
    rows = await _rows(conn, schema, "oldest_xmin_holder", {})
    holder = XminHolder.from_row(rows[0]) if rows else None
    if holder is None or holder.seconds is None or holder.seconds < HELD_BACK_WARN_SECONDS:
        return None
    return (
        f"vacuum held back by {holder.describe()}: dead jobs rows pile up until it ends; "
        f"{holder.fix()}"
    )


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


async def job_details(
    conn: psycopg.AsyncConnection[Any], schema: str, job_id: int
) -> JobDetails | None:
    """What job `job_id`'s page shows beside its status, or None when neither jobs nor
    failed_jobs holds it (completed, or gone)."""
    rows = await _rows(conn, schema, "dashboard_job_details", {"id": job_id})
    return JobDetails(*rows[0]) if rows else None


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


def pretty_value(value: Any) -> str:
    """A value loaded from JSON (a job's result) indented for reading."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


async def _rows(
    conn: psycopg.AsyncConnection[Any], schema: str, name: str, params: dict[str, Any]
) -> Sequence[tuple[Any, ...]]:
    return await run_plan_async(_one(queries_for(schema)[name], params), conn)


def _one(query: bytes, params: dict[str, Any]) -> Plan[list[tuple[Any, ...]]]:
    rows = yield Statement(query, params)
    return rows
