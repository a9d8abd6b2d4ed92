"""The worker: claim, run, complete | retry | fail, with leases, heartbeats, rescue and wake-up.

One asyncio loop per process. Each round trip to PostgreSQL acknowledges the jobs that finished
since the last one and claims as many ready jobs as there are free slots (`claim_jobs`), so a busy
worker pays one commit per batch, not per job. Every claim takes a lease (a token and an expiry in
database time) that a heartbeat renews; every state change compares the token, so a worker that
lost its lease changes nothing. Any worker rescues expired leases on an interval. A dedicated
connection LISTENs for new jobs; `sleep` is the polling fallback.

`failed()` runs before the row moves to `failed_jobs`. A crash between the two leaves the row
leased; once the lease expires it is rescued, claimed again with no tries left, and moved to
`failed_jobs` after `failed()` runs once more: `failed()` runs at least once, like a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import random
import signal
import socket
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from pydantic import ValidationError

from pgqueue.blocking import BlockingCall, BlockingRunner, JobTimeoutError, picklable
from pgqueue.embedded import database_url
from pgqueue.errors import LeaseExpiredError, UnknownJobTypeError
from pgqueue.job import Job, job_type, load_job, retry_delay
from pgqueue.maintenance import prune_failed_jobs_async
from pgqueue.metrics import WorkerMetrics
from pgqueue.settings import Settings
from pgqueue.sql import queries_for

logger = logging.getLogger("pgqueue.worker")

# Errors that say "the database is unreachable or read-only right now", never "this job failed".
_TRANSIENT_ERRORS = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
)
_RECONNECT_MAX_SECONDS = 5.0
_METRIC_OUTCOMES = {"completed": "completed", "retrying": "retried", "failed": "failed"}
# How long a busy worker lets freed slots accumulate before it refills them anyway.
_REFILL_LINGER = 0.002


@dataclass
class WorkerOptions:
    """How a worker runs; the CLI fills it from flags, then the environment.

    Parameters:
        queues: queues to serve, in priority order (default ["default"]).
        concurrency: jobs run at once (default 50; blocking jobs also wait for one of 2 x cores
            child processes).
        sleep: seconds between polls when no notification arrives (default 1).
        max_jobs: stop after claiming this many jobs (default: no limit).
        max_time: stop after this many seconds (default: no limit).
        max_tries: overrides every job's max_tries.
        timeout: overrides every job's timeout, in seconds.
        stop_when_empty: exit once no job is ready and none is running.
        grace: seconds running jobs get to finish after SIGTERM/SIGINT (default 30).
        lease: seconds a claim holds a job without a heartbeat (default 30).
        rescue_interval: seconds between rescues of expired leases (default 10).
        imports: modules whose job types blocking handlers need in their child processes.
        metrics_port: serve Prometheus metrics on this port (default: off).
        cleanup_interval: seconds between prunes of failed_jobs past `Settings.retention` by
            this worker (default: off; `pgqueue cleanup` from a scheduler is the usual way).
        blocking_in_threads: run sync handlers in threads instead of killable child processes
            (pgqueue.testing uses it, so jobs defined in test modules work; timeouts cannot kill).
    """

    queues: Sequence[str] = ("default",)
    concurrency: int = 50
    sleep: float = 1.0
    max_jobs: int | None = None
    max_time: float | None = None
    max_tries: int | None = None
    timeout: float | None = None
    stop_when_empty: bool = False
    grace: float = 30.0
    lease: float = 30.0
    rescue_interval: float = 10.0
    imports: Sequence[str] = ()
    metrics_port: int | None = None
    cleanup_interval: float | None = None
    blocking_in_threads: bool = False


@dataclass
class WorkerSummary:
    """What a worker did, reported at shutdown."""

    worker_id: str
    completed: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0
    rescued: int = 0
    seconds: float = 0.0


@dataclass
class _Claimed:
    id: int
    queue: str
    job_type: str
    payload: dict[str, Any]
    attempts: int
    max_tries: int
    last_error: str | None
    token: uuid.UUID
    started: float = field(default_factory=time.monotonic)


class Worker:
    """One worker process's engine. `await Worker(settings, options).run()` until it stops."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.summary = WorkerSummary(self.id)
        self._queries = queries_for(settings.db_schema)
        self._channel = settings.db_schema
        self._conninfo = ""
        self._conn: psycopg.AsyncConnection[TupleRow] | None = None
        self._running: dict[int, tuple[_Claimed, asyncio.Task[None]]] = {}
        self._done: list[tuple[int, uuid.UUID]] = []
        self._writes: list[tuple[bytes, dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._hard_stop = False
        self._claimed_total = 0
        self._beat_counts = [0, 0]  # completed, failed since the last heartbeat
        # Each blocking job needs a process of its own; more than a few per core only adds start-up
        # cost and memory, so blocking jobs beyond that wait for a free process.
        blocking_processes = min(options.concurrency, 2 * (os.cpu_count() or 2))
        self._blocking = (
            None
            if options.blocking_in_threads
            else BlockingRunner(options.imports, blocking_processes)
        )
        self._metrics = WorkerMetrics() if options.metrics_port is not None else None

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> WorkerSummary:
        """Work until stopped (signal, --max-jobs, --max-time, --stop-when-empty)."""
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.request_stop)
        if self._metrics is not None and self.options.metrics_port is not None:
            self._metrics.slots_total.set(self.options.concurrency)
            self._metrics.serve(self.options.metrics_port)
        self._conninfo = await asyncio.to_thread(database_url, self.settings)
        await self._ensure_connection()
        await self._execute(
            "register_worker",
            {
                "id": self.id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": list(self.options.queues),
                "concurrency": self.options.concurrency,
            },
        )
        logger.info(
            "worker started",
            extra={
                "worker": self.id,
                "queues": ",".join(self.options.queues),
                "concurrency": self.options.concurrency,
            },
        )
        background = [
            asyncio.create_task(self._listen(), name="pgqueue-listen"),
            asyncio.create_task(self._heartbeat(), name="pgqueue-heartbeat"),
        ]
        if self.options.max_time is not None:
            loop.call_later(self.options.max_time, self.request_stop)
        try:
            await self._main_loop()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._shutdown()
            self.summary.seconds = time.monotonic() - started
            logger.info(
                "worker stopped",
                extra={
                    "worker": self.id,
                    "completed": self.summary.completed,
                    "retried": self.summary.retried,
                    "failed": self.summary.failed,
                    "released": self.summary.released,
                    "rescued": self.summary.rescued,
                    "seconds": round(self.summary.seconds, 3),
                },
            )
        return self.summary

    @property
    def stopped_hard(self) -> bool:
        """Whether a second signal cut the drain short."""
        return self._hard_stop

    def request_stop(self) -> None:
        """First call: stop claiming and drain within the grace period. Second: stop hard."""
        if self._stopping:
            if not self._hard_stop:
                logger.warning("second signal: stopping hard", extra={"worker": self.id})
                self._hard_stop = True
                self._cancel_running()
            return
        logger.info(
            "stopping: no new claims, draining running jobs",
            extra={"worker": self.id, "grace_seconds": self.options.grace},
        )
        self._stopping = True
        self._wake.set()
        asyncio.get_running_loop().call_later(self.options.grace, self._cancel_running)

    def _cancel_running(self) -> None:
        for _, task in self._running.values():
            task.cancel()
        self._wake.set()

    # ---- the main loop -------------------------------------------------------------------

    async def _main_loop(self) -> None:
        while True:
            if self._stopping and not self._running:
                return
            # Cleared before the round trip, not after: a NOTIFY or a finished job arriving while
            # the claim is in flight must still wake the wait below.
            self._wake.clear()
            try:
                await self._ensure_connection()
                asked, claimed = await self._tick()
            except _TRANSIENT_ERRORS as exc:
                await self._lost_connection(exc)
                continue
            if (
                self.options.stop_when_empty
                and claimed == 0
                and not self._running
                and not self._done
                and not self._writes
            ):
                self._stopping = True
                continue
            if asked > 0 and claimed == asked:
                # The queue may hold more: refill once enough slots are free to make the next
                # round trip carry a batch of acknowledgements and claims, not one of each.
                await self._wait_for_free_slots()
                continue
            if self._done or self._writes:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.sleep)

    async def _wait_for_free_slots(self) -> None:
        """Wait until every slot is free, or `_REFILL_LINGER` after the first one frees."""
        loop = asyncio.get_running_loop()
        threshold = self.options.concurrency
        deadline: float | None = None
        while not self._stopping and self._free_slots() < threshold:
            if deadline is None and self._free_slots() > 0:
                deadline = loop.time() + _REFILL_LINGER
            timeout = self.options.sleep if deadline is None else deadline - loop.time()
            if timeout <= 0:
                return
            # No await since the check above, so no wake-up can slip between it and this clear.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _tick(self) -> tuple[int, int]:
        """Write pending outcomes, acknowledge finished jobs and claim into free slots."""
        await self._flush_writes()
        limit = self._free_slots()
        if limit == 0:
            if self._done:
                done, self._done = self._done, []
                try:
                    await self._execute("complete_jobs", _done_params(done))
                except BaseException:
                    self._done[:0] = done
                    raise
            return 0, 0
        claimed_now = 0
        for queue in self.options.queues:
            if limit - claimed_now == 0:
                break
            done, self._done = self._done, []
            token = uuid.uuid4()
            claim_started = time.perf_counter()
            try:
                rows = await self._fetch(
                    "claim_jobs",
                    {
                        **_done_params(done),
                        "queue": queue,
                        "limit": limit - claimed_now,
                        "token": token,
                        "lease_seconds": self.options.lease,
                        "worker_id": self.id,
                    },
                )
            except BaseException:
                self._done[:0] = done
                raise
            if self._metrics is not None:
                self._metrics.claim_latency.observe(time.perf_counter() - claim_started)
            for job_id, queue_name, type_name, payload, attempts, max_tries, last_error in rows:
                self._start(
                    _Claimed(
                        job_id,
                        queue_name,
                        type_name,
                        payload,
                        attempts,
                        max_tries,
                        last_error,
                        token,
                    )
                )
            claimed_now += len(rows)
        self._claimed_total += claimed_now
        if self._metrics is not None:
            self._metrics.slots_busy.set(len(self._running))
        if self.options.max_jobs is not None and self._claimed_total >= self.options.max_jobs:
            self._stopping = True
        return limit, claimed_now

    def _free_slots(self) -> int:
        if self._stopping:
            return 0
        free = self.options.concurrency - len(self._running)
        if self.options.max_jobs is not None:
            free = min(free, self.options.max_jobs - self._claimed_total)
        return max(free, 0)

    def _start(self, claimed: _Claimed) -> None:
        task = asyncio.create_task(self._run_job(claimed))
        self._running[claimed.id] = (claimed, task)

    # ---- one job -------------------------------------------------------------------------

    async def _run_job(self, claimed: _Claimed) -> None:
        try:
            await self._attempt(claimed)
        except asyncio.CancelledError:
            # Shutdown took the job back before it finished: it returns to the queue untouched.
            self._writes.append(
                (
                    self._queries["release_jobs"],
                    {"ids": [claimed.id], "tokens": [claimed.token], "channel": self._channel},
                )
            )
            self.summary.released += 1
            self._report(claimed, "released", logging.WARNING)
        except Exception as exc:
            # A fault in pgqueue itself must still end the job visibly, never leave it leased.
            logger.exception("internal error while running a job", extra={"worker": self.id})
            self._fail(claimed, exc, traceback.format_exc(), None)
        finally:
            self._running.pop(claimed.id, None)
            self._wake.set()

    async def _attempt(self, claimed: _Claimed) -> None:
        job_class = job_type(claimed.job_type)
        max_tries = self.options.max_tries or claimed.max_tries
        if job_class is None:
            unknown = UnknownJobTypeError(
                f"no job type named {claimed.job_type!r} is defined by this worker's modules "
                "(--app / PGQUEUE_IMPORTS); it was not run"
            )
            self._fail(claimed, unknown, "", None)
            return
        try:
            job = load_job(job_class, claimed.payload, claimed.id, claimed.attempts)
        except ValidationError as exc:
            self._fail(claimed, exc, traceback.format_exc(), None)
            return
        if claimed.attempts > max_tries:
            # The last try was lost with its worker (lease expired): no try is left to run.
            lost = LeaseExpiredError(claimed.last_error or "the worker running it was lost")
            await self._give_up(claimed, job, lost, "", claimed.attempts - 1)
            return
        timeout = self.options.timeout or job_class.timeout
        error, formatted = await self._call(job, "handle", timeout, None)
        if error is None:
            self._done.append((claimed.id, claimed.token))
            self.summary.completed += 1
            self._beat_counts[0] += 1
            self._report(claimed, "completed")
        elif claimed.attempts < max_tries:
            delay = retry_delay(job_class.retry_after, claimed.attempts)
            self._writes.append(
                (
                    self._queries["retry_job"],
                    {
                        "id": claimed.id,
                        "token": claimed.token,
                        "delay": delay,
                        "error": _describe(error),
                    },
                )
            )
            self.summary.retried += 1
            self._report(
                claimed, "retrying", logging.WARNING, error=error, retry_in=round(delay, 3)
            )
        else:
            await self._give_up(claimed, job, error, formatted, claimed.attempts)

    async def _call(
        self, job: Job, method: str, timeout: float, exc: BaseException | None
    ) -> tuple[BaseException | None, str]:
        return await call_job(job, method, timeout, exc, self._blocking)

    async def _give_up(
        self,
        claimed: _Claimed,
        job: Job,
        error: BaseException,
        formatted: str,
        attempts: int,
    ) -> None:
        timeout = self.options.timeout or type(job).timeout
        hook_error, hook_traceback = await self._call(job, "failed", timeout, error)
        if hook_error is not None:
            self._report(claimed, "failed() raised", logging.ERROR, error=hook_error)
            formatted += f"\nWhile running failed():\n{hook_traceback or _describe(hook_error)}"
        self._fail(claimed, error, formatted, attempts)

    def _fail(
        self,
        claimed: _Claimed,
        error: BaseException,
        formatted: str,
        attempts: int | None,
    ) -> None:
        self._writes.append(
            (
                self._queries["fail_job"],
                {
                    "id": claimed.id,
                    "token": claimed.token,
                    "attempts": claimed.attempts if attempts is None else attempts,
                    "exception_class": _class_name(error),
                    "exception_message": str(error),
                    "traceback": formatted,
                    "worker_id": self.id,
                },
            )
        )
        self.summary.failed += 1
        self._beat_counts[1] += 1
        self._report(claimed, "failed", logging.ERROR, error=error)

    # ---- talking to PostgreSQL -----------------------------------------------------------

    async def _flush_writes(self) -> None:
        while self._writes:
            query, params = self._writes[0]
            await self._conn_or_raise().execute(query, params)
            self._writes.pop(0)

    async def _execute(self, name: str, params: dict[str, Any]) -> None:
        await self._conn_or_raise().execute(self._queries[name], params)

    async def _fetch(self, name: str, params: dict[str, Any]) -> list[TupleRow]:
        cursor = await self._conn_or_raise().execute(self._queries[name], params)
        return await cursor.fetchall()

    def _conn_or_raise(self) -> psycopg.AsyncConnection[TupleRow]:
        if self._conn is None or self._conn.closed:
            raise psycopg.OperationalError("the worker's connection is closed")
        return self._conn

    async def _ensure_connection(self) -> None:
        if self._conn is not None and not self._conn.closed:
            return
        # The worker's own writes (claims, acknowledgements, retries, moves to failed_jobs) need
        # not wait for a WAL flush: if PostgreSQL crashes and loses the last of them, the job just
        # runs again (delivery is at least once) and no job is lost. Dispatch is not affected.
        options = "" if self.settings.worker_synchronous_commit else "-c synchronous_commit=off"
        self._conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name="pgqueue-worker", options=options
        )

    async def _lost_connection(self, exc: BaseException) -> None:
        """Drop the broken connection and reconnect with capped, jittered backoff."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        delay = 0.05
        while not self._hard_stop:
            logger.warning(
                "database unavailable, reconnecting",
                extra={"worker": self.id, "error": _one_line(exc), "retry_in": round(delay, 3)},
            )
            await asyncio.sleep(delay)
            try:
                await self._ensure_connection()
                logger.info("database connection restored", extra={"worker": self.id})
                return
            except _TRANSIENT_ERRORS as again:
                exc = again
                delay = min(delay * 2, _RECONNECT_MAX_SECONDS) * random.uniform(0.8, 1.0)  # noqa: S311

    async def _listen(self) -> None:
        """Wake the main loop on NOTIFY for our queues; reconnect forever if the link drops."""
        queues = set(self.options.queues)
        delay = 0.05
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name="pgqueue-listener"
                ) as listener:
                    await listener.execute(
                        sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
                    )
                    delay = 0.05
                    self._wake.set()  # jobs may have arrived while we were not listening
                    async for notification in listener.notifies():
                        if notification.payload in queues:
                            self._wake.set()
            except _TRANSIENT_ERRORS as exc:
                logger.warning(
                    "listener lost, polling until it is back",
                    extra={"worker": self.id, "error": _one_line(exc)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_SECONDS)

    async def _heartbeat(self) -> None:
        """Renew our leases, refresh our workers row, and rescue expired leases on an interval."""
        interval = max(self.options.lease / 3, 0.1)
        next_rescue = time.monotonic() + random.uniform(0, self.options.rescue_interval)  # noqa: S311
        cleanup = self.options.cleanup_interval
        next_cleanup = time.monotonic() + random.uniform(0, cleanup) if cleanup else None  # noqa: S311
        pruning: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(interval)
            if next_cleanup is not None and cleanup and time.monotonic() >= next_cleanup:
                if pruning is None or pruning.done():
                    pruning = asyncio.create_task(self._prune_failed_jobs(), name="pgqueue-prune")
                next_cleanup = time.monotonic() + cleanup
            try:
                await self._beat()
                if time.monotonic() >= next_rescue:
                    await self._rescue()
                    next_rescue = time.monotonic() + self.options.rescue_interval
            except _TRANSIENT_ERRORS:
                continue  # the main loop reconnects; leases survive a short outage

    async def _prune_failed_jobs(self) -> None:
        """Prune failed_jobs past retention on a connection of its own, in short batches, so the
        heartbeat and the claims never wait for it. Concurrent prunes by other workers are harmless."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, application_name="pgqueue-cleanup"
            ) as conn:
                pruned = await prune_failed_jobs_async(
                    conn, self.settings.retention, schema=self.settings.db_schema
                )
        except _TRANSIENT_ERRORS as exc:
            logger.warning("cleanup skipped", extra={"worker": self.id, "error": _one_line(exc)})
            return
        logger.info("pruned failed jobs", extra={"worker": self.id, "count": pruned})

    async def _beat(self) -> None:
        running = [claimed for claimed, _ in self._running.values()]
        if running:
            await self._execute(
                "renew_leases",
                {
                    "ids": [c.id for c in running],
                    "tokens": [c.token for c in running],
                    "lease_seconds": self.options.lease,
                },
            )
        if self._metrics is not None:
            rows = await self._fetch("queue_depths", {"queues": list(self.options.queues)})
            depths: dict[str, int] = {str(queue): int(count) for queue, count in rows}
            for queue in self.options.queues:
                self._metrics.queue_depth.labels(queue).set(depths.get(queue, 0))
        completed, failed = self._beat_counts
        self._beat_counts = [0, 0]
        try:
            await self._execute(
                "worker_heartbeat", {"id": self.id, "completed": completed, "failed": failed}
            )
        except BaseException:
            self._beat_counts[0] += completed
            self._beat_counts[1] += failed
            raise

    async def _rescue(self) -> None:
        rows = await self._fetch("rescue_expired_leases", {"limit": 1000, "channel": self._channel})
        for queue, count, _ in rows:
            self.summary.rescued += count
            if self._metrics is not None:
                self._metrics.rescued.labels(queue).inc(count)
            logger.warning(
                "rescued jobs with expired leases",
                extra={"worker": self.id, "queue": queue, "count": count},
            )
        await self._execute(
            "prune_workers", {"older_than_seconds": max(self.options.lease * 10, 3600)}
        )

    async def _shutdown(self) -> None:
        """Write what is pending (outcomes, releases, acks), unregister, close."""
        self._cancel_running()
        if self._running:
            await asyncio.gather(
                *(task for _, task in self._running.values()), return_exceptions=True
            )
        if self._blocking is not None:
            self._blocking.close()
        deadline = time.monotonic() + (2.0 if self._hard_stop else 15.0)
        while time.monotonic() < deadline:
            try:
                await self._ensure_connection()
                await self._flush_writes()
                if self._done:
                    await self._execute("complete_jobs", _done_params(self._done))
                    self._done = []
                await self._execute("unregister_worker", {"id": self.id})
                break
            except _TRANSIENT_ERRORS as exc:
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        await self._conn.close()
                self._conn = None
                logger.warning(
                    "could not write final outcomes yet",
                    extra={"worker": self.id, "error": _one_line(exc)},
                )
                await asyncio.sleep(0.2)
        if self._conn is not None:
            await self._conn.close()

    def _report(
        self,
        claimed: _Claimed,
        outcome: str,
        level: int = logging.INFO,
        error: BaseException | None = None,
        **fields: Any,
    ) -> None:
        """Log one outcome line and count it in the metrics."""
        seconds = time.monotonic() - claimed.started
        if self._metrics is not None and outcome in _METRIC_OUTCOMES:
            labels = (claimed.queue, claimed.job_type)
            self._metrics.jobs.labels(*labels, _METRIC_OUTCOMES[outcome]).inc()
            self._metrics.duration.labels(*labels).observe(seconds)
        if not logger.isEnabledFor(level):
            return
        extra: dict[str, Any] = {
            "job_id": claimed.id,
            "job_type": claimed.job_type,
            "queue": claimed.queue,
            "attempt": claimed.attempts,
            "duration_ms": round(seconds * 1000, 2),
            "worker": self.id,
            **fields,
        }
        if error is not None:
            extra["error"] = _describe(error)
        logger.log(level, outcome, extra=extra)


