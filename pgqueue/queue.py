"""`Queue` and `AsyncQueue`: dispatch jobs, in the caller's transaction or on their own.

Both are thin shells over the same builders (`_dispatch`, `_bulk`, `_size`, `_clear`, `_pause`,
`_resume`), which validate everything and return the SQL and its parameters before any SQL runs;
the shells only execute. `pause` and `resume` stop and restart the claims from one queue.
`bulk` reserves ids from the table's sequence and COPYs the rows, the fastest way into a table
(a batch holding unique jobs takes one `INSERT ... ON CONFLICT` instead: docs/unique-jobs.md). A
connection handed in as `conn=` is used as it is: pgqueue never commits, rolls back or closes it.
Without `conn=`, a small pool of autocommit connections makes each dispatch one round trip.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self

import psycopg
from psycopg.rows import TupleRow, tuple_row

from pgqueue import tracing
from pgqueue.connection import AsyncPool, Pool, connect, connect_async, lost, translate_sent
from pgqueue.errors import (
    DatabaseError,
    DispatchError,
    InvalidPriorityError,
    InvalidScheduleError,
    InvalidUniqueOptionError,
    JobCancelledError,
    UnsupportedConnectionError,
)
from pgqueue.job import (
    INT4_MAX,
    INT4_MIN,
    MAX_DURATION_SECONDS,
    Job,
    brief_repr,
    derived_unique_key,
    dispatch_settings,
    encode_payload,
    hash_unique_key,
    parse_rate_limit,
    set_identity,
    unique_settings,
    validate_queue_name,
)
from pgqueue.outcome import class_name
from pgqueue.results import (
    DEFAULT_POLL_SECONDS,
    JobStatus,
    check_wait,
    results_channel,
    run_wait,
    run_wait_async,
    status_from_rows,
    status_statement,
    wait_plan,
)
from pgqueue.settings import Settings
from pgqueue.sql import Plan, SchemaClient, Statement, run_plan, run_plan_async

# What dispatch does when a unique job's key is held: "skip" keeps the holder as it is, "replace"
# gives a queued holder the new payload and run_at (debounce). Both return the holder's id.
OnConflict = Literal["skip", "replace"]
_ON_CONFLICT = ("skip", "replace")
# A unique dispatch runs again when its key's holder committed while it waited (see
# dispatch_unique_job); each round needs another commit to race it, so a few always suffice.
_UNIQUE_ROUNDS = 100


@dataclass(frozen=True)
class _Statement:
    query: bytes
    params: dict[str, Any]


@dataclass(frozen=True)
class _BulkPlan:
    """A validated bulk dispatch: reserve ids from the sequence, then COPY the rows with them.

    `lines` are the rows already in COPY's text format, each without its id, the one value only
    known once the ids are reserved. A row then costs one string, not psycopg's adaptation of
    each value: on 10,000 no-op jobs `write_row` took 21 ms of client CPU, binary COPY 40 ms,
    these lines 6 ms.
    """

    reserve: _Statement
    copy: bytes
    lines: list[str]

    def data(self, ids: Sequence[int]) -> Iterator[str]:
        """The COPY data for the rows with `ids`, in pieces of `_COPY_PIECE_ROWS` rows."""
        rows = [f"{job_id}\t{line}" for job_id, line in zip(ids, self.lines, strict=True)]
        for start in range(0, len(rows), _COPY_PIECE_ROWS):
            yield "".join(rows[start : start + _COPY_PIECE_ROWS])


@dataclass(frozen=True)
class _UniqueBulkPlan:
    """A validated bulk dispatch holding unique jobs: `bulk_unique_jobs` on the batch's distinct
    rows (`columns`, one list per column), one round trip unless a key's holder commits while the
    insert waits for it. `sent[i]` is the row sent for job i: a duplicate within the batch shares
    the row of its first occurrence, and so its id."""

    query: bytes
    columns: dict[str, list[Any]]
    sent: list[int]
    trace_context: str | None = None  # the producer span's, the same for every row

    def steps(self) -> Plan[list[int]]:
        """The plan: send the rows still without an id until every row has one."""
        ids: list[int] = [0] * len(self.columns["queues"])
        pending = list(range(len(ids)))
        for _ in range(_UNIQUE_ROUNDS):
            params = {name: [values[i] for i in pending] for name, values in self.columns.items()}
            rows = yield Statement(self.query, {**params, "trace_context": self.trace_context})
            again = []
            for position, job_id in rows:
                row = pending[position - 1]
                if job_id is None:
                    again.append(row)
                else:
                    ids[row] = job_id
            pending = again
            if not pending:
                return [ids[row] for row in self.sent]
        raise _unsettled()


def _unsettled() -> DatabaseError:
    return DatabaseError(
        f"a unique key's holder kept changing over {_UNIQUE_ROUNDS} tries; dispatch again"
    )


# How `connect()`'s connections show in pg_stat_activity, unless the URL or PGAPPNAME names them.
CLIENT_APPLICATION_NAME = "pgqueue-client"
# And those `wait` LISTENs on.
WAIT_APPLICATION_NAME = "pgqueue-wait"

# Tens of kB of COPY data per write for small payloads: few calls into psycopg, and a bulk of
# any size never builds one huge string.
_COPY_PIECE_ROWS = 1000


def _copy_text(value: str) -> str:
    """`value` as a field of COPY's text format: backslash, tab, newline and return escaped.

    Payloads are JSON, which escapes control characters itself, and names refuse them, so most
    values pass with four substring tests.
    """
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


class _QueueBase(SchemaClient):
    """What `Queue` and `AsyncQueue` share: the statement builders."""

    def _dispatch(
        self,
        job: Job,
        delay: float | timedelta | None,
        run_at: datetime | None,
        priority: int | None,
        queue: str | None = None,
        unique_key: str | None = None,
        on_conflict: OnConflict = "skip",
    ) -> _Statement:
        if not isinstance(job, Job):
            raise DispatchError(f"dispatch() takes a Job instance, got {type(job).__name__}")
        if delay is None and run_at is None:
            delay_seconds = 0.0
        else:
            run_at, delay_seconds = _schedule(delay, run_at)
        if priority is not None and not (
            type(priority) is int and INT4_MIN <= priority <= INT4_MAX
        ):
            priority = _priority(priority)
        class_queue, job_name, class_priority, max_tries = dispatch_settings(type(job))
        params = {
            "queue": class_queue if queue is None else validate_queue_name(queue),
            "job_type": job_name,
            "payload": encode_payload(job, self.settings.max_payload_bytes),
            "priority": class_priority if priority is None else priority,
            "run_at": run_at,
            "delay": delay_seconds,
            "max_tries": max_tries,
            "trace_context": None,  # the producer span's, set by `_traced` while tracing is on
        }
        if unique_key is None and on_conflict == "skip" and type(job).unique is False:
            return _Statement(self._queries["dispatch_job"], params)
        unique = _unique_params(job, job_name, unique_key, on_conflict)
        name = "replace_unique_job" if on_conflict == "replace" else "dispatch_unique_job"
        return _Statement(self._queries[name], {**params, **unique})

    def _bulk(
        self, jobs: Sequence[Job], trace_context: str | None = None
    ) -> _BulkPlan | _UniqueBulkPlan:
        lines: list[str] = []
        max_bytes = self.settings.max_payload_bytes
        # The same in every row, so it joins the text after the payload at no cost per row.
        trace_field = r"\N" if trace_context is None else _copy_text(trace_context)
        # Class settings are checked once per class and call (a bulk is mostly one class), and
        # become the COPY text around the payload: queue and job name before it, priority,
        # max_tries and the trace context after.
        checked: dict[type[Job], tuple[str, str]] = {}
        for index, job in enumerate(jobs):
            around = checked.get(type(job))
            if around is None and not isinstance(job, Job):
                raise DispatchError(f"bulk() item {index} is a {type(job).__name__}, not a Job")
            try:
                if around is None:
                    if type(job).unique is not False and unique_settings(type(job))[0] is not None:
                        break  # a unique job: the whole batch takes bulk_unique_jobs
                    queue, job_name, priority, max_tries = dispatch_settings(type(job))
                    around = checked[type(job)] = (
                        f"{_copy_text(queue)}\t{_copy_text(job_name)}\t",
                        f"\t{priority}\t{max_tries}\t{trace_field}\n",
                    )
                payload = encode_payload(job, max_bytes)
            except DispatchError as exc:
                raise type(exc)(f"bulk() item {index}: {exc}") from exc
            lines.append(f"{around[0]}{_copy_text(payload)}{around[1]}")
        else:
            return _BulkPlan(
                _Statement(self._queries["reserve_job_ids"], {"count": len(lines)}),
                self._queries["copy_jobs"],
                lines,
            )
        return self._bulk_unique(jobs, trace_context)

    def _bulk_unique(self, jobs: Sequence[Job], trace_context: str | None) -> _UniqueBulkPlan:
        names = ("queues", "job_types", "payloads", "priorities", "max_tries", "unique_keys")
        columns: dict[str, list[Any]] = {name: [] for name in (*names, "unique_whiles")}
        first: dict[str, int] = {}  # a key's row, so a duplicate in the batch shares it
        sent: list[int] = []
        for index, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise DispatchError(f"bulk() item {index} is a {type(job).__name__}, not a Job")
            try:
                queue, job_name, priority, max_tries = dispatch_settings(type(job))
                payload = encode_payload(job, self.settings.max_payload_bytes)
                fields, unique_while = unique_settings(type(job))
            except DispatchError as exc:
                raise type(exc)(f"bulk() item {index}: {exc}") from exc
            key = None
            if fields is not None:
                key = hash_unique_key(job_name, derived_unique_key(job, fields))
                if key in first:
                    sent.append(first[key])
                    continue
                first[key] = len(columns["queues"])
            sent.append(len(columns["queues"]))
            for name, value in zip(
                names, (queue, job_name, payload, priority, max_tries, key), strict=True
            ):
                columns[name].append(value)
            columns["unique_whiles"].append(None if key is None else unique_while)
        return _UniqueBulkPlan(self._queries["bulk_unique_jobs"], columns, sent, trace_context)

    def _size(self, queue: str) -> _Statement:
        return _Statement(self._queries["queue_size"], {"queue": validate_queue_name(queue)})

    def _clear(self, queue: str) -> _Statement:
        return _Statement(self._queries["clear_queue"], {"queue": validate_queue_name(queue)})

    def _cancel(self, job_id: int) -> _Statement:
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"cancel() takes a job id (an int), got {type(job_id).__name__}")
        return _Statement(
            self._queries["cancel_job"],
            {
                # An id outside bigint names no job; 0 matches none, with no overflow error.
                "id": job_id if 1 <= job_id <= INT8_MAX else 0,
                "exception_class": _CANCELLED_CLASS,
                "channel": self.settings.db_schema,
                "results_channel": results_channel(self.settings.db_schema),
            },
        )

    def _status(self, job_id: int) -> _Statement:
        return _Statement(*status_statement(self._queries, job_id))

    def _wait(self, job_id: int, timeout: float | None, poll: float) -> Any:
        """The wait loop (`pgqueue.results.wait_plan`), its arguments checked before connecting."""
        check_wait(timeout, poll)
        return wait_plan(status_statement(self._queries, job_id), job_id, timeout, poll)

    def _pause(self, queue: str, reason: str | None) -> _Statement:
        return _Statement(
            self._queries["pause_queue"], {"queue": validate_queue_name(queue), "reason": reason}
        )

    def _resume(self, queue: str) -> _Statement:
        return _Statement(
            self._queries["resume_queue"],
            {"queue": validate_queue_name(queue), "channel": self.settings.db_schema},
        )

    def _limit(self, queue: str, concurrency: int | None, rate: str | None) -> _Statement:
        if concurrency is None and rate is None:
            raise ValueError("limit() needs concurrency or rate (clear_limits() removes them)")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency must be a whole number from 1, got {concurrency!r}")
        count, period = (None, None) if rate is None else parse_rate_limit(rate)
        return _Statement(
            self._queries["set_queue_limits"],
            {
                "queue": validate_queue_name(queue),
                "concurrency": concurrency,
                "rate_limit": count,
                "rate_period_seconds": period,
            },
        )

    def _clear_limits(self, queue: str) -> _Statement:
        return _Statement(
            self._queries["clear_queue_limits"], {"queue": validate_queue_name(queue)}
        )


# What failed_jobs.exception_class says of a cancelled job: a stable, public name.
_CANCELLED_CLASS = class_name(JobCancelledError())
# PostgreSQL's bigint, the type of job ids.
INT8_MAX = 2**63 - 1


# run_at bounds: PostgreSQL stores far more, but Python's datetime, with which every pgqueue reader
# loads the time back, ends at years 1 and 9999; a day's margin covers any session time zone.
_EARLIEST_RUN_AT = datetime(1, 1, 2, tzinfo=UTC)
_LATEST_RUN_AT = datetime(9999, 12, 30, tzinfo=UTC)


def _schedule(delay: object, run_at: object) -> tuple[datetime | None, float]:
    """(run_at in UTC, delay in seconds) for dispatch, refusing what PostgreSQL cannot store."""
    if delay is not None and run_at is not None:
        raise InvalidScheduleError("pass either delay= or run_at=, not both")
    if run_at is not None:
        return _run_at(run_at), 0.0
    if isinstance(delay, timedelta):
        seconds: float = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = delay
    else:
        raise InvalidScheduleError(
            f"delay must be seconds (a number) or a timedelta, got {type(delay).__name__}"
        )
    # One comparison refuses negatives, NaN (never in range), infinity and ints of any size.
    if not 0 <= seconds <= MAX_DURATION_SECONDS:
        raise InvalidScheduleError(
            f"delay must be a finite number of seconds >= 0 and at most "
            f"{MAX_DURATION_SECONDS:.0f} (100 years), got {brief_repr(delay)}; for a fixed time pass "
            "run_at="
        )
    return None, float(seconds)


def _run_at(run_at: object) -> datetime:
    if not isinstance(run_at, datetime):
        raise InvalidScheduleError(
            f"run_at must be a timezone-aware datetime, got {type(run_at).__name__}"
        )
    try:
        naive = run_at.utcoffset() is None
        utc = None if naive else run_at.astimezone(UTC)
    except (OverflowError, ValueError) as exc:  # years past 9999 or before 1 once in UTC
        raise InvalidScheduleError(
            f"run_at {_iso(run_at)} cannot be converted to UTC ({exc}); pass a time from "
            f"{_iso(_EARLIEST_RUN_AT)} to {_iso(_LATEST_RUN_AT)}"
        ) from exc
    if utc is None:
        raise InvalidScheduleError(
            f"run_at must be a timezone-aware datetime, got the naive {brief_repr(run_at)}; "
            "add tzinfo, e.g. datetime.now(UTC)"
        )
    if not _EARLIEST_RUN_AT <= utc <= _LATEST_RUN_AT:
        raise InvalidScheduleError(
            f"run_at {_iso(utc)} is outside {_iso(_EARLIEST_RUN_AT)} to {_iso(_LATEST_RUN_AT)}, "
            "the times every pgqueue reader can load back; pass a time within them"
        )
    return utc


def _iso(moment: datetime) -> str:
    try:
        return moment.isoformat()
    except Exception:  # a user's tzinfo whose methods raise must not hide the real error
        return brief_repr(moment)


def _priority(priority: object) -> int:
    """`priority=` as a plain int, refused unless an integer within PostgreSQL's int4."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidPriorityError(
            f"priority must be an integer, got {brief_repr(priority)}; lower runs first"
        )
    if not INT4_MIN <= priority <= INT4_MAX:
        raise InvalidPriorityError(
            f"priority must be from {INT4_MIN} to {INT4_MAX} (PostgreSQL's integer), got "
            f"{brief_repr(priority)}; lower runs first, so small numbers are plenty"
        )
    return int(priority)  # an IntEnum member becomes a plain int


