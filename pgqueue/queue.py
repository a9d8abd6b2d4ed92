"""`Queue` and `AsyncQueue`: dispatch jobs, in the caller's transaction or on their own.

Both are thin shells over the same builders (`_dispatch`, `_bulk`, `_size`), which validate
everything and return the SQL and its parameters before any SQL runs; the shells only execute.
`bulk` reserves ids from the table's sequence and COPYs the rows, the fastest way into a table. A
connection handed in as `conn=` is used as it is: pgqueue never commits, rolls back or closes it.
Without `conn=`, a small pool of autocommit connections makes each dispatch one round trip.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Self

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgqueue.embedded import database_url
from pgqueue.errors import DispatchError, UnsupportedConnectionError
from pgqueue.job import Job, encode_payload, set_identity, validate_queue_name
from pgqueue.settings import Settings
from pgqueue.sql import SchemaClient

logger = logging.getLogger("pgqueue")


@dataclass(frozen=True)
class _Statement:
    query: bytes
    params: dict[str, Any]


@dataclass(frozen=True)
class _BulkPlan:
    """A validated bulk dispatch: reserve ids from the sequence, then COPY the rows with them."""

    reserve: _Statement
    copy: bytes
    rows: list[tuple[str, str, str, int, int]]

    def rows_with(self, ids: Sequence[int]) -> Iterator[tuple[Any, ...]]:
        return ((job_id, *row) for job_id, row in zip(ids, self.rows, strict=True))


class _QueueBase(SchemaClient):
    """What `Queue` and `AsyncQueue` share: the statement builders."""

    def _conninfo(self) -> str:
        if self.settings.database_url is None:
            logger.info("PGQUEUE_DATABASE_URL is unset: using the embedded PostgreSQL")
        return database_url(self.settings)

    def _dispatch(
        self,
        job: Job,
        delay: float | timedelta | None,
        run_at: datetime | None,
        priority: int | None,
    ) -> _Statement:
        if not isinstance(job, Job):
            raise DispatchError(f"dispatch() takes a Job instance, got {type(job).__name__}")
        if delay is not None and run_at is not None:
            raise DispatchError("pass either delay= or run_at=, not both")
        if run_at is not None and (not isinstance(run_at, datetime) or run_at.tzinfo is None):
            raise DispatchError("run_at must be a timezone-aware datetime")
        if isinstance(delay, bool) or not isinstance(delay, int | float | timedelta | None):
            raise DispatchError(f"delay must be seconds or a timedelta, got {delay!r}")
        delay_seconds = delay.total_seconds() if isinstance(delay, timedelta) else (delay or 0.0)
        if not math.isfinite(delay_seconds) or delay_seconds < 0:
            raise DispatchError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
            raise DispatchError(f"priority must be an integer, got {priority!r}")
        job_class = type(job)
        params = {
            "queue": validate_queue_name(job_class.queue),
            "job_type": job_class.job_name,
            "payload": encode_payload(job, self.settings.max_payload_bytes),
            "priority": job_class.priority if priority is None else priority,
            "run_at": run_at,
            "delay": float(delay_seconds),
            "max_tries": job_class.max_tries,
        }
        return _Statement(self._queries["dispatch_job"], params)

    def _bulk(self, jobs: Sequence[Job]) -> _BulkPlan:
        rows: list[tuple[str, str, str, int, int]] = []
        max_bytes = self.settings.max_payload_bytes
        for index, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise DispatchError(f"bulk() item {index} is a {type(job).__name__}, not a Job")
            job_class = type(job)
            try:
                queue = validate_queue_name(job_class.queue)
                payload = encode_payload(job, max_bytes)
            except DispatchError as exc:
                raise type(exc)(f"bulk() item {index}: {exc}") from exc
            rows.append(
                (queue, job_class.job_name, payload, job_class.priority, job_class.max_tries)
            )
        return _BulkPlan(
            _Statement(self._queries["reserve_job_ids"], {"count": len(rows)}),
            self._queries["copy_jobs"],
            rows,
        )

    def _size(self, queue: str) -> _Statement:
        return _Statement(self._queries["queue_size"], {"queue": validate_queue_name(queue)})


class Queue(_QueueBase):
    """Dispatch jobs and read queue sizes, with blocking calls.

    Parameters:
        settings: where and how to connect; read from the environment when None.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_lock = threading.Lock()

    def dispatch(
        self,
        job: Job,
        conn: Any = None,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
    ) -> int:
        """Enqueue `job` and return its id.

        With `conn`, the job is written in that connection's current transaction: it exists if and
        only if the caller commits. Without, it is committed at once. `delay` (seconds or a
        timedelta, counted in database time) or `run_at` schedule it; `priority` overrides the
        class's.
        """
        statement = self._dispatch(job, delay, run_at, priority)
        rows = self._execute(statement, conn)
        job_id: int = rows[0][0]
        set_identity(job, job_id)
        return job_id

    def bulk(self, jobs: Iterable[Job], conn: Any = None) -> list[int]:
        """Enqueue many jobs with one COPY, all or nothing; returns their ids in order.

        Like `dispatch`, with `conn` the jobs are written in the caller's transaction.
        """
        batch = list(jobs)
        if not batch:
            return []
        plan = self._bulk(batch)
        try:
            if conn is not None:
                ids = _copy_jobs(_psycopg_connection(conn), plan)
            else:
                with self._get_pool().connection() as own, own.transaction():
                    ids = _copy_jobs(own, plan)
        except psycopg.Error as exc:
            raise self._database_error(exc) from exc
        for job, job_id in zip(batch, ids, strict=True):
            set_identity(job, job_id)
        return ids

    def size(self, queue: str = "default", conn: Any = None) -> int:
        """How many jobs wait in `queue` (ready or scheduled), not counting running ones."""
        count: int = self._execute(self._size(queue), conn)[0][0]
        return count

    def close(self) -> None:
        """Close the pool used for dispatch without `conn=`; connections handed in stay open."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _execute(self, statement: _Statement, conn: Any) -> list[tuple[Any, ...]]:
        try:
            if conn is not None:
                return (
                    _psycopg_connection(conn).execute(statement.query, statement.params).fetchall()
                )
            with self._get_pool().connection() as own:
                return own.execute(statement.query, statement.params).fetchall()
        except psycopg.Error as exc:
            raise self._database_error(exc) from exc

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._conninfo(),
                    min_size=1,
                    max_size=self.settings.pool_size,
                    kwargs={"autocommit": True},
                    name="pgqueue-dispatch",
                    open=True,
                )
            return self._pool


class AsyncQueue(_QueueBase):
    """`Queue` for asyncio: the same methods, awaited."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    async def dispatch(
        self,
        job: Job,
        conn: Any = None,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
    ) -> int:
        """Enqueue `job` and return its id; see `Queue.dispatch`."""
        statement = self._dispatch(job, delay, run_at, priority)
        rows = await self._execute(statement, conn)
        job_id: int = rows[0][0]
        set_identity(job, job_id)
        return job_id

    async def bulk(self, jobs: Iterable[Job], conn: Any = None) -> list[int]:
        """Enqueue many jobs with one COPY, all or nothing; returns their ids in order."""
        batch = list(jobs)
        if not batch:
            return []
        plan = self._bulk(batch)
        try:
            if conn is not None:
                ids = await _copy_jobs_async(await _async_psycopg_connection(conn), plan)
            else:
                pool = await self._get_pool()
                async with pool.connection() as own, own.transaction():
                    ids = await _copy_jobs_async(own, plan)
        except psycopg.Error as exc:
            raise self._database_error(exc) from exc
        for job, job_id in zip(batch, ids, strict=True):
            set_identity(job, job_id)
        return ids

    async def size(self, queue: str = "default", conn: Any = None) -> int:
        """How many jobs wait in `queue` (ready or scheduled), not counting running ones."""
        count: int = (await self._execute(self._size(queue), conn))[0][0]
        return count

    async def close(self) -> None:
        """Close the pool used for dispatch without `conn=`; connections handed in stay open."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _execute(self, statement: _Statement, conn: Any) -> list[tuple[Any, ...]]:
        try:
            if conn is not None:
                driver = await _async_psycopg_connection(conn)
                cursor = await driver.execute(statement.query, statement.params)
                return await cursor.fetchall()
            pool = await self._get_pool()
            async with pool.connection() as own:
                cursor = await own.execute(statement.query, statement.params)
                return await cursor.fetchall()
        except psycopg.Error as exc:
            raise self._database_error(exc) from exc

    async def _get_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            import asyncio

            conninfo = await asyncio.to_thread(self._conninfo)
            if self._pool is None:
                pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                    conninfo,
                    min_size=1,
                    max_size=self.settings.pool_size,
                    kwargs={"autocommit": True},
                    name="pgqueue-dispatch",
                    open=False,
                )
                await pool.open()
                self._pool = pool
        return self._pool


def _copy_jobs(conn: psycopg.Connection[Any], plan: _BulkPlan) -> list[int]:
    ids = [row[0] for row in conn.execute(plan.reserve.query, plan.reserve.params).fetchall()]
    with conn.cursor() as cursor, cursor.copy(plan.copy) as copy:
        for row in plan.rows_with(ids):
            copy.write_row(row)
    return ids


async def _copy_jobs_async(conn: psycopg.AsyncConnection[Any], plan: _BulkPlan) -> list[int]:
    cursor = await conn.execute(plan.reserve.query, plan.reserve.params)
    ids = [row[0] for row in await cursor.fetchall()]
    async with conn.cursor() as copy_cursor, copy_cursor.copy(plan.copy) as copy:
        for row in plan.rows_with(ids):
            await copy.write_row(row)
    return ids


def _psycopg_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg connection behind `conn` (psycopg itself, or a SQLAlchemy Session/Connection)."""
    if isinstance(conn, psycopg.Connection):
        return conn
    if type(conn).__module__.startswith("sqlalchemy."):
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.orm import Session

        if isinstance(conn, Session):
            conn = conn.connection()
        if isinstance(conn, SAConnection):
            driver = conn.connection.driver_connection
            if isinstance(driver, psycopg.Connection):
                return driver
    if isinstance(conn, psycopg.AsyncConnection) or _is_sqlalchemy_async(conn):
        raise UnsupportedConnectionError(
            f"{type(conn).__name__} is asynchronous: use AsyncQueue to dispatch through it"
        )
    raise UnsupportedConnectionError(_unsupported_message(conn))


async def _async_psycopg_connection(conn: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg async connection behind `conn` (psycopg, or a SQLAlchemy AsyncSession/Conn)."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    if _is_sqlalchemy_async(conn):
        from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
        from sqlalchemy.ext.asyncio import AsyncSession

        if isinstance(conn, AsyncSession):
            conn = await conn.connection()
        if isinstance(conn, SAAsyncConnection):
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if isinstance(driver, psycopg.AsyncConnection):
                return driver
    if isinstance(conn, psycopg.Connection) or type(conn).__module__.startswith("sqlalchemy."):
        raise UnsupportedConnectionError(
            f"{type(conn).__name__} is blocking: use Queue to dispatch through it"
        )
    raise UnsupportedConnectionError(_unsupported_message(conn))


def _is_sqlalchemy_async(conn: Any) -> bool:
    return type(conn).__module__.startswith("sqlalchemy.ext.asyncio")


def _unsupported_message(conn: Any) -> str:
    return (
        f"cannot dispatch through a {type(conn).__module__}.{type(conn).__name__}: pass a psycopg 3 "
        "connection, or a SQLAlchemy Session/Connection/AsyncSession using the psycopg driver "
        "(postgresql+psycopg://)"
    )