async def call_job(
    job: Job,
    method: str,
    timeout: float,
    exc: BaseException | None,
    blocking: BlockingRunner | None,
) -> tuple[BaseException | None, str]:
    """Run `job.handle()` or `job.failed(exc)` within `timeout`; return (error, traceback).

    An async method runs on the loop and is cancelled at the timeout. A sync one runs in one of
    `blocking`'s child processes, killed at the timeout; with `blocking=None` (pgqueue.testing) it
    runs in a thread instead, which a timeout reports but cannot stop.
    """
    function = getattr(job, method)
    is_async = _is_async(type(job), method)
    if is_async or blocking is None:
        try:
            # asyncio.timeout cancels in place: no extra task per job, unlike wait_for.
            async with asyncio.timeout(timeout):
                if is_async:
                    await (function() if exc is None else function(exc))
                else:
                    await asyncio.to_thread(*((function,) if exc is None else (function, exc)))
        except TimeoutError:
            return JobTimeoutError(f"{method}() ran past its {timeout:g} s timeout"), ""
        except asyncio.CancelledError:
            raise
        except Exception as error:
            return error, traceback.format_exc()
        return None, ""
    assert job.job_id is not None
    result = await blocking.run(
        BlockingCall(
            type(job).job_name,
            job.model_dump(mode="json"),
            job.job_id,
            job.attempts,
            "handle" if exc is None else "failed",
            None if exc is None else picklable(exc),
        ),
        timeout,
    )
    return result.error, result.traceback


@functools.cache
def _is_async(job_class: type[Job], method: str) -> bool:
    return inspect.iscoroutinefunction(getattr(job_class, method))


def _done_params(done: list[tuple[int, uuid.UUID]]) -> dict[str, Any]:
    return {"done_ids": [job_id for job_id, _ in done], "done_tokens": [t for _, t in done]}


def _class_name(error: BaseException) -> str:
    cls = type(error)
    return getattr(error, "class_name", None) or f"{cls.__module__}.{cls.__qualname__}"


def _describe(error: BaseException) -> str:
    return f"{_class_name(error)}: {error}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
