"""What became of a job: `JobStatus`, the status read, and `wait` (docs/results.md).

A job lives in one of three tables, and its status says which (one statement, `job_status`, a
primary-key lookup in each):

- `jobs`: queued (ready), scheduled (`run_at` in the future: a delay or a retry's backoff) or
  running (leased: running, or claimed ahead of a free slot), with its latest progress;
- `job_results`: completed, for job types that set `keep_result`, until `pgqueue cleanup` prunes
  the row after `keep_until`;
- `failed_jobs`: failed, or cancelled (`exception_class` is `pgqueue.errors.JobCancelledError`).

A completed job whose type keeps no result leaves no row, so its status is None, as for an id
that never existed: nothing is kept.

`wait` reads the status, then waits for a NOTIFY on the results channel (`results_channel`,
payload the job id: sent by the statements that end a kept, failed or cancelled job) or for its
poll interval, whichever comes first, and reads again, until the job has ended or the timeout
passes. The notification only says "look again": the status read decides, so a lost or forged
notification costs at most one poll. The loop is one generator (`wait_plan`), run on a blocking
connection by `run_wait` and on an asyncio one by `run_wait_async`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from pgqueue.errors import (
    InvalidResultError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    WaitTimeoutError,
)
from pgqueue.sql import Rows, Statement

JobState = Literal["queued", "scheduled", "running", "completed", "failed", "cancelled"]
# The states after which nothing more happens to a job (unless a failed one is retried by hand).
ENDED_STATES: frozenset[JobState] = frozenset({"completed", "failed", "cancelled"})
# What failed_jobs.exception_class says of a cancelled job (JobCancelledError's stored name).
CANCELLED_CLASS = f"{JobCancelledError.__module__}.{JobCancelledError.__qualname__}"
# PostgreSQL's bigint, the type of job ids.
_INT8_MAX = 2**63 - 1
# A NOTIFY channel is an identifier: at most 63 bytes (schema names are ASCII, see Settings).
_MAX_CHANNEL_BYTES = 63
_RESULTS_SUFFIX = ":results"
# How often `wait` reads the status when no notification comes (a completed job whose type keeps
# no result sends none).
DEFAULT_POLL_SECONDS = 1.0


def results_channel(schema: str) -> str:
    """The channel told of each kept, failed or cancelled job (payload: its id): `<schema>:results`,
    apart from the workers' wake-up channel (the schema's name), so results wake no worker. A
    schema name too long for it is cut: two schemas sharing a long prefix share the channel, which
    only costs their waiters a look at a status that did not change."""
    return schema[: _MAX_CHANNEL_BYTES - len(_RESULTS_SUFFIX)] + _RESULTS_SUFFIX


@dataclass(frozen=True)
class JobStatus:
    """Where a job is and what became of it (`queue.status(job_id)`).

    Attributes:
        id: the job's id.
        state: "queued" (ready to run), "scheduled" (waiting for its `run_at`: a delay or a
            retry's backoff), "running" (a worker holds it: running, or claimed ahead of a free
            slot), "completed" (only for types with `keep_result`), "failed" or "cancelled".
        attempts: tries started so far (for an ended job, the tries it took).
        progress: what `self.progress()` last reported in the current attempt, 0 to 1; None
            if it reported nothing (and once the job has ended).
        progress_message: the message reported with it, or None.
        result: what `handle` returned, loaded back from JSON (a tuple comes back a list, a
            datetime as text); None unless completed.
        error: "ExceptionClass: message" of a failed or cancelled job, or of the last failed
            attempt of a job waiting for its retry; else None.
        enqueued_at: when it was dispatched.
        started_at: when its latest attempt was claimed; None before the first.
        finished_at: when it completed, failed or was cancelled; None while it has not.
        queue: its queue.
        job_type: its stored type name (`job_name`).
    """

    id: int
    state: JobState
    attempts: int
    progress: float | None
    progress_message: str | None
    result: Any
    error: str | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue: str
    job_type: str

    @property
    def ended(self) -> bool:
        """Whether the job completed, failed or was cancelled."""
        return self.state in ENDED_STATES

    def to_json(self) -> dict[str, Any]:
        """The status as a JSON-ready dict, times in ISO 8601 (`pgqueue status --json`)."""
        return {
            "id": self.id,
            "state": self.state,
            "queue": self.queue,
            "job_type": self.job_type,
            "attempts": self.attempts,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "result": self.result,
            "error": self.error,
            "enqueued_at": self.enqueued_at.isoformat(),
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
        }


def status_statement(queries: dict[str, bytes], job_id: int) -> Statement:
    """The `job_status` statement for `job_id`, refusing an id that is not an int."""
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise TypeError(f"a job id is an int, got {type(job_id).__name__}")
    return Statement(
        queries["job_status"],
        # An id outside bigint names no job; 0 matches none, with no overflow error.
        {"id": job_id if 1 <= job_id <= _INT8_MAX else 0, "cancelled_class": CANCELLED_CLASS},
    )


def status_from_rows(rows: Rows) -> JobStatus | None:
    """The `JobStatus` in `job_status`'s rows (none: nothing is known of the job)."""
    if not rows:
        return None
    (
        job_id,
        state,
        queue,
        job_type,
        attempts,
        progress,
        progress_message,
        result_text,
        exception_class,
        exception_message,
        enqueued_at,
        started_at,
        finished_at,
    ) = rows[0]
    error = None
    if exception_class is not None:
        error = f"{exception_class}: {exception_message}" if exception_message else exception_class
    elif exception_message:  # jobs.last_error, already "Class: message"
        error = exception_message
    return JobStatus(
        id=int(job_id),
        state=state,
        attempts=int(attempts),
        progress=None if progress is None else float(progress),
        progress_message=progress_message,
        result=None if result_text is None else _load_result(int(job_id), result_text),
        error=error,
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        queue=queue,
        job_type=job_type,
    )