def _unique_params(
    job: Job, job_name: str, unique_key: object, on_conflict: object
) -> dict[str, Any]:
    """The unique statements' parameters: the hashed key and how long it is held."""
    if not isinstance(on_conflict, str) or on_conflict not in _ON_CONFLICT:
        raise InvalidUniqueOptionError(
            f'on_conflict must be "skip" (keep the job holding the key) or "replace" (a queued '
            f"one takes the new payload and run_at), got {brief_repr(on_conflict)}"
        )
    fields, unique_while = unique_settings(type(job))
    if unique_key is not None:
        key = _explicit_key(unique_key)
    elif fields is not None:
        key = derived_unique_key(job, fields)
    else:
        raise InvalidUniqueOptionError(
            f"on_conflict={on_conflict!r} applies to unique jobs, and {type(job).__name__} is not "
            "one: set `unique` on the class, or pass unique_key="
        )
    return {"unique_key": hash_unique_key(job_name, key), "unique_while": unique_while}


def _explicit_key(unique_key: object) -> str:
    if not isinstance(unique_key, str) or not unique_key:
        raise InvalidUniqueOptionError(
            f"unique_key must be a non-empty string, got {brief_repr(unique_key)}; e.g. "
            'unique_key=f"invoice-{invoice.id}"'
        )
    try:
        unique_key.encode()
    except UnicodeEncodeError:
        raise InvalidUniqueOptionError(
            f"unique_key {brief_repr(unique_key)} holds a lone surrogate, which is not valid "
            "Unicode; use plain text"
        ) from None
    return unique_key


