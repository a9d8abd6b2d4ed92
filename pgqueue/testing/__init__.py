"""Helpers for testing code that uses pgqueue, in your own test suite.

- `run_job(job)`: run one job in process as a worker would (validation through a JSON round trip,
  `timeout`, retries up to `max_tries` as `retry_on`/`fail_on` allow, then `failed()`; a `Snooze`
  ends the run; a `keep_result` type's return value must be storable as JSON), with no database,
  and return what happened: the outcome, the result and the last progress reported.
- `drain(settings)`: run every ready job of some queues with a real worker on the real database,
  then return the counts, so a test can dispatch, drain and assert.
- `pgqueue.testing.pytest_plugin`: fixtures for a migrated, throwaway database
  (`pytest_plugins = ["pgqueue.testing.pytest_plugin"]` in your conftest.py).

Unlike a worker, these run blocking (`def`) handlers in a thread, so jobs defined in test modules
work; a timeout is reported but cannot stop the thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pgqueue.job import (
    Job,
    ProgressReport,
    encode_payload,
    load_job,
    reported_progress,
    stored_result,
)
from pgqueue.outcome import Snoozed, after_error
from pgqueue.settings import Settings
from pgqueue.worker import Worker, WorkerOptions, WorkerSummary, call_job

__all__ = ["JobRun", "adrain", "arun_job", "drain", "run_job"]


@dataclass
class JobRun:
    """What happened to one job run by `run_job`.

    Attributes:
        outcome: "completed"; "failed" once no try was left or an error was not one to retry
            (`failed()` was then called); or "snoozed": `handle` raised `Snooze`, which a
            worker would run again after `snoozed_for` seconds.
        attempts: tries spent (a snoozed attempt spends none, as in a worker).
        errors: the exception of each failed try, in order.
        retry_delays: the seconds a worker would have waited before each retry.
        failed_error: what `failed()` itself raised, if it did.
        snoozed_for: the seconds of the `Snooze` that ended the run, if one did.
        result: what `handle` returned in the completed attempt. For a type with `keep_result`
            it is what `queue.status(...).result` and `wait` would give: the value through JSON
            and back (a tuple becomes a list, a datetime its ISO text); a value that cannot be
            kept fails the attempt with `InvalidResultError`, without a retry, as in a worker.
            For other types, the value as returned (a worker ignores it).
        progress: the last (fraction, message) `self.progress()` reported in the last attempt,
            or None.
    """

    outcome: Literal["completed", "failed", "snoozed"]
    attempts: int
    errors: list[BaseException] = field(default_factory=list)
    retry_delays: list[float] = field(default_factory=list)
    failed_error: BaseException | None = None
    snoozed_for: float | None = None
    result: Any = None
    progress: ProgressReport | None = None


async def arun_job(
    job: Job,
    *,
    max_tries: int | None = None,
    timeout: float | None = None,
    max_payload_bytes: int = 64 * 1024,
) -> JobRun:
    """`run_job` for async tests."""
    job_class = type(job)
    # The same checks and round trip as dispatch and a worker's load: what cannot be stored fails.
    payload = json.loads(encode_payload(job, max_payload_bytes))
    tries = max_tries or job_class.max_tries
    limit = timeout or job_class.timeout
    run = JobRun("failed", 0)
    for attempt in range(1, tries + 1):
        loaded = load_job(job_class, payload, job.job_id or 0, attempt)
        run.attempts = attempt
        returned: list[Any] = []
        error, _ = await call_job(loaded, "handle", limit, None, None, returned=returned)
        run.progress = reported_progress(loaded)
        if error is None:
            run.outcome = "completed"
            kept = stored_result(loaded)
            run.result = json.loads(kept[0]) if kept is not None else returned[-1]
            return run
        after = after_error(job_class, error, attempt, tries)
        if isinstance(after, Snoozed):
            run.outcome, run.attempts, run.snoozed_for = "snoozed", attempt - 1, after.seconds
            return run
        run.errors.append(error)
        if after is None:
            break
        run.retry_delays.append(after)
    run.failed_error, _ = await call_job(loaded, "failed", limit, run.errors[-1], None)
    return run


def run_job(
    job: Job,
    *,
    max_tries: int | None = None,
    timeout: float | None = None,
    max_payload_bytes: int = 64 * 1024,
) -> JobRun:
    """Run `job` in process as a worker would, retrying at once instead of after `retry_after`.

    A `Snooze` ends the run with outcome "snoozed" (a worker would run the job again later).

    Parameters:
        max_tries: overrides the class's `max_tries` (like `pgqueue work --max-tries`).
        timeout: overrides the class's `timeout`, in seconds.
        max_payload_bytes: the dispatch size limit to check against (default 64 KiB).
    """
    return asyncio.run(
        arun_job(job, max_tries=max_tries, timeout=timeout, max_payload_bytes=max_payload_bytes)
    )


async def adrain(
    settings: Settings,
    queues: Sequence[str] = ("default",),
    *,
    concurrency: int = 10,
    max_tries: int | None = None,
) -> WorkerSummary:
    """`drain` for async tests."""
    options = WorkerOptions(
        queues=queues,
        concurrency=concurrency,
        sleep=0.05,
        max_tries=max_tries,
        stop_when_empty=True,
        grace=0,
        blocking_in_threads=True,
    )
    return await Worker(settings, options).run()


def drain(
    settings: Settings,
    queues: Sequence[str] = ("default",),
    *,
    concurrency: int = 10,
    max_tries: int | None = None,
) -> WorkerSummary:
    """Run every job ready in `queues` with a real worker, until none is ready or running.

    Retried jobs are scheduled for later as usual and left in the queue; the returned summary
    counts what was completed, retried and failed. Job types must be defined (imported) in the
    test process.
    """
    return asyncio.run(adrain(settings, queues, concurrency=concurrency, max_tries=max_tries))