def _load_result(job_id: int, text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # a row written by hand, past what json loads
        raise InvalidResultError(
            f"the stored result of job {job_id} cannot be loaded: {exc}"
        ) from None


@dataclass(frozen=True)
class Listen:
    """A `wait_plan` step: wait up to `seconds` for a notification naming the job (sent nothing)."""

    seconds: float


WaitPlan = Generator[Statement | Listen, Rows | None, Any]


def check_wait(timeout: float | None, poll: float) -> None:
    """Refuse a `timeout` or `poll` that is not a finite number of seconds (ValueError)."""
    for name, value, allow_none in (("timeout", timeout, True), ("poll", poll, False)):
        if value is None and allow_none:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (name == "poll" and value == 0)
        ):
            bound = ">= 0, or None to wait as long as it takes" if allow_none else "> 0"
            raise ValueError(f"wait() takes {name} as seconds {bound}, got {value!r}")


def wait_plan(statement: Statement, job_id: int, timeout: float | None, poll: float) -> WaitPlan:
    """Read the status until the job ends; return its result or raise why it did not complete.

    Returns the result of a completed job (None for a type without `keep_result`: the job was
    seen, then its row went with nothing kept). Raises JobFailedError, JobCancelledError,
    JobNotFoundError (nothing is known of the id at the first read), or WaitTimeoutError once
    `timeout` seconds have passed with the job still queued, scheduled or running.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: JobStatus | None = None
    while True:
        rows = yield statement
        assert rows is not None
        status = status_from_rows(rows)
        if status is None:
            if seen is None:
                raise JobNotFoundError(
                    f"no job {job_id} is known: never dispatched, or it ended and nothing of it "
                    "is kept (its type sets no keep_result, or its record was pruned or "
                    "forgotten)"
                )
            return None  # it completed, and its type keeps no result
        seen = status
        if status.state == "completed":
            return status.result
        if status.state in ("failed", "cancelled"):
            raise _ended_error(status, rows[0][8], rows[0][9])
        remaining = poll if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeoutError(
                f"job {job_id} is still {status.state} after waiting {timeout:g} s; wait again, "
                "or pass a longer timeout="
            )
        yield Listen(min(poll, remaining))


def _ended_error(status: JobStatus, exception_class: str, message: str | None) -> Exception:
    if status.state == "cancelled":
        return JobCancelledError(f"job {status.id} was cancelled: {message or 'no reason given'}")
    return JobFailedError(status.id, exception_class, message or "")


def run_wait(plan: WaitPlan, conn: psycopg.Connection[Any], channel: str, job_id: int) -> Any:
    """Run `plan` on `conn`, an autocommit connection of its own that LISTENs on `channel`."""
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    wanted = str(job_id)
    try:
        step = next(plan)
        while True:
            if isinstance(step, Listen):
                for notification in conn.notifies(timeout=step.seconds):
                    if notification.payload == wanted:
                        break
                step = plan.send(None)
            else:
                step = plan.send(conn.execute(step.query, step.params).fetchall())
    except StopIteration as done:
        return done.value


async def run_wait_async(
    plan: WaitPlan, conn: psycopg.AsyncConnection[Any], channel: str, job_id: int
) -> Any:
    """`run_wait` on an asyncio connection."""
    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    wanted = str(job_id)
    try:
        step = next(plan)
        while True:
            if isinstance(step, Listen):
                async for notification in conn.notifies(timeout=step.seconds):
                    if notification.payload == wanted:
                        break
                step = plan.send(None)
            else:
                cursor = await conn.execute(step.query, step.params)
                step = plan.send(await cursor.fetchall())
    except StopIteration as done:
        return done.value
