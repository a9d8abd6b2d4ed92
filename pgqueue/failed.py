"""`FailedJobs` and `AsyncFailedJobs`: list, show, retry, forget and flush failed jobs.

The library side of `pgqueue failed ...`, for a web admin or a script. Each operation is written
once, as a plan of statements (see `pgqueue.sql`); the two classes only run it, on a connection of
their own (one short connection per call, autocommit, so every batch is its own transaction) or on
the psycopg connection passed as `conn=` (used as it is: never committed, rolled back or closed).

Retrying moves rows back to `jobs` with one `DELETE ... RETURNING` feeding an `INSERT` per batch:
a job is in exactly one table at every moment, keeps its id, and starts again with no tries spent.
Two retries of the same jobs racing each other move every job once. A unique job whose key another
job holds (queued, or running with unique_while="active") stays in `failed_jobs`: see `RetriedJobs`
and docs/unique-jobs.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgqueue.connection import connect, connect_async
from pgqueue.errors import (
    ConfigurationError,
    FailedJobNotFoundError,
    UnsupportedConnectionError,
)
from pgqueue.sql import Plan, Rows, SchemaClient, Statement, T, run_plan, run_plan_async

DEFAULT_BATCH_SIZE = 1000
DEFAULT_LIST_LIMIT = 50
# Batched statements walk ids upward from here (job ids are bigint).
_BEFORE_FIRST_ID = -(2**63)


@dataclass(frozen=True)
class FailedJob:
    """One row of `failed_jobs`: a job that used its last try (columns as in docs/schema.md)."""

    id: int
    queue: str
    job_type: str
    payload: Any
    priority: int
    attempts: int
    max_tries: int
    exception_class: str
    exception_message: str
    traceback: str
    worker_id: str | None
    enqueued_at: datetime
    failed_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready values (times in ISO 8601), for `--json` output and web APIs."""
        document = asdict(self)
        document["enqueued_at"] = self.enqueued_at.isoformat()
        document["failed_at"] = self.failed_at.isoformat()
        return document


class RetriedJobs(list[int]):
    """What `retry` returns: the ids moved back to `jobs`, in order (it is a list of them), and in
    `held` the unique jobs left in `failed_jobs` because another job holds their key: failed id
    to the holder's id (None when the holder was not visible yet, having committed during the
    retry). Retry such a job once its key is free, or forget it: the holder does its work."""

    def __init__(self, ids: Iterable[int] = (), held: dict[int, int | None] | None = None) -> None:
        super().__init__(ids)
        self.held: dict[int, int | None] = held or {}


def _failed_job(row: Sequence[Any]) -> FailedJob:
    return FailedJob(row[0], row[1], row[2], _decode_payload(row[3]), *row[4:])