class Queue(_QueueBase):
    """Dispatch jobs and read queue sizes, with blocking calls.

    Parameters:
        settings: where and how to connect; read from the environment when None.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._pool: Pool | None = None
        self._pool_lock = threading.Lock()

    def dispatch(
        self,
        job: Job,
        conn: Any = None,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique_key: str | None = None,
        on_conflict: OnConflict = "skip",
    ) -> int:
        """Enqueue `job` and return its id.

        With `conn`, the job is written in that connection's current transaction: it exists if and
        only if the caller commits. Without, it is committed at once. `delay` (seconds or a
        timedelta, counted in database time) or `run_at` schedule it; `priority` and `queue`
        override the class's.

        A unique job (the class's `unique`, or `unique_key=` on any job) is not added while
        another job of its type holds the key: its id comes back instead. `on_conflict="skip"`
        (default) leaves that job as it is; `"replace"` gives it this job's payload and run_at
        if it is still queued (debounce). See docs/unique-jobs.md.
        """
        statement = self._dispatch(job, delay, run_at, priority, queue, unique_key, on_conflict)
        tracer = tracing.tracer()
        if tracer is None:
            job_id = self._insert(statement, conn)
        else:
            with tracing.send_span(tracer, *_destination(statement)) as sending:
                job_id = self._insert(_traced(statement, sending), conn)
                sending.sent(job_id)
        set_identity(job, job_id)
        return job_id

    def _insert(self, statement: _Statement, conn: Any) -> int:
        rows = self._execute(statement, conn)
        for _ in range(_UNIQUE_ROUNDS):
            if rows:
                break
            rows = self._execute(statement, conn)  # the key's holder committed as it waited
        else:
            raise _unsettled()
        job_id: int = rows[0][0]
        return job_id

    def bulk(self, jobs: Iterable[Job], conn: Any = None) -> list[int]:
        """Enqueue many jobs with one COPY, all or nothing; returns their ids in order.

        Like `dispatch`, with `conn` the jobs are written in the caller's transaction. Unique jobs
        are honoured as `dispatch` does with on_conflict="skip": a job whose key is held, in the
        table or earlier in the batch, gets the holder's id (a batch holding any unique job is
        one INSERT ... ON CONFLICT instead of COPY).
        """
        batch = list(jobs)
        if not batch:
            return []
        tracer = tracing.tracer()
        if tracer is None:
            ids = self._send_bulk(self._bulk(batch), conn)
        else:
            with tracing.send_span(tracer, _bulk_destination(batch), count=len(batch)) as sending:
                ids = self._send_bulk(self._bulk(batch, sending.trace_context), conn)
        for job, job_id in zip(batch, ids, strict=True):
            set_identity(job, job_id)
        return ids

    def _send_bulk(self, plan: _BulkPlan | _UniqueBulkPlan, conn: Any) -> list[int]:
        if conn is not None:
            try:
                return _write_bulk(_psycopg_connection(conn), plan)
            except psycopg.Error as exc:
                raise self._database_error(exc) from exc
        with self._get_pool().connection() as own:
            committing = False
            try:
                with own.transaction():
                    ids = _write_bulk(own, plan)
                    committing = True
            except psycopg.Error as exc:
                # Lost before COMMIT was sent: rolled back, nothing enqueued. Lost during it:
                # nobody knows.
                if committing:
                    raise translate_sent(exc, own, self.settings, what="the jobs") from exc
                raise self._database_error(exc) from exc
        return ids

    def size(self, queue: str = "default", conn: Any = None) -> int:
        """How many jobs wait in `queue` (ready or scheduled), not counting running ones."""
        count: int = self._execute(self._size(queue), conn, writes=False)[0][0]
        return count

    def clear(self, queue: str, conn: Any = None) -> int:
        """Delete every job waiting in `queue` (ready or scheduled); return how many.

        Jobs a worker holds (running, or claimed ahead of a free slot) are not touched: they
        finish, and one that fails with tries left returns to the queue. `failed_jobs` is left
        alone (`FailedJobs.flush` empties it). With `conn`, in the caller's transaction.
        """
        count: int = self._execute(self._clear(queue), conn)[0][0]
        return count

    def cancel(self, job_id: int, conn: Any = None) -> bool:
        """Cancel job `job_id`; True if it was queued or running, False if no such job is
        (never dispatched, or already completed, failed or cancelled: nothing is changed).

        A queued job (ready, scheduled or waiting for a retry) moves to `failed_jobs` at once and
        never runs. A running one is stopped by its worker within about a second (an async
        handler is cancelled in place, a blocking handler's process is killed) and then moved to
        `failed_jobs`. Either way its `exception_class` is `pgqueue.errors.JobCancelledError`,
        and `failed()` is not run. Cancelling a job twice is harmless. With `conn`, in the
        caller's transaction (a running job's worker learns of it at commit). It needs the
        worker role's privileges (docs/security.md): the dispatch role cannot cancel.
        """
        # Idempotent, so a pooled connection lost mid-statement may send it again (writes=False).
        return bool(self._execute(self._cancel(job_id), conn, writes=False))

    def status(self, job_id: int, conn: Any = None) -> JobStatus | None:
        """What became of job `job_id` (`pgqueue.results.JobStatus`): queued, scheduled,
        running (with its latest progress), completed (with its result, for types that set
        `keep_result`), failed or cancelled (with the error); None when nothing is known of it
        (never dispatched, completed without `keep_result`, or its record pruned or forgotten).
        With `conn`, read in the caller's transaction. See docs/results.md.
        """
        return status_from_rows(self._execute(self._status(job_id), conn, writes=False))

    def wait(
        self, job_id: int, timeout: float | None = None, *, poll: float = DEFAULT_POLL_SECONDS
    ) -> Any:
        """Block until job `job_id` ends; return its result (see docs/results.md).

        It wakes when the job's worker records the end (a NOTIFY on the results channel), and
        reads the status every `poll` seconds (default 1) as a fallback.

        Returns what `handle` returned, loaded back from JSON, for a type with `keep_result`;
        None for one without, once the job it saw queued or running is gone. Raises
        `JobFailedError` (the id and the error), `JobCancelledError`, `JobNotFoundError` when
        nothing is known of the id at the first read (a job of a type without `keep_result`
        that already completed looks the same: set `keep_result` on types you wait for), and
        `WaitTimeoutError` (a `TimeoutError`) once `timeout` seconds passed (None: no limit).
        It uses a connection of its own (LISTEN needs one), closed when it returns.
        """
        plan = self._wait(job_id, timeout, poll)
        try:
            with connect(self.settings, application_name=WAIT_APPLICATION_NAME) as conn:
                return run_wait(plan, conn, results_channel(self.settings.db_schema), job_id)
        except psycopg.Error as exc:
            raise self._database_error(exc) from exc

    def pause(self, queue: str, conn: Any = None, *, reason: str | None = None) -> bool:
        """Pause `queue`: workers claim none of its jobs from their next claim on, within one
        round trip; jobs already running finish, and jobs a worker claimed ahead of a free slot
        may still start. Other queues flow on. The pause is stored in the database, so it holds
        across worker restarts until `resume`. A queue with no jobs yet can be paused.

        Parameters:
            queue: the queue's name (validated like any queue name).
            conn: write in this connection's transaction (the pause holds once it commits).
            reason: shown by `pgqueue queues`; pausing a paused queue keeps its first time and
                its reason unless a new one is given.

        Returns True if the queue was running until now, False if it was already paused.
        """
        # Idempotent, so a pooled connection lost mid-statement may send it again (writes=False).
        paused: bool = self._execute(self._pause(queue, reason), conn, writes=False)[0][0]
        return paused

    def resume(self, queue: str, conn: Any = None) -> bool:
        """Resume a paused `queue`: workers serving it are woken and claim its ready jobs at
        once. Returns True if it was paused, False if it was not (nothing changes)."""
        return bool(self._execute(self._resume(queue), conn, writes=False))

    def limit(
        self,
        queue: str,
        conn: Any = None,
        *,
        concurrency: int | None = None,
        rate: str | None = None,
    ) -> None:
        """Set runtime limits on `queue` (docs/limits.md), stored in the database: at most
        `concurrency` of its jobs running at once and at most `rate` starts ("N/s", "N/m" or
        "N/h") across all workers, applied from each worker's next claim of the queue. A limit
        not given stays as it was; a job type's own limits apply as well. Raises ValueError for
        a malformed limit."""
        self._execute(self._limit(queue, concurrency, rate), conn, writes=False)

    def clear_limits(self, queue: str, conn: Any = None) -> bool:
        """Remove `queue`'s runtime limits (its pause stays); True if it had a row to clear."""
        return bool(self._execute(self._clear_limits(queue), conn, writes=False))

    def connect(self) -> psycopg.Connection[TupleRow]:
        """A new psycopg connection to the queue's database, for your own transaction.

        The database is the one the worker uses, found the same way: `PGQUEUE_DATABASE_URL`
        (from the environment, a `.env` file or the settings passed in), else the embedded
        PostgreSQL, started if need be. The connection is not autocommit, as psycopg's default,
        and is yours to close: `with queue.connect() as conn, conn.transaction(): ...`. Raises
        `DatabaseUnavailableError` or `DatabaseError`, like dispatch, when it cannot connect.
        """
        return connect(self.settings, application_name=CLIENT_APPLICATION_NAME, autocommit=False)

    def close(self) -> None:
        """Close the pool used for dispatch without `conn=`; connections handed in stay open."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _execute(
        self, statement: _Statement, conn: Any, *, writes: bool = True
    ) -> list[tuple[Any, ...]]:
        """Run `statement` on `conn`, else on a pooled autocommit connection, where it commits.

        On a pooled connection lost mid-statement, a write's outcome is unknown
        (`DispatchOutcomeUnknownError`); a read (`writes=False`) is tried once more.
        """
        if conn is not None:
            try:
                driver = _psycopg_connection(conn)
                return driver.execute(statement.query, statement.params).fetchall()
            except psycopg.Error as exc:
                raise self._database_error(exc) from exc
        for attempt in (1, 2):
            with self._get_pool().connection() as own:
                try:
                    return own.execute(statement.query, statement.params).fetchall()
                except psycopg.Error as exc:
                    if writes:
                        raise translate_sent(exc, own, self.settings, what="the job") from exc
                    if attempt == 2 or not lost(own):
                        raise self._database_error(exc) from exc
        raise AssertionError("unreachable")

    def _get_pool(self) -> Pool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = Pool(
                    self.settings, application_name="pgqueue-dispatch", size=self.settings.pool_size
                )
            return self._pool


class AsyncQueue(_QueueBase):
    """`Queue` for asyncio: the same methods, awaited."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._pool: AsyncPool | None = None

    async def dispatch(
        self,
        job: Job,
        conn: Any = None,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique_key: str | None = None,
        on_conflict: OnConflict = "skip",
    ) -> int:
        """Enqueue `job` and return its id; see `Queue.dispatch`."""
        statement = self._dispatch(job, delay, run_at, priority, queue, unique_key, on_conflict)
        tracer = tracing.tracer()
        if tracer is None:
            job_id = await self._insert(statement, conn)
        else:
            with tracing.send_span(tracer, *_destination(statement)) as sending:
                job_id = await self._insert(_traced(statement, sending), conn)
                sending.sent(job_id)
        set_identity(job, job_id)
        return job_id

    async def _insert(self, statement: _Statement, conn: Any) -> int:
        rows = await self._execute(statement, conn)
        for _ in range(_UNIQUE_ROUNDS):
            if rows:
                break
            rows = await self._execute(statement, conn)  # see Queue._insert
        else:
            raise _unsettled()
        job_id: int = rows[0][0]
        return job_id

    async def bulk(self, jobs: Iterable[Job], conn: Any = None) -> list[int]:
        """Enqueue many jobs with one COPY, all or nothing; returns their ids in order."""
        batch = list(jobs)
        if not batch:
            return []
        tracer = tracing.tracer()
        if tracer is None:
            ids = await self._send_bulk(self._bulk(batch), conn)
        else:
            with tracing.send_span(tracer, _bulk_destination(batch), count=len(batch)) as sending:
                ids = await self._send_bulk(self._bulk(batch, sending.trace_context), conn)
        for job, job_id in zip(batch, ids, strict=True):
            set_identity(job, job_id)
        return ids

    async def _send_bulk(self, plan: _BulkPlan | _UniqueBulkPlan, conn: Any) -> list[int]:
        if conn is not None:
            try:
                return await _write_bulk_async(await _async_psycopg_connection(conn), plan)
            except psycopg.Error as exc:
                raise self._database_error(exc) from exc
        pool = await self._get_pool()
        async with pool.connection() as own:
            committing = False
            try:
                async with own.transaction():
                    ids = await _write_bulk_async(own, plan)
                    committing = True
            except psycopg.Error as exc:
                if committing:  # see Queue._send_bulk
                    raise translate_sent(exc, own, self.settings, what="the jobs") from exc
                raise self._database_error(exc) from exc
        return ids

    async def size(self, queue: str = "default", conn: Any = None) -> int:
        """How many jobs wait in `queue` (ready or scheduled), not counting running ones."""
        count: int = (await self._execute(self._size(queue), conn, writes=False))[0][0]
        return count

    async def clear(self, queue: str, conn: Any = None) -> int:
        """`Queue.clear`, awaited: delete the jobs waiting in `queue`; how many."""
        count: int = (await self._execute(self._clear(queue), conn))[0][0]
        return count

    async def cancel(self, job_id: int, conn: Any = None) -> bool:
        """`Queue.cancel`, awaited: cancel job `job_id`; whether it was queued or running."""
        return bool(await self._execute(self._cancel(job_id), conn, writes=False))

    async def status(self, job_id: int, conn: Any = None) -> JobStatus | None:
        """`Queue.status`, awaited: what became of job `job_id`, or None."""
        rows = await self._execute(self._status(job_id), conn, writes=False)
        return status_from_rows(rows)

    async def wait(
        self, job_id: int, timeout: float | None = None, *, poll: float = DEFAULT_POLL_SECONDS
    ) -> Any:
        """`Queue.wait`, awaited: the result of job `job_id` once it ends, or why it did not
        complete (`JobFailedError`, `JobCancelledError`, `JobNotFoundError`,
        `WaitTimeoutError`)."""
        plan = self._wait(job_id, timeout, poll)
        try:
            async with await connect_async(
                self.settings, application_name=WAIT_APPLICATION_NAME
            ) as conn:
                channel = results_channel(self.settings.db_schema)
                return await run_wait_async(plan, conn, channel, job_id)
        except psycopg.Error as exc:
            raise self._database_error(exc) from exc

    async def pause(self, queue: str, conn: Any = None, *, reason: str | None = None) -> bool:
        """`Queue.pause`, awaited: no new claims from `queue` until `resume`."""
        paused: bool = (await self._execute(self._pause(queue, reason), conn, writes=False))[0][0]
        return paused

    async def resume(self, queue: str, conn: Any = None) -> bool:
        """`Queue.resume`, awaited: True if `queue` was paused."""
        return bool(await self._execute(self._resume(queue), conn, writes=False))

    async def limit(
        self,
        queue: str,
        conn: Any = None,
        *,
        concurrency: int | None = None,
        rate: str | None = None,
    ) -> None:
        """`Queue.limit`, awaited: runtime limits on `queue`."""
        await self._execute(self._limit(queue, concurrency, rate), conn, writes=False)

    async def clear_limits(self, queue: str, conn: Any = None) -> bool:
        """`Queue.clear_limits`, awaited: True if `queue` had a row to clear."""
        return bool(await self._execute(self._clear_limits(queue), conn, writes=False))

    async def connect(self) -> psycopg.AsyncConnection[TupleRow]:
        """`Queue.connect` for asyncio: a new `AsyncConnection` to the queue's database.

        `async with await aqueue.connect() as conn, conn.transaction(): ...`
        """
        return await connect_async(
            self.settings, application_name=CLIENT_APPLICATION_NAME, autocommit=False
        )

    async def close(self) -> None:
        """Close the pool used for dispatch without `conn=`; connections handed in stay open."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _execute(
        self, statement: _Statement, conn: Any, *, writes: bool = True
    ) -> list[tuple[Any, ...]]:
        """`Queue._execute`, awaited."""
        if conn is not None:
            try:
                driver = await _async_psycopg_connection(conn)
                cursor = await driver.execute(statement.query, statement.params)
                return await cursor.fetchall()
            except psycopg.Error as exc:
                raise self._database_error(exc) from exc
        for attempt in (1, 2):
            pool = await self._get_pool()
            async with pool.connection() as own:
                try:
                    cursor = await own.execute(statement.query, statement.params)
                    return await cursor.fetchall()
                except psycopg.Error as exc:
                    if writes:
                        raise translate_sent(exc, own, self.settings, what="the job") from exc
                    if attempt == 2 or not lost(own):
                        raise self._database_error(exc) from exc
        raise AssertionError("unreachable")

    async def _get_pool(self) -> AsyncPool:
        if self._pool is None:
            self._pool = AsyncPool(
                self.settings, application_name="pgqueue-dispatch", size=self.settings.pool_size
            )
        return self._pool


def _destination(statement: _Statement) -> tuple[str, str]:
    """The queue and job type of a single dispatch, for its producer span."""
    return statement.params["queue"], statement.params["job_type"]


def _bulk_destination(batch: Sequence[Job]) -> str | None:
    """The queue every job of `batch` goes to, for the producer span's name; None for several
    (read before the batch is checked, so an item that is no Job counts as another queue)."""
    queues = {getattr(job_class, "queue", None) for job_class in {type(job) for job in batch}}
    only = queues.pop() if len(queues) == 1 else None
    return only if isinstance(only, str) else None


def _traced(statement: _Statement, sending: tracing.Sending) -> _Statement:
    """`statement` storing the producer span's context with its job."""
    return _Statement(statement.query, {**statement.params, "trace_context": sending.trace_context})


