"""Upkeep that keeps the database healthy: rescue expired leases, prune `failed_jobs` past
retention and `job_results` past their `keep_until`. Each is safe to run from any number of
workers at once, with no leader.

Rescue (`rescue_expired_leases_async`, run by every worker on its rescue interval) returns to
their queue the jobs whose worker stopped renewing their lease (killed, lost machine), counting
the lost attempt as a try, wakes the workers of those queues, and forgets `workers` rows silent for
long. `SKIP LOCKED` and the expiry test make concurrent rescues harmless.

Prune:

Batched and idempotent. Each batch is one short statement (`prune_failed_jobs` in
`pgqueue/sql/queries.sql`) that locks at most `batch_size` rows along the `failed_at` index with
`FOR UPDATE SKIP LOCKED` and deletes them, so:

- no statement runs long or holds many locks, and a cleanup never waits on a lock, so it never
  blocks workers (they never touch old `failed_jobs` rows anyway);
- after each batch it rests `rest` times as long as the batch took (default 1.0), so it is busy at
  most half the time and backs off further when the database is slow: deleting rows costs CPU and
  WAL (a full page image per page after each checkpoint), which workers' commits share. Measured
  by benchmarks/cleanup_latency.py, see docs/operations.md;
- any number of cleanups may run at once (cron on two hosts, every worker on an interval): each row
  is deleted by exactly one of them, and there is no leader to elect.

Kept results (`keep_result`, docs/results.md) are pruned the same way (`prune_job_results`): each
row says how long it is kept (`keep_until`, set when its job completed), so there is no cutoff to
pass, and the batches walk the `keep_until` index. The dashboard's per-minute counts
(`queue_throughput`) older than a day go in one statement: a day is 1,440 rows per queue.

`prune_failed_jobs`, `prune_job_results` and their `_async` forms take a connection you own and
leave psycopg's errors as they are (so a worker can tell a lost connection from a bug); `cleanup`
takes `Settings`, connects on its own, prunes both and raises `DatabaseError`, for the CLI and cron.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import psycopg

from pgqueue.connection import connect, translate
from pgqueue.errors import ConfigurationError
from pgqueue.settings import DEFAULT_SCHEMA, Settings
from pgqueue.sql import Pause, Plan, Statement, queries_for, run_plan, run_plan_async

DEFAULT_BATCH_SIZE = 1000
DEFAULT_REST = 1.0
# Expired leases returned per rescue statement; the next rescue takes the rest.
RESCUE_BATCH_SIZE = 1000
# How long the per-minute counts behind the dashboard's throughput chart are kept.
THROUGHPUT_KEEP_SECONDS = 86400.0


async def rescue_expired_leases_async(
    conn: psycopg.AsyncConnection[Any],
    *,
    forget_workers_after: float,
    schema: str = DEFAULT_SCHEMA,
) -> dict[str, int]:
    """Rescue expired leases and forget long-silent workers; return the jobs rescued per queue.

    Parameters:
        conn: an autocommit asyncio connection; psycopg's errors are left as they are.
        forget_workers_after: seconds without a heartbeat after which a `workers` row goes.
        schema: the schema holding pgqueue's tables (default `pgqueue`); also the channel that
            wakes the workers of the rescued jobs' queues.
    """
    return await run_plan_async(_rescue(schema, forget_workers_after), conn)


def _rescue(schema: str, forget_workers_after: float) -> Plan[dict[str, int]]:
    queries = queries_for(schema)
    rows = yield Statement(
        queries["rescue_expired_leases"], {"limit": RESCUE_BATCH_SIZE, "channel": schema}
    )
    yield Statement(queries["prune_workers"], {"older_than_seconds": forget_workers_after})
    return {str(queue): int(count) for queue, count, _ in rows}


def prune_failed_jobs(
    conn: psycopg.Connection[Any],
    older_than_seconds: float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    rest: float = DEFAULT_REST,
    schema: str = DEFAULT_SCHEMA,
) -> int:
    """Delete `failed_jobs` rows that failed more than `older_than_seconds` ago; return how many.

    Deletes oldest first in batches of `batch_size` (default 1,000), one statement each, until a
    batch deletes fewer: rows another cleanup holds are skipped, not waited for (that cleanup
    deletes them). On an autocommit connection every batch commits on its own, which is what keeps
    transactions short; inside a transaction the batches commit (or roll back) with it, and hold
    their locks through the rests.

    Parameters:
        conn: a psycopg connection, preferably in autocommit mode; never committed or closed here.
        older_than_seconds: the retention, counted back from the database's `now()`; 0 prunes
            every row that failed before the batch ran.
        batch_size: rows per statement (default 1,000).
        rest: after each full batch, wait `rest` times as long as it took (default 1.0); 0 runs
            the batches back to back, larger values leave workers more room.
        schema: the schema holding pgqueue's tables (default `pgqueue`).
    """
    return run_plan(_prune(schema, older_than_seconds, batch_size, rest), conn)


async def prune_failed_jobs_async(
    conn: psycopg.AsyncConnection[Any],
    older_than_seconds: float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    rest: float = DEFAULT_REST,
    schema: str = DEFAULT_SCHEMA,
) -> int:
    """`prune_failed_jobs` on an asyncio connection, for workers pruning on an interval; the rests
    are `asyncio.sleep`s, so the event loop runs on."""
    return await run_plan_async(_prune(schema, older_than_seconds, batch_size, rest), conn)


def prune_job_results(
    conn: psycopg.Connection[Any],
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    rest: float = DEFAULT_REST,
    schema: str = DEFAULT_SCHEMA,
) -> int:
    """Delete the `job_results` rows whose `keep_until` has passed; return how many.

    Batched as `prune_failed_jobs` is (the same `batch_size`, `rest` and connection rules), oldest
    `keep_until` first; a row is kept until its own time (the job type's `keep_result` when it
    completed), so no cutoff is given.
    """
    return run_plan(_prune_results(schema, batch_size, rest), conn)


async def prune_job_results_async(
    conn: psycopg.AsyncConnection[Any],
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    rest: float = DEFAULT_REST,
    schema: str = DEFAULT_SCHEMA,
) -> int:
    """`prune_job_results` on an asyncio connection, for workers pruning on an interval."""
    return await run_plan_async(_prune_results(schema, batch_size, rest), conn)


class Pruned(NamedTuple):
    """What one `cleanup` deleted."""

    failed_jobs: int
    job_results: int
    throughput_minutes: int = 0


async def prune_queue_throughput_async(
    conn: psycopg.AsyncConnection[Any], *, schema: str = DEFAULT_SCHEMA
) -> int:
    """Delete `queue_throughput` minutes older than `THROUGHPUT_KEEP_SECONDS`; return how many."""
    return await run_plan_async(_prune_throughput(schema), conn)


def _prune_throughput(schema: str) -> Plan[int]:
    rows = yield Statement(
        queries_for(schema)["prune_queue_throughput"],
        {"older_than_seconds": THROUGHPUT_KEEP_SECONDS},
    )
    pruned: int = rows[0][0]
    return pruned


def cleanup(
    settings: Settings,
    older_than_seconds: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rest: float = DEFAULT_REST,
) -> Pruned:
    """Prune `failed_jobs` past retention, then `job_results` past their `keep_until`, on a
    connection of its own; what `pgqueue cleanup` runs. Returns how many rows of each went.

    Parameters:
        settings: where to connect; its `retention` (`PGQUEUE_RETENTION`, default 30 days) is the
            cutoff unless `older_than_seconds` is given.
        older_than_seconds: overrides the retention, in seconds.
        batch_size: rows per statement (default 1,000).
        rest: the pause after each batch, in multiples of the batch's duration (default 1.0).

    Raises `ConfigurationError` for a bad cutoff or batch size, `DatabaseError` if PostgreSQL
    cannot be reached or refuses the statement.
    """
    older = settings.retention if older_than_seconds is None else older_than_seconds
    failed_plan = _prune(settings.db_schema, older, batch_size, rest)
    results_plan = _prune_results(settings.db_schema, batch_size, rest)
    try:
        with connect(settings, application_name="pgqueue-cleanup") as conn:
            return Pruned(
                run_plan(failed_plan, conn),
                run_plan(results_plan, conn),
                run_plan(_prune_throughput(settings.db_schema), conn),
            )
    except psycopg.Error as exc:
        raise translate(exc, settings) from exc


def _prune(schema: str, older_than_seconds: float, batch_size: int, rest: float) -> Plan[int]:
    """Check the arguments now, then return the plan that deletes batch after batch."""
    if (
        isinstance(older_than_seconds, bool)
        or not isinstance(older_than_seconds, int | float)
        or not math.isfinite(older_than_seconds)
        or older_than_seconds < 0
    ):
        raise ConfigurationError(
            f"older_than_seconds must be a finite number of seconds >= 0, got {older_than_seconds!r}"
        )
    _check_batches(batch_size, rest)
    statement = Statement(
        queries_for(schema)["prune_failed_jobs"],
        {"older_than_seconds": float(older_than_seconds), "limit": batch_size},
    )
    return _prune_batches(statement, batch_size, float(rest))


def _prune_results(schema: str, batch_size: int, rest: float) -> Plan[int]:
    """`_prune` for job_results: the arguments checked now, the batches when the plan runs."""
    _check_batches(batch_size, rest)
    statement = Statement(queries_for(schema)["prune_job_results"], {"limit": batch_size})
    return _prune_batches(statement, batch_size, float(rest))


def _check_batches(batch_size: int, rest: float) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if (
        isinstance(rest, bool)
        or not isinstance(rest, int | float)
        or not math.isfinite(rest)
        or rest < 0
    ):
        raise ConfigurationError(f"rest must be a finite number >= 0, got {rest!r}")


def _prune_batches(statement: Statement, batch_size: int, rest: float) -> Plan[int]:
    total = 0
    while True:
        started = time.monotonic()
        rows = yield statement
        pruned: int = rows[0][0]
        total += pruned
        if pruned < batch_size:
            return total
        if rest > 0:
            yield Pause((time.monotonic() - started) * rest)