def _decode_payload(text: str) -> Any:
    """The stored payload as JSON values; its text as it is when Python's json cannot read it
    (a row written by hand may nest thousands deep or hold a 5,000-digit number), so listing a
    poison job never fails."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


class _FailedJobsBase(SchemaClient):
    """What both classes share: the plans, which check their arguments when built (before any
    connection is opened) and run when executed."""

    def _list(
        self,
        queue: str | None,
        job_type: str | None,
        since: float | timedelta | None,
        limit: int,
    ) -> Plan[list[FailedJob]]:
        params = {
            "queue": _optional_text(queue, "queue"),
            "job_type": _optional_text(job_type, "job_type"),
            "since_seconds": _seconds(since, "since"),
            "limit": _positive_int(limit, "limit"),
        }
        return _one(
            Statement(self._queries["list_failed_jobs"], params),
            lambda rows: [_failed_job(row) for row in rows],
        )

    def _show(self, job_id: int) -> Plan[FailedJob]:
        def found(rows: Rows) -> FailedJob:
            if not rows:
                raise FailedJobNotFoundError(
                    f"no failed job with id {job_id}: it never failed, or was already retried, "
                    "forgotten or pruned (see `pgqueue failed list`)"
                )
            return _failed_job(rows[0])

        params = {"id": _ids([job_id])[0]}
        return _one(Statement(self._queries["show_failed_job"], params), found)

    def _retry(self, ids: Iterable[int], batch_size: int) -> Plan[RetriedJobs]:
        size = _positive_int(batch_size, "batch_size")
        return _retry_chunks(self._queries["retry_failed_jobs"], _ids(ids), size)

    def _retry_all(self, queue: str | None, job_type: str | None, batch_size: int) -> Plan[int]:
        params = {
            "queue": _optional_text(queue, "queue"),
            "job_type": _optional_text(job_type, "job_type"),
        }
        size = _positive_int(batch_size, "batch_size")
        return _walk(self._queries["retry_all_failed_jobs"], params, size, _count_moved)

    def _forget(self, ids: Iterable[int], batch_size: int) -> Plan[list[int]]:
        return _by_chunks(self._queries["forget_failed_jobs"], _ids(ids), batch_size)

    def _flush(
        self, queue: str | None, older_than: float | timedelta | None, batch_size: int
    ) -> Plan[int]:
        params = {
            "queue": _optional_text(queue, "queue"),
            "older_than_seconds": _seconds(older_than, "older_than"),
        }
        return _walk_ids(self._queries["flush_failed_jobs"], params, batch_size)


class FailedJobs(_FailedJobsBase):
    """The `failed_jobs` table as blocking calls, for a web admin, a script or the CLI.

    Parameters:
        settings: where and how to connect; read from the environment when None.

    Every method takes `conn=`, a psycopg `Connection` to run on (its transaction, if any, is
    the caller's); without it, the call opens and closes an autocommit connection of its own.
    Errors: `ConfigurationError` for a bad argument, `FailedJobNotFoundError` from `show`,
    `DatabaseError` when PostgreSQL is unreachable or refuses a statement.
    """

    def show(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> FailedJob:
        """The failed job `job_id`, every column; raises `FailedJobNotFoundError` if absent."""
        return self._run(self._show(job_id), conn)

    def retry(
        self,
        ids: Iterable[int],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        conn: psycopg.Connection[Any] | None = None,
    ) -> RetriedJobs:
        """Move the failed jobs `ids` back to `jobs`; return the ids moved, in order.

        Each job keeps its id, starts again with no tries spent and is ready at once (workers are
        woken). Ids not in `failed_jobs` (never failed, or already retried) are left out of the
        result. A unique job whose key another job holds stays in `failed_jobs`, left out too
        and named in the result's `held` with the holder's id. One statement, and so one
        transaction, per `batch_size` ids (default 1,000).
        """
        return self._run(self._retry(ids, batch_size), conn)

    def retry_all(
        self,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        conn: psycopg.Connection[Any] | None = None,
    ) -> int:
        """Move every failed job (optionally only of `queue` and/or `job_type`) back to `jobs`, as
        `retry` does, in batches of `batch_size` (default 1,000); return how many moved.

        Jobs that fail again while it runs are not retried a second time by the same call, and
        concurrent calls share the rows (`SKIP LOCKED`), so each job is moved once. Unique jobs
        whose key another job holds stay, and are not counted (see `retry`).
        """
        return self._run(self._retry_all(queue, job_type, batch_size), conn)

    def forget(
        self,
        ids: Iterable[int],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        conn: psycopg.Connection[Any] | None = None,
    ) -> list[int]:
        """Delete the failed jobs `ids` for good; return the ids deleted, in order."""
        return self._run(self._forget(ids, batch_size), conn)

    def flush(
        self,
        *,
        queue: str | None = None,
        older_than: float | timedelta | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        conn: psycopg.Connection[Any] | None = None,
    ) -> int:
        """Delete every failed job (optionally only of `queue`, or that failed more than
        `older_than` seconds ago) in batches of `batch_size`; return how many were deleted."""
        return self._run(self._flush(queue, older_than, batch_size), conn)

    def list(
        self,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        since: float | timedelta | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        conn: psycopg.Connection[Any] | None = None,
    ) -> list[FailedJob]:
        """Failed jobs, newest first: at most `limit` (default 50), optionally only of `queue`,
        of `job_type`, or that failed within the last `since` seconds (or timedelta)."""
        return self._run(self._list(queue, job_type, since, limit), conn)

    def _run(self, plan: Plan[T], conn: psycopg.Connection[Any] | None) -> T:
        try:
            if conn is not None:
                if not isinstance(conn, psycopg.Connection):
                    raise UnsupportedConnectionError(_unsupported(conn, "FailedJobs"))
                return run_plan(plan, conn)
            with connect(self.settings, application_name="pgqueue-failed") as own:
                return run_plan(plan, own)
        except psycopg.Error as exc:
            raise self._database_error(exc) from exc
        finally:
            plan.close()


class AsyncFailedJobs(_FailedJobsBase):
    """`FailedJobs` for asyncio: the same methods, awaited, with `conn=` a psycopg
    `AsyncConnection`."""

    async def show(
        self, job_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> FailedJob:
        """The failed job `job_id`; see `FailedJobs.show`."""
        return await self._run(self._show(job_id), conn)

    async def retry(
        self,
        ids: Iterable[int],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> RetriedJobs:
        """Move the failed jobs `ids` back to `jobs`; see `FailedJobs.retry`."""
        return await self._run(self._retry(ids, batch_size), conn)

    async def retry_all(
        self,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> int:
        """Move every (matching) failed job back to `jobs`; see `FailedJobs.retry_all`."""
        return await self._run(self._retry_all(queue, job_type, batch_size), conn)

    async def forget(
        self,
        ids: Iterable[int],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[int]:
        """Delete the failed jobs `ids`; see `FailedJobs.forget`."""
        return await self._run(self._forget(ids, batch_size), conn)

    async def flush(
        self,
        *,
        queue: str | None = None,
        older_than: float | timedelta | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> int:
        """Delete every (matching) failed job; see `FailedJobs.flush`."""
        return await self._run(self._flush(queue, older_than, batch_size), conn)

    async def list(
        self,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        since: float | timedelta | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[FailedJob]:
        """Failed jobs, newest first; see `FailedJobs.list`."""
        return await self._run(self._list(queue, job_type, since, limit), conn)

    async def _run(self, plan: Plan[T], conn: psycopg.AsyncConnection[Any] | None) -> T:
        try:
            if conn is not None:
                if not isinstance(conn, psycopg.AsyncConnection):
                    raise UnsupportedConnectionError(_unsupported(conn, "AsyncFailedJobs"))
                return await run_plan_async(plan, conn)
            async with await connect_async(self.settings, application_name="pgqueue-failed") as own:
                return await run_plan_async(plan, own)
        except psycopg.Error as exc:
            raise self._database_error(exc) from exc
        finally:
            plan.close()


def _one(statement: Statement, convert: Callable[[Rows], T]) -> Plan[T]:
    """A plan of one statement whose rows `convert` turns into the result."""
    rows = yield statement
    return convert(rows)


def _by_chunks(query: bytes, ids: list[int], batch_size: int) -> Plan[list[int]]:
    """Run `query` on `ids` in chunks of `batch_size`, one statement each; the ids it returned."""
    size = _positive_int(batch_size, "batch_size")
    return _chunks(query, ids, size)


def _chunks(query: bytes, ids: list[int], size: int) -> Plan[list[int]]:
    affected: list[int] = []
    for start in range(0, len(ids), size):
        rows = yield Statement(query, {"ids": ids[start : start + size]})
        affected.extend(row[0] for row in rows)
    return sorted(affected)


def _walk_ids(query: bytes, params: dict[str, Any], batch_size: int) -> Plan[int]:
    """Run a batched `query` (taking `after_id` and `limit`, returning the ids it touched) over
    ascending ids until a batch comes back short; the number of rows touched."""
    return _walk(query, params, _positive_int(batch_size, "batch_size"))


def _walk(
    query: bytes, params: dict[str, Any], limit: int, count: Callable[[Rows], int] = len
) -> Plan[int]:
    total = 0
    after_id = _BEFORE_FIRST_ID
    while True:
        rows = yield Statement(query, {**params, "after_id": after_id, "limit": limit})
        total += count(rows)
        if len(rows) < limit:
            return total
        after_id = max(row[0] for row in rows)


def _retry_chunks(query: bytes, ids: list[int], size: int) -> Plan[RetriedJobs]:
    """Run a retry statement on `ids` in chunks; its rows are (id, moved, holder)."""
    moved: list[int] = []
    held: dict[int, int | None] = {}
    for start in range(0, len(ids), size):
        rows = yield Statement(query, {"ids": ids[start : start + size]})
        for job_id, was_moved, holder in rows:
            if was_moved:
                moved.append(job_id)
            else:
                held[job_id] = holder
    return RetriedJobs(sorted(moved), held)


def _count_moved(rows: Rows) -> int:
    return sum(1 for row in rows if row[1])


def _ids(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, str | bytes):
        raise ConfigurationError(f"ids must be integers, got the string {ids!r}")
    unique: set[int] = set()
    for job_id in ids:
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise ConfigurationError(f"job ids are integers, got {job_id!r}")
        unique.add(job_id)
    return sorted(unique)


def _optional_text(value: str | None, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigurationError(f"{name} must be a non-empty string or None, got {value!r}")
    return value


def _seconds(value: float | timedelta | None, name: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ConfigurationError(
            f"{name} must be a number of seconds >= 0 or a timedelta, got {value!r}"
        )
    return float(seconds)


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _unsupported(conn: Any, owner: str) -> str:
    wanted = "AsyncConnection" if owner.startswith("Async") else "Connection"
    return (
        f"{owner} runs on a psycopg {wanted} as conn=, got a {type(conn).__module__}."
        f"{type(conn).__name__}; leave conn= out to let it connect on its own"
    )