def _write_bulk(conn: psycopg.Connection[Any], plan: _BulkPlan | _UniqueBulkPlan) -> list[int]:
    if isinstance(plan, _BulkPlan):
        return _copy_jobs(conn, plan)
    return run_plan(plan.steps(), conn)


async def _write_bulk_async(
    conn: psycopg.AsyncConnection[Any], plan: _BulkPlan | _UniqueBulkPlan
) -> list[int]:
    if isinstance(plan, _BulkPlan):
        return await _copy_jobs_async(conn, plan)
    return await run_plan_async(plan.steps(), conn)


def _copy_jobs(conn: psycopg.Connection[Any], plan: _BulkPlan) -> list[int]:
    """Reserve the ids, then COPY the rows with them: two round trips, on one cursor.

    The ids come back as one binary bigint[], the cheapest form for psycopg to load, and in
    tuples whatever row factory the caller's connection has.
    """
    with conn.cursor(binary=True, row_factory=tuple_row) as cursor:
        ids = _reserved(cursor.execute(plan.reserve.query, plan.reserve.params).fetchone())
        with cursor.copy(plan.copy) as copy:
            for piece in plan.data(ids):
                copy.write(piece)
    return ids


async def _copy_jobs_async(conn: psycopg.AsyncConnection[Any], plan: _BulkPlan) -> list[int]:
    """`_copy_jobs`, awaited."""
    async with conn.cursor(binary=True, row_factory=tuple_row) as cursor:
        await cursor.execute(plan.reserve.query, plan.reserve.params)
        ids = _reserved(await cursor.fetchone())
        async with cursor.copy(plan.copy) as copy:
            for piece in plan.data(ids):
                await copy.write(piece)
    return ids


def _reserved(row: tuple[Any, ...] | None) -> list[int]:
    """The ids in `reserve_job_ids`'s one row (`SELECT ARRAY(...)` always returns one)."""
    assert row is not None
    ids: list[int] = row[0]
    return ids


def _psycopg_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg connection behind `conn` (psycopg itself, Django's connection, or a SQLAlchemy
    Session/Connection)."""
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
    if _is_django(conn):
        conn.ensure_connection()  # Django connects lazily, at its first query
        if isinstance(conn.connection, psycopg.Connection):
            return conn.connection
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
    if (
        isinstance(conn, psycopg.Connection)
        or type(conn).__module__.startswith("sqlalchemy.")
        or _is_django(conn)
    ):
        raise UnsupportedConnectionError(
            f"{type(conn).__name__} is blocking: use Queue to dispatch through it"
        )
    raise UnsupportedConnectionError(_unsupported_message(conn))


def _is_sqlalchemy_async(conn: Any) -> bool:
    return type(conn).__module__.startswith("sqlalchemy.ext.asyncio")


def _is_django(conn: Any) -> bool:
    """Whether `conn` is Django's connection (`django.db.connection` or `connections[alias]`):
    told by its class, not by importing Django, which pgqueue runs without."""
    return hasattr(conn, "ensure_connection") and any(
        cls.__module__.startswith("django.") for cls in type(conn).__mro__
    )


def _unsupported_message(conn: Any) -> str:
    return (
        f"cannot dispatch through a {type(conn).__module__}.{type(conn).__name__}: pass a psycopg 3 "
        "connection, Django's connection on psycopg 3, or a SQLAlchemy "
        "Session/Connection/AsyncSession using the psycopg driver (postgresql+psycopg://)"
    )
