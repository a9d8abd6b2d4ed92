"""The worker: claim, run, complete | retry | fail, with leases, heartbeats, rescue and wake-up.

One asyncio loop per process. Each round trip to PostgreSQL acknowledges the jobs that finished
since the last one and claims as many ready jobs as there are free slots (`claim_jobs`), so a busy
worker pays one commit per batch, not per job. Every claim takes a lease (a token and an expiry in
database time) that a heartbeat renews; every state change compares the token, so a worker that
lost its lease changes nothing, and the number of rows each write changed says whether it did.

An attempt returns an outcome value (`pgqueue.outcome`); `_complete` alone turns outcomes into
writes, and `_confirm` alone turns what those writes changed into counters, metrics and log lines.

Nothing a row or a handler holds can stop the worker: each claimed row is decoded and validated on
its own (a bad one ends in failed_jobs as `InvalidPayloadError`), any exception a handler raises is
described safely (`outcome.report_error`), and the side services (listener, heartbeat, rescue,
prune) are supervised: one that fails unexpectedly is logged and restarted with backoff. A job
whose lease this worker can no longer vouch for (the heartbeat found it gone, or no renewal
succeeded for a whole lease) is cancelled in place: another worker may be running it.

`failed()` runs before the row moves to `failed_jobs`, and only after the worker has confirmed it
still holds the lease. A crash between the two leaves the row leased; once the lease expires it is
rescued, claimed again with no tries left, and moved to `failed_jobs` after `failed()` runs once
more: `failed()` runs at least once, like a job.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import importlib
import inspect
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pydantic
from psycopg import sql
from psycopg.rows import TupleRow

from pgqueue import tracing
from pgqueue.blocking import BlockingCall, BlockingRunner, picklable
from pgqueue.connection import connect_async, translate
from pgqueue.errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    InvalidPayloadError,
    InvalidQueueNameError,
    JobCancelledError,
    JobTimeoutError,
    LeaseExpiredError,
    PgQueueError,
    UnknownJobTypeError,
)
from pgqueue.job import (
    MAX_PROGRESS_MESSAGE_CHARS,
    Job,
    JobLimits,
    ProgressReport,
    job_limits,
    job_type,
    load_job,
    record_progress,
    registered_job_types,
    reported_progress,
    store_encoded_result,
    store_result,
    validate_queue_name,
)
from pgqueue.maintenance import (
    prune_failed_jobs_async,
    prune_job_results_async,
    prune_queue_throughput_async,
    rescue_expired_leases_async,
)
from pgqueue.metrics import WorkerMetrics, metrics_url
from pgqueue.outcome import (
    Cancelled,
    Completed,
    ErrorReport,
    Failed,
    Lost,
    Outcome,
    Released,
    Retry,
    Snoozed,
    after_error,
    clean_text,
    completed,
    report_error,
    safe_str,
)
from pgqueue.results import results_channel
from pgqueue.settings import Settings
from pgqueue.sql import queries_for
from pgqueue.stats import read_stats_async
from pgqueue.supervisor import notify_ready

logger = logging.getLogger("pgqueue.worker")

# Errors that say "the database is unreachable or read-only right now", never "this job failed".
_TRANSIENT_ERRORS = (
    DatabaseUnavailableError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
)
# How often a busy worker logs its `progress` line (a line per completed job is DEBUG).
PROGRESS_INTERVAL_SECONDS = 10.0
# The outcome counts a `progress` line gives, each for the time since the line before.
_PROGRESS_COUNTS = ("completed", "retried", "snoozed", "failed", "cancelled", "lost")
# Reconnect backoff: starts small so a blip costs little, grows across consecutive failures.
RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 5.0
# How long a busy worker lets freed slots accumulate before it refills them anyway.
_REFILL_LINGER = 0.002
# A limited claim looks at this many ready jobs per job it may claim, so a run of held-back jobs
# at the head of a queue does not hide the claimable ones behind it (docs/limits.md).
_LIMITED_SCAN_FACTOR = 4


# The most jobs a worker claims ahead of its slots: PREFETCH_CAP_PER_SLOT x concurrency, and at
# least PREFETCH_MIN_CAP, so that even one slot keeps up with no-op jobs.
PREFETCH_CAP_PER_SLOT = 8
PREFETCH_MIN_CAP = 200


class Prefetch:
    """How many jobs to claim ahead of the free slots, learnt from what the worker does.

    Enough that the slots never run dry while the next claim is in flight (twice the jobs the
    slots start during one claim's round trip), and none for slow jobs: a job claimed ahead is
    leased, so it waits here while another worker might have run it. After each claim `observe`
    sets the size from the start rate and the round trip since the last claim; slots that ran dry
    while a claim was in flight double it at once (from at least `concurrency`).
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.cap = max(PREFETCH_CAP_PER_SLOT * concurrency, PREFETCH_MIN_CAP)
        self.size = 0
        self._rate = 0.0  # jobs started per second, smoothed
        self._round_trip = 0.0  # seconds per claim, smoothed

    @property
    def capacity(self) -> int:
        """Jobs the worker may hold: its slots plus the buffer ahead of them."""
        return self.concurrency + self.size

    @property
    def threshold(self) -> int:
        """Free places worth a claim of their own while jobs keep coming: half the capacity, so
        a busy worker claims in batches and still has work for the claim's round trip."""
        return max(1, self.capacity // 2)

    def observe(self, started: int, seconds: float, round_trip: float, starved: bool) -> None:
        """After a claim that took `round_trip` s: `started` jobs started in the `seconds` since
        the last one; `starved` if slots stood empty waiting for it."""
        if seconds > 0:
            self._rate = 0.5 * self._rate + 0.5 * (started / seconds)
        self._round_trip = (
            round_trip if not self._round_trip else (0.5 * self._round_trip + 0.5 * round_trip)
        )
        wanted = round(2 * self._rate * self._round_trip)
        if starved:
            wanted = max(wanted, 2 * self.size, self.concurrency)
        self.size = min(wanted, self.cap)


# How often the main loop checks that every running job's lease was renewed recently enough.
_FENCE_CHECK_SECONDS = 0.25
# After a timeout cancels an async handler that keeps running, how often it is cancelled again.
_OVERRUN_RECANCEL_SECONDS = 1.0
# How late the deadline scan may notice a passed timeout; closer deadlines share one scan.
_DEADLINE_RESOLUTION = 0.005
# How long shutdown waits for handlers that ignore cancellation before it abandons them.
ABANDON_AFTER_SECONDS = 1.0
# Error text longer than this is cleaned and redacted off the event loop.
_INLINE_REPORT_CHARS = 256 * 1024
# Job types and queues come from rows, which can hold anything: log lines carry at most this much.
_LOGGED_NAME_CHARS = 200
# Why a running job's task was cancelled; without one, the cancellation is a shutdown's.
_CANCELLED_LOST = "lost"
_CANCELLED = "cancelled"  # `pgqueue cancel`: the job ends in failed_jobs as JobCancelledError
_ABANDONED = "abandoned"


# A middleware: `async def mw(job, call_next)` that awaits `call_next()` (Starlette's shape),
# around every attempt of every job: Sentry, tenancy, context variables, timing. What
# `call_next()` raises is the handler's error (its timeout included); the attempt's outcome is
# what the outermost middleware raises, so one that catches the error and returns completes it.
Middleware = Callable[[Job, Callable[[], Awaitable[None]]], Awaitable[None]]


def load_middleware(path: str) -> Middleware:
    """The middleware `module:name` names (PGQUEUE_MIDDLEWARE, --middleware), imported now."""
    module_name, _, name = path.partition(":")
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load middleware {path!r}: {safe_str(exc)}") from None
    if not inspect.iscoroutinefunction(value):
        raise ConfigurationError(
            f"middleware {path!r} must be an `async def mw(job, call_next)`, "
            f"got {type(value).__name__}"
        )
    middleware: Middleware = value
    return middleware


def _with_settings(settings: Settings, changes: dict[str, Any]) -> Settings:
    """`settings` with `changes` (by field name), validated as the environment's values are."""
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    try:
        return type(settings).model_validate({**values, **changes})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'queues' if error['loc'][:1] == ('queue',) else error['loc'][0]}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"invalid Worker argument: {problems}") from None


def _setting_default(name: str) -> Any:
    """The default of a `Settings` field: the one place a worker default is written."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


def default_queues() -> tuple[str, ...]:
    """The queues a worker serves when its settings name none (no --queue, PGQUEUE_QUEUE unset):
    each queue the job types imported so far declare, in the order they were defined, then
    "default" (the queue of a type that names none) if none of them declared it. So
    `pgqueue work --app myapp.jobs` alone serves the jobs of every type defined there; naming
    queues (which also sets their priority order) wins."""
    declared = dict.fromkeys(job_class.queue for job_class in registered_job_types().values())
    declared.setdefault(Job.queue, None)
    return tuple(declared)


@dataclass
class WorkerOptions:
    """How a worker runs. `WorkerOptions.from_settings` fills it from `Settings` (environment,
    then CLI flags); the defaults below are the `Settings` defaults, not written a second time.

    Parameters:
        queues: queues to serve, in priority order (default ["default"]; `from_settings` with
            `PGQUEUE_QUEUE` unset: `default_queues()`, the queues the imported job types declare).
        concurrency: jobs run at once (default 50; blocking jobs also wait for one of 2 x cores
            child processes).
        sleep: seconds between polls when no notification arrives (default 1).
        max_jobs: stop after claiming this many jobs (default: no limit).
        max_time: stop after this many seconds (default: no limit).
        max_tries: overrides every job's max_tries.
        timeout: overrides every job's timeout, in seconds.
        stop_when_empty: exit once no job is ready and none is running.
        grace: seconds running jobs get to finish after `request_stop` (default 30).
        lease: seconds a claim holds a job without a heartbeat (default 30).
        rescue_interval: seconds between rescues of expired leases (default 10).
        imports: modules whose job types blocking handlers need in their child processes.
        metrics_port: serve Prometheus metrics on this port (default: off).
        metrics_host: the address the metrics server listens on (default 127.0.0.1).
        cleanup_interval: seconds between prunes of failed_jobs past `Settings.retention` by
            this worker (default: off; `pgqueue cleanup` from a scheduler is the usual way).
        blocking_in_threads: run sync handlers in threads instead of killable child processes
            (pgqueue.testing uses it, so jobs defined in test modules work; timeouts cannot kill).
        middleware: run around every attempt, outermost first (`Middleware`; default none).
    """

    queues: Sequence[str] = (Job.queue,)
    concurrency: int = _setting_default("concurrency")
    sleep: float = _setting_default("sleep")
    max_jobs: int | None = _setting_default("max_jobs")
    max_time: float | None = _setting_default("max_time")
    max_tries: int | None = _setting_default("max_tries")
    timeout: float | None = _setting_default("timeout")
    stop_when_empty: bool = False
    grace: float = _setting_default("grace")
    lease: float = _setting_default("lease")
    rescue_interval: float = _setting_default("rescue_interval")
    imports: Sequence[str] = ()
    metrics_port: int | None = None
    metrics_host: str = _setting_default("metrics_host")
    cleanup_interval: float | None = _setting_default("cleanup_interval")
    blocking_in_threads: bool = False
    middleware: Sequence[Middleware] = ()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> WorkerOptions:
        """The options `settings` describe; `options` adds those that are no setting
        (`stop_when_empty`, `metrics_port`, ...). Call it after importing the job modules: with
        no queue set, the worker serves the queues their job types declare."""
        return cls(
            queues=default_queues() if settings.queue is None else settings.queue,
            concurrency=settings.concurrency,
            sleep=settings.sleep,
            max_jobs=settings.max_jobs,
            max_time=settings.max_time,
            max_tries=settings.max_tries,
            timeout=settings.timeout,
            grace=settings.grace,
            lease=settings.lease,
            rescue_interval=settings.rescue_interval,
            imports=settings.imports,
            cleanup_interval=settings.cleanup_interval,
            metrics_host=settings.metrics_host,
            **{"middleware": [load_middleware(path) for path in settings.middleware], **options},
        )


@dataclass
class WorkerSummary:
    """What a worker did, reported at shutdown.

    `lost` counts attempts whose lease this worker no longer held when it ended them (paused or
    cut off past its lease): another worker owns those jobs, so nothing was written for them.
    """

    worker_id: str
    completed: int = 0
    retried: int = 0
    snoozed: int = 0
    failed: int = 0
    released: int = 0
    rescued: int = 0
    lost: int = 0
    cancelled: int = 0
    seconds: float = 0.0


@dataclass(eq=False)  # compared by identity: one object per claim of a row
class _Claimed:
    id: int
    queue: str
    job_type: str
    payload: str
    attempts: int
    max_tries: int
    last_error: str | None
    token: uuid.UUID
    # Monotonic time of the last claim or renewal known to have extended the lease (its send).
    renewed: float
    trace_context: str | None  # the column's text, parsed only if a span is started for it
    started: float = field(default_factory=time.monotonic)
    cancel_reason: str | None = None
    lost_reason: str = "lease lost"
    task: asyncio.Task[None] | None = None
    job: Job | None = None  # once loaded: its progress reports go out with the heartbeat
    progress_sent: ProgressReport | None = None  # the last report a renewal wrote


@dataclass(frozen=True)
class _Write:
    """One outcome's statement, waiting to be sent."""

    claimed: _Claimed
    outcome: Outcome
    query: bytes
    params: dict[str, Any]


class Backoff:
    """Capped exponential backoff with jitter, growing across consecutive failures until `reset`.

    Each delay is drawn from the upper half of the current step, so many workers that lost the
    same server do not come back in lockstep.
    """

    def __init__(
        self, first: float = RECONNECT_FIRST_SECONDS, cap: float = RECONNECT_MAX_SECONDS
    ) -> None:
        self._first = first
        self._cap = cap
        self._step = first

    def next_delay(self) -> float:
        """The delay before the next try; the one after it is twice as long, up to the cap."""
        step = self._step
        self._step = min(step * 2, self._cap)
        return random.uniform(step / 2, step)  # noqa: S311 - jitter, not cryptography

    def reset(self) -> None:
        """Start again from the first delay (after a success)."""
        self._step = self._first


class Worker:
    """The worker engine: `await Worker(settings, options).run()` until it stops, or, inside an
    application (a FastAPI lifespan, say), as an async context manager that works in the
    background while the block runs:

        async with pgqueue.Worker(queues=("emails",), concurrency=20):
            ...  # serve requests; the worker claims and runs jobs meanwhile

    Entering waits until the worker is connected and registered (through an outage, as `pgqueue
    work` does) and raises what waiting cannot fix (a wrong password, a schema never migrated);
    leaving stops it as SIGTERM stops `pgqueue work`: no new claims, running jobs get the grace
    period, the rest go back to the queue. It never touches the host's signal handlers.

    Parameters:
        settings: default `Settings()` (the environment).
        options: default `WorkerOptions.from_settings(settings)`.
        queues: the queues to serve, in priority order (default: the settings', else each queue
            the imported job types declare, and "default").
        concurrency: jobs run at once (default: the settings', 50).
        middleware: `async def mw(job, call_next)` functions around every attempt, outermost
            first (default: the settings' PGQUEUE_MIDDLEWARE, none).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        options: WorkerOptions | None = None,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        if settings is None:
            settings = Settings()
        for name in queues or ():
            try:
                validate_queue_name(name)
            except InvalidQueueNameError as exc:
                raise ConfigurationError(f"invalid Worker argument: queues: {exc}") from None
        if queues is not None or concurrency is not None:
            # Checked as the same settings from the environment or a flag would be.
            given = {"queue": None if queues is None else list(queues), "concurrency": concurrency}
            settings = _with_settings(settings, {k: v for k, v in given.items() if v is not None})
        if options is None:
            options = WorkerOptions.from_settings(settings)
        else:
            if queues is not None:
                options = dataclasses.replace(options, queues=tuple(settings.queue or ()))
            if concurrency is not None:
                options = dataclasses.replace(options, concurrency=settings.concurrency)
        if middleware is not None:
            options = dataclasses.replace(options, middleware=tuple(middleware))
        self.settings = settings
        self.options = options
        self._up: asyncio.Future[None] | None = None
        self._background: asyncio.Task[WorkerSummary] | None = None
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.summary = WorkerSummary(self.id)
        self._queries = queries_for(settings.db_schema)
        # The synchronous_commit of the worker's writes (see _connect).
        self._durable = "on" if settings.worker_synchronous_commit else "off"
        self._channel = settings.db_schema
        self._results_channel = results_channel(settings.db_schema)  # `wait` listens there
        self._conn: psycopg.AsyncConnection[TupleRow] | None = None
        self._running: dict[int, _Claimed] = {}
        # Claimed ahead, leased, waiting for a slot: the next batch is claimed while the current
        # one runs, so PostgreSQL and Python are never idle at the same time.
        self._ready: collections.deque[_Claimed] = collections.deque()
        self._prefetch = Prefetch(options.concurrency)
        # Limits (docs/limits.md): the job types this worker runs that declare their own, and the
        # queues the last claim found with runtime limits. With neither, a queue is claimed with
        # the plain claim_jobs, which pays nothing for limits.
        self._limits = _limit_params(registered_job_types().values())
        self._limited_queues: set[str] = set()
        self._claim_in_flight = False
        self._tracer: tracing.Tracer | None = None  # see _tick
        self._starved = False  # slots stood empty while a claim was in flight
        self._started_total = 0
        self._last_claim_at = time.monotonic()
        self._started_at_last_claim = 0
        self._acks: dict[int, _Claimed] = {}
        self._writes: list[_Write] = []
        self._wake = asyncio.Event()
        self._beat_soon = asyncio.Event()  # a job we hold may have been cancelled: renew now
        self._stopping = False
        self._hard_stop = False
        self._claimed_total = 0
        # Per queue, completed and failed since the last heartbeat, which adds them to the
        # worker's row and to queue_throughput (the dashboard's chart).
        self._beat_completed: collections.defaultdict[str, int] = collections.defaultdict(int)
        self._beat_failed: collections.defaultdict[str, int] = collections.defaultdict(int)
        # The counts the last `progress` line covered (completed, retried, failed, lost), and when.
        self._progress_mark: tuple[dict[str, int], float] = ({}, time.monotonic())
        self._reconnect = Backoff()
        self._next_fence_check = 0.0
        self._cancelled_at: float | None = None  # when shutdown cancelled the running jobs
        self._deadlines: Deadlines | None = None  # made by run(), on the loop it serves
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
        """Work until stopped (`request_stop`, --max-jobs, --max-time, --stop-when-empty).

        It installs no signal handlers: the host's stay as they are (`pgqueue.signals` is what
        the CLI uses to stop a worker on SIGTERM/SIGINT).

        A database that is down or full at start is waited for, with backoff, like an outage
        later on. Raises `DatabaseError` only for what waiting cannot fix (a wrong password, a
        missing database, a schema that was never migrated).
        """
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(loop)
        if self._metrics is not None and self.options.metrics_port is not None:
            self._metrics.slots_total.set(self.options.concurrency)
            self._metrics.serve(self.options.metrics_port, self.options.metrics_host)
        if self.options.max_time is not None:
            loop.call_later(self.options.max_time, self.request_stop)
        if not await self._start_up():
            self._close_blocking()
            return self.summary
        notify_ready()  # under `--processes`: from now on, a death is a crash, not a failed start
        if self._up is not None and not self._up.done():
            self._up.set_result(None)
        # What a newcomer needs to see at once: where jobs come from and which ones it can run.
        logger.info(
            "worker started",
            extra={
                "worker": self.id,
                "queues": ",".join(self.options.queues),
                "job_types": ",".join(registered_job_types()) or "none",
                "concurrency": self.options.concurrency,
                "database": self.settings.redacted_url,
                "schema": self.settings.db_schema,
                **(
                    {"metrics": metrics_url(self.options.metrics_host, self.options.metrics_port)}
                    if self.options.metrics_port is not None
                    else {}
                ),
            },
        )
        services = [
            self._supervise("listener", self._listen),
            self._supervise("heartbeat", self._heartbeat),
            self._supervise("rescue", self._rescue_service),
            self._supervise("progress", self._progress_service),
            self._supervise("schedules", self._schedules_service),
        ]
        if self.options.cleanup_interval is not None:
            services.append(self._supervise("prune", self._prune_service))
        background = [asyncio.create_task(service) for service in services]
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
                    "snoozed": self.summary.snoozed,
                    "failed": self.summary.failed,
                    "cancelled": self.summary.cancelled,
                    "released": self.summary.released,
                    "rescued": self.summary.rescued,
                    "lost": self.summary.lost,
                    "seconds": round(self.summary.seconds, 3),
                },
            )
        return self.summary

    async def __aenter__(self) -> Worker:
        if self._background is not None:
            raise RuntimeError("this Worker is already running")
        self._up = asyncio.get_running_loop().create_future()
        self._background = asyncio.create_task(self.run())
        pending: list[asyncio.Future[Any]] = [self._up, self._background]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not self._up.done():  # it ended before it was up: stopped, or what it raised
            self._up.cancel()
            await self._background
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        background = self._background
        if background is None:
            return
        if not background.done():
            self.request_stop()
        try:
            await background
        finally:
            self._background = None

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
        self._release_ready()
        self._wake.set()
        asyncio.get_running_loop().call_later(self.options.grace, self._cancel_running)

    def _release_ready(self) -> None:
        """Give back the jobs claimed ahead: they never started, so no try is spent."""
        while self._ready:
            self._complete(self._ready.popleft(), Released())

    def _cancel_running(self) -> None:
        if self._cancelled_at is None:
            self._cancelled_at = time.monotonic()
        for claimed in self._running.values():
            if claimed.task is not None:
                claimed.task.cancel()
        self._wake.set()

    async def _start_up(self) -> bool:
        """Connect and register, waiting out an unavailable database; False if stopped first."""
        backoff = Backoff()
        while not self._stopping:
            try:
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
                if self._limits["job_types"]:
                    await self._execute("register_job_limits", self._limits)
                return True
            except _TRANSIENT_ERRORS as exc:
                await self._drop_connection()
                delay = backoff.next_delay()
                logger.warning(
                    "database unavailable at start, retrying",
                    extra={"worker": self.id, "error": self._one_line(exc), "retry_in": delay},
                )
                await self._sleep_unless_stopping(delay)
            except psycopg.Error as exc:
                await self._drop_connection()
                raise self._database_error(exc) from None
            except DatabaseError:
                await self._drop_connection()
                raise
        return False

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    # ---- supervised services ---------------------------------------------------------------

    async def _supervise(self, name: str, service: Callable[[], Awaitable[None]]) -> None:
        """Run `service` for the worker's life; if it fails unexpectedly, log it loudly and
        restart it with backoff. A service never dies silently."""
        backoff = Backoff(first=0.1, cap=RECONNECT_MAX_SECONDS)
        while True:
            began = time.monotonic()
            try:
                await service()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - began > 60:
                    backoff.reset()  # it had been healthy for a while: this is a new failure
                delay = backoff.next_delay()
                logger.error(
                    "worker service failed, restarting it",
                    exc_info=exc,
                    extra={"worker": self.id, "service": name, "retry_in": round(delay, 3)},
                )
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        """Wake the main loop on NOTIFY for our queues; reconnect forever if the link drops."""
        queues = set(self.options.queues)
        backoff = Backoff()
        while True:
            connected = time.monotonic()
            try:
                async with await self._connect("pgqueue-listener") as listener:
                    await listener.execute(
                        sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
                    )
                    connected = time.monotonic()
                    self._wake.set()  # jobs may have arrived while we were not listening
                    async for notification in listener.notifies():
                        if notification.payload in queues:
                            self._wake.set()
                        elif notification.payload.startswith("cancel:"):
                            self._cancel_notified(notification.payload)
            except _TRANSIENT_ERRORS as exc:
                if time.monotonic() - connected > 5:
                    backoff.reset()  # it had been listening: this is a new outage
                delay = backoff.next_delay()
                logger.warning(
                    "listener lost, polling until it is back",
                    extra={"worker": self.id, "error": self._one_line(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)

    async def _heartbeat(self) -> None:
        """Renew our leases and refresh our workers row every lease / 3."""
        interval = max(self.options.lease / 3, 0.1)
        while True:
            # Cleared before the beat: a cancel notified while it runs gets a beat of its own.
            self._beat_soon.clear()
            # Beat first: after a restart by the supervisor, the leases are renewed at once.
            with contextlib.suppress(*_TRANSIENT_ERRORS):
                await self._beat()  # on an outage the main loop reconnects; leases last a while
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_soon.wait(), interval)

    async def _progress_service(self) -> None:
        """Log one `progress` line at INFO every `PROGRESS_INTERVAL_SECONDS` in which the worker
        ended jobs (and, from the main loop, once each time it runs out of work): what it
        completed, retried, failed and lost, and the rate."""
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            self._log_progress()

    def _log_progress(self) -> None:
        summary = self.summary
        now = time.monotonic()
        current = {name: getattr(summary, name) for name in _PROGRESS_COUNTS}
        last, since = self._progress_mark
        self._progress_mark = (current, now)
        if current == last:
            return
        ended = {name: current[name] - last.get(name, 0) for name in _PROGRESS_COUNTS}
        logger.info(
            "progress",
            extra={
                "worker": self.id,
                **ended,
                "jobs_per_second": round(
                    (ended["completed"] + ended["failed"]) / max(now - since, 1e-3), 1
                ),
                "running": len(self._running),
            },
        )

    async def _rescue_service(self) -> None:
        """Rescue expired leases (any worker's) every `rescue_interval`, starting at a random
        offset so a fleet started together does not rescue in step."""
        interval = self.options.rescue_interval
        await asyncio.sleep(random.uniform(0, interval))  # noqa: S311
        while True:
            with contextlib.suppress(*_TRANSIENT_ERRORS):
                await self._rescue()
            await asyncio.sleep(interval)

    async def _prune_service(self) -> None:
        """Prune failed_jobs past retention every `cleanup_interval` (random first offset)."""
        interval = self.options.cleanup_interval
        assert interval is not None
        await asyncio.sleep(random.uniform(0, interval))  # noqa: S311
        while True:
            await self._prune_failed_jobs()
            await asyncio.sleep(interval)

    async def _schedules_service(self) -> None:
        """Register the schedules this worker's modules define and fire the due ones, on a
        connection of its own (`pgqueue.schedules.serve`); ends at once if none is defined."""
        from pgqueue.schedules import serve  # loaded when the service starts, not at import

        await serve(lambda: self._connect("pgqueue-schedules"), self.settings, self.id)

    # ---- the main loop -------------------------------------------------------------------

    async def _main_loop(self) -> None:
        while True:
            if self._stopping and (not self._running or self._abandoning()):
                return
            self._fence_unrenewed()
            # Cleared before the round trip, not after: a NOTIFY or a finished job arriving while
            # the claim is in flight must still wake the wait below.
            self._wake.clear()
            try:
                await self._ensure_connection()
                asked, claimed = await self._tick()
            except _TRANSIENT_ERRORS as exc:
                await self._lost_connection(exc)
                continue
            self._reconnect.reset()
            if (
                self.options.stop_when_empty
                and claimed == 0
                and not self._running
                and not self._ready
                and not self._acks
                and not self._writes
            ):
                self._stopping = True
                continue
            if asked > 0 and claimed == asked:
                # The queue may hold more: refill once enough slots are free to make the next
                # round trip carry a batch of acknowledgements and claims, not one of each.
                await self._wait_for_free_slots()
                continue
            if self._acks or self._writes:
                continue
            if not self._running and not self._ready:
                # Out of work: say what was done now, not at the next interval, so one job
                # dispatched by hand shows up in the log as soon as it ran.
                self._log_progress()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_wait())

    def _abandoning(self) -> bool:
        """Whether handlers that shutdown cancelled have had their moment to end."""
        cancelled = self._cancelled_at
        return cancelled is not None and time.monotonic() - cancelled >= ABANDON_AFTER_SECONDS

    def _idle_wait(self) -> float:
        # With jobs running, wake often enough to fence any whose lease went unrenewed.
        return min(self.options.sleep, 1.0) if self._running else self.options.sleep

    async def _wait_for_free_slots(self) -> None:
        """Wait until a whole batch can be claimed (the buffer has emptied into the slots), or
        `_REFILL_LINGER` after the first place frees."""
        loop = asyncio.get_running_loop()
        threshold = self._prefetch.threshold
        deadline: float | None = None
        while not self._stopping and self._free_slots() < threshold:
            if deadline is None and self._free_slots() > 0:
                deadline = loop.time() + _REFILL_LINGER
            timeout = self._idle_wait() if deadline is None else deadline - loop.time()
            if timeout <= 0:
                return
            # No await since the check above, so no wake-up can slip between it and this clear.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._fence_unrenewed()

    async def _tick(self) -> tuple[int, int]:
        """Write pending outcomes, acknowledge finished jobs and claim into free slots."""
        await self._flush_writes()
        limit = self._free_slots()
        if limit == 0:
            if self._acks:
                acks = self._take_acks()
                cursor = await self._conn_or_raise().execute(
                    self._queries["complete_jobs"], _ack_params(acks)
                )
                self._confirm_acks(acks, {row[0] for row in await cursor.fetchall()})
            return 0, 0
        # Once per round trip, not per job: whether the application configured tracing now.
        self._tracer = tracing.tracer()
        claimed_now = 0
        for queue in self.options.queues:
            if limit - claimed_now == 0:
                break
            acks = self._take_acks()
            before = claimed_now
            token = uuid.uuid4()
            claim_started = time.perf_counter()
            sent = time.monotonic()
            self._claim_in_flight = True
            claim = {
                "synchronous_commit": self._durable if acks else "off",
                "queue": queue,
                "limit": limit - claimed_now,
                "token": token,
                "lease_seconds": self.options.lease,
                "worker_id": self.id,
            }
            try:
                if self._limits["job_types"] or queue in self._limited_queues:
                    rows = await self._claim_limited(acks, claim)
                else:
                    cursor = await self._conn_or_raise().execute(
                        self._queries["claim_jobs"], {**_ack_params(acks), **claim}
                    )
                    rows = await cursor.fetchall()
                    if any(row[0] is None for row in rows):
                        # The queue has runtime limits now: claim it the limited way at once.
                        rows = [row for row in rows if row[0] is not None]
                        rows += await self._claim_limited({}, claim)
            except BaseException:
                self._acks = {**acks, **self._acks}
                raise
            finally:
                self._claim_in_flight = False
            asked = limit - claimed_now
            if self._metrics is not None:
                self._metrics.claim_latency.observe(time.perf_counter() - claim_started)
            acked: set[int] = set()
            for (
                job_id,
                queue_name,
                type_name,
                payload,
                attempts,
                max_tries,
                last_error,
                cancel_requested,
                trace_context,
            ) in rows:
                if queue_name is None:  # an acknowledged id, not a claimed job
                    acked.add(job_id)
                    continue
                claimed_now += 1
                claimed = _Claimed(
                    job_id,
                    queue_name,
                    type_name,
                    payload,
                    attempts,
                    max_tries,
                    last_error,
                    token,
                    renewed=sent,
                    trace_context=trace_context,
                )
                if cancel_requested:
                    # Cancelled while another worker held it, which then released it or died
                    # before it could stop it: it ends here, never run again.
                    self._complete(
                        claimed, self._cancelled(claimed, "before it started", attempts - 1)
                    )
                else:
                    self._ready.append(claimed)
            # Slots that ran dry only say "claim more ahead" if the queue had more to give.
            self._learn_prefetch(sent, starved=self._starved and claimed_now - before == asked)
            self._confirm_acks(acks, acked)
            self._fill_slots()
        self._claimed_total += claimed_now
        if self._metrics is not None:
            self._metrics.slots_busy.set(len(self._running))
        if self.options.max_jobs is not None and self._claimed_total >= self.options.max_jobs:
            self._stopping = True
        return limit, claimed_now

    async def _claim_limited(
        self, acks: dict[int, _Claimed], claim: dict[str, Any]
    ) -> list[TupleRow]:
        """claim_jobs under limits: one transaction that acknowledges `acks`, locks the limits
        (lock_limits) and claims within them (claim_limited_jobs), in the rows claim_jobs
        returns. Learns whether the queue still has runtime limits."""
        conn = self._conn_or_raise()
        rows: list[TupleRow] = []
        async with conn.transaction():
            if acks:
                cursor = await conn.execute(self._queries["complete_jobs"], _ack_params(acks))
                rows += [(row[0], *[None] * 8) for row in await cursor.fetchall()]
            cursor = await conn.execute(
                self._queries["lock_limits"],
                {**claim, "synchronous_commit": self._durable if acks else "off", **self._limits},
            )
            locked = await cursor.fetchone()
            cursor = await conn.execute(
                self._queries["claim_limited_jobs"],
                {**claim, **self._limits, "scan": claim["limit"] * _LIMITED_SCAN_FACTOR},
            )
            rows += await cursor.fetchall()
        if locked is not None and locked[0]:
            self._limited_queues.add(claim["queue"])
        else:
            self._limited_queues.discard(claim["queue"])
        return rows

    def _learn_prefetch(self, sent: float, *, starved: bool) -> None:
        """Size the buffer ahead of the slots from the claim that just returned."""
        now = time.monotonic()
        self._prefetch.observe(
            self._started_total - self._started_at_last_claim,
            now - self._last_claim_at,
            now - sent,
            starved,
        )
        self._started_at_last_claim = self._started_total
        self._last_claim_at = now
        self._starved = False

    def _free_slots(self) -> int:
        """How many jobs to claim now: room in the slots and in the buffer ahead of them."""
        if self._stopping:
            return 0
        free = self._prefetch.capacity - len(self._running) - len(self._ready)
        if self.options.max_jobs is not None:
            free = min(free, self.options.max_jobs - self._claimed_total)
        return max(free, 0)

    def _fill_slots(self) -> None:
        """Start jobs claimed ahead while slots are free."""
        while self._ready and len(self._running) < self.options.concurrency:
            self._start(self._ready.popleft())
        if self._claim_in_flight and len(self._running) < self.options.concurrency:
            self._starved = True

    def _start(self, claimed: _Claimed) -> None:
        self._started_total += 1
        claimed.started = time.monotonic()
        claimed.task = asyncio.create_task(self._run_job(claimed))
        self._running[claimed.id] = claimed

    # ---- fencing -------------------------------------------------------------------------

    def _fence_unrenewed(self) -> None:
        """Cancel running jobs whose lease was not renewed for a whole lease: the database was
        unreachable or this process was paused, and another worker may have rescued them."""
        now = time.monotonic()
        if now < self._next_fence_check or not (self._running or self._ready):
            return
        self._next_fence_check = now + _FENCE_CHECK_SECONDS
        oldest = now - self.options.lease
        for claimed in [c for c in self._ready if c.renewed < oldest]:
            self._drop_ready(claimed, "no lease renewal for a whole lease before it started")
        for claimed in list(self._running.values()):
            if claimed.renewed < oldest:
                self._fence(
                    claimed,
                    f"no lease renewal for {now - claimed.renewed:.1f} s (database unreachable or "
                    "worker paused); another worker may run it",
                )

    def _fence(self, claimed: _Claimed, reason: str) -> None:
        """Stop a running job this worker no longer holds, so it never runs beside its next
        attempt and writes nothing: not its outcome, not `failed()`."""
        if claimed.cancel_reason == _CANCELLED_LOST:
            return
        claimed.cancel_reason = _CANCELLED_LOST
        claimed.lost_reason = reason
        if claimed.task is not None:
            claimed.task.cancel()

    def _drop_ready(self, claimed: _Claimed, reason: str) -> None:
        """Forget a job claimed ahead whose lease this worker can no longer vouch for."""
        self._ready.remove(claimed)
        self._complete(claimed, Lost(reason))

    async def _still_held(self, claimed: _Claimed) -> bool:
        """Whether our lease on `claimed` is still current (renewing it), checked before
        `failed()` runs, so `failed()` never runs for a job that completes elsewhere."""
        if claimed.cancel_reason == _CANCELLED_LOST:
            return False
        sent = time.monotonic()
        try:
            # Shielded: cancelling this job must not interrupt a statement on the shared connection.
            rows = await asyncio.shield(
                self._fetch(
                    "renew_leases",
                    {
                        **_held_params([claimed]),
                        **_NO_PROGRESS,
                        "lease_seconds": self.options.lease,
                    },
                )
            )
        except _TRANSIENT_ERRORS:
            return time.monotonic() - claimed.renewed < self.options.lease
        if rows:
            claimed.renewed = sent
            if rows[0][1] and claimed.cancel_reason is None:
                claimed.cancel_reason = _CANCELLED  # so failed() does not run
            return True
        return False

    # ---- cancelling ----------------------------------------------------------------------

    def _cancel_notified(self, payload: str) -> None:
        """`pgqueue cancel` notified `cancel:<id>`: if we hold that job, renew the leases now,
        which says whether it really was cancelled (anyone who may NOTIFY could send the text,
        so it is never trusted by itself; the heartbeat finds the request anyway)."""
        text = payload.removeprefix("cancel:")
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            return
        job_id = int(text)
        if job_id in self._running or any(waiting.id == job_id for waiting in self._ready):
            self._beat_soon.set()

    def _cancel(self, claimed: _Claimed) -> None:
        """Stop a job that was cancelled: one claimed ahead ends at once, unstarted; a running
        one's task is cancelled (an async handler in place; a blocking handler's process is
        killed by `BlockingRunner`), and `_run_job` records how it ended as `Cancelled`."""
        if any(waiting is claimed for waiting in self._ready):
            self._ready.remove(claimed)
            self._complete(
                claimed, self._cancelled(claimed, "before it started", claimed.attempts - 1)
            )
        elif self._running.get(claimed.id) is claimed and claimed.cancel_reason is None:
            claimed.cancel_reason = _CANCELLED
            if claimed.task is not None:
                claimed.task.cancel()

    def _cancelled(self, claimed: _Claimed, when: str, attempts: int) -> Cancelled:
        error = JobCancelledError(f"cancelled {when}; stopped by worker {self.id}")
        return Cancelled(self._report(error, ""), attempts)

    # ---- one job -------------------------------------------------------------------------

    async def _run_job(self, claimed: _Claimed) -> None:
        outcome: Outcome
        span = None
        if self._tracer is not None:
            span = tracing.start_attempt(
                self._tracer,
                claimed.queue,
                claimed.id,
                claimed.job_type,
                claimed.attempts,
                claimed.trace_context,
            )
        try:
            # The span is current around the middleware and the handler, and ends on the outcome.
            outcome = await (
                self._attempt(claimed) if span is None else span.run(self._attempt(claimed))
            )
        except asyncio.CancelledError:
            if claimed.cancel_reason == _CANCELLED_LOST:
                outcome = Lost(claimed.lost_reason)
            else:
                outcome = Released()  # shutdown took it back: it returns untouched
        except Exception as exc:
            # A fault in pgqueue itself must still end the job visibly, never leave it leased.
            logger.exception("internal error while running a job", extra={"worker": self.id})
            outcome = Failed(self._report(exc), claimed.attempts)
        finally:
            self._running.pop(claimed.id, None)
            claimed.job = None  # its progress is of no more use: freed now, not at the ack
            self._fill_slots()
            self._wake.set()
        if claimed.cancel_reason == _CANCELLED and not isinstance(outcome, Completed | Lost):
            # Stopped, or ended otherwise once cancelled: never retried, snoozed or released.
            outcome = self._cancelled(
                claimed, f"while running attempt {claimed.attempts}", claimed.attempts
            )
        if span is not None:
            span.end(outcome)
        if claimed.cancel_reason != _ABANDONED:  # shutdown already released it
            self._complete(claimed, outcome)

    async def _attempt(self, claimed: _Claimed) -> Outcome:
        """Run one claimed row to its outcome. Writes nothing: the outcome says what to write."""
        job_class = job_type(claimed.job_type)
        if job_class is None:
            unknown = UnknownJobTypeError(
                f"no job type named {claimed.job_type[:_LOGGED_NAME_CHARS]!r} is defined by this "
                "worker's modules (--app / PGQUEUE_IMPORTS); it was not run"
            )
            return Failed(self._report(unknown, ""), claimed.attempts)
        try:
            job = load_job(job_class, claimed.payload, claimed.id, claimed.attempts)
        except Exception as exc:
            # Retrying cannot fix a row: it ends now, with what was wrong, and runs nothing.
            invalid = InvalidPayloadError(
                f"the payload of job {claimed.id} cannot be loaded as {job_class.job_name}: "
                f"{safe_str(exc)}"
            )
            return Failed(self._report(invalid, ""), claimed.attempts)
        claimed.job = job
        max_tries = self.options.max_tries or claimed.max_tries
        if claimed.attempts > max_tries:
            # The last try was lost with its worker (lease expired): no try is left to run.
            lost = LeaseExpiredError(claimed.last_error or "the worker running it was lost")
            return await self._give_up(claimed, job, lost, "", claimed.attempts - 1)
        timeout = self.options.timeout or job_class.timeout
        if self.options.middleware:
            error, formatted = await self._through_middleware(job, timeout)
        else:
            error, formatted = await call_job(
                job, "handle", timeout, None, self._blocking, self._deadlines
            )
        if error is None:
            return completed(job)
        after = after_error(job_class, error, claimed.attempts, max_tries)
        if isinstance(after, Snoozed):
            return after
        if after is not None:
            return Retry(after, await self._report_async(error, formatted))
        return await self._give_up(claimed, job, error, formatted, claimed.attempts)

    async def _through_middleware(
        self, job: Job, timeout: float
    ) -> tuple[BaseException | None, str | None]:
        """`call_job` for `handle` inside the middleware chain; (error, traceback) as it returns."""
        handled: list[tuple[BaseException | None, str | None]] = []

        async def handle() -> None:
            handled.append(
                await call_job(job, "handle", timeout, None, self._blocking, self._deadlines)
            )
            error = handled[-1][0]
            if error is not None:
                raise error

        call_next: Callable[[], Awaitable[None]] = handle
        for middleware in reversed(self.options.middleware):
            call_next = functools.partial(middleware, job, call_next)
        try:
            await call_next()
        except asyncio.CancelledError:
            raise  # shutdown or a lost lease: not the job's outcome
        except BaseException as exc:
            if handled and exc is handled[-1][0]:
                return handled[-1]  # the handler's own error, its traceback already taken
            return exc, None
        return None, ""

    async def _give_up(
        self,
        claimed: _Claimed,
        job: Job,
        error: BaseException,
        formatted: str | None,
        attempts: int,
    ) -> Outcome:
        if not await self._still_held(claimed):
            return Lost("lease lost before failed() could run; another worker owns the job")
        if claimed.cancel_reason == _CANCELLED:  # a cancelled job's failed() does not run
            return self._cancelled(
                claimed, f"while running attempt {claimed.attempts}", claimed.attempts
            )
        timeout = self.options.timeout or type(job).timeout
        hook_error, hook_traceback = await call_job(
            job, "failed", timeout, error, self._blocking, self._deadlines
        )
        report = await self._report_async(error, formatted)
        if hook_error is not None:
            hook = await self._report_async(hook_error, hook_traceback)
            self._log(claimed, "failed() raised", logging.ERROR, error=hook.log_text)
            report = ErrorReport(
                report.class_name,
                report.message,
                clean_text(
                    f"{report.traceback}\nWhile running failed():\n"
                    f"{hook.traceback or hook.description}",
                    len(report.traceback) + len(hook.traceback) + 64,
                ),
            )
        return Failed(report, attempts)

    def _report(self, error: BaseException, formatted: str | None = None) -> ErrorReport:
        return report_error(error, formatted, self.settings.redact)

    async def _report_async(
        self, error: BaseException, formatted: str | None = None
    ) -> ErrorReport:
        """`_report` for a handler's error: a huge one is cleaned in a thread, so a megabyte
        message never holds up the heartbeat or the other jobs."""
        if len(formatted or "") + len(safe_str(error)) < _INLINE_REPORT_CHARS:
            return self._report(error, formatted)
        return await asyncio.to_thread(self._report, error, formatted)

    # ---- the completer: outcomes become writes, writes become counters and log lines ------

    def _complete(self, claimed: _Claimed, outcome: Outcome) -> None:
        """Queue the statement that records `outcome` (or, for a lost lease, say so now)."""
        if isinstance(outcome, Completed):
            if outcome.result is None:
                self._acks[claimed.id] = claimed
            else:  # keep_result: written with the others in one statement (_complete_kept)
                self._writes.append(
                    _Write(claimed, outcome, self._queries["complete_kept_jobs"], {})
                )
        elif isinstance(outcome, Retry):
            self._writes.append(
                _Write(
                    claimed,
                    outcome,
                    self._queries["retry_job"],
                    {
                        "id": claimed.id,
                        "token": claimed.token,
                        "delay": outcome.delay,
                        "error": outcome.error.description,
                    },
                )
            )
        elif isinstance(outcome, Snoozed):
            self._writes.append(
                _Write(
                    claimed,
                    outcome,
                    self._queries["snooze_job"],
                    {"id": claimed.id, "token": claimed.token, "delay": outcome.seconds},
                )
            )
        elif isinstance(outcome, Failed | Cancelled):
            self._writes.append(
                _Write(
                    claimed,
                    outcome,
                    self._queries["fail_job"],
                    {
                        "id": claimed.id,
                        "token": claimed.token,
                        "attempts": outcome.attempts,
                        "exception_class": outcome.error.class_name,
                        "exception_message": outcome.error.message,
                        "traceback": outcome.error.traceback,
                        "worker_id": self.id,
                        "results_channel": self._results_channel,
                    },
                )
            )
        elif isinstance(outcome, Released):
            self._writes.append(
                _Write(
                    claimed,
                    outcome,
                    self._queries["release_jobs"],
                    {**_held_params([claimed]), "channel": self._channel},
                )
            )
        else:
            self.summary.lost += 1
            self._log(
                claimed,
                "lease lost: stopped, outcome not written",
                logging.WARNING,
                reason=outcome.reason,
            )

    def _take_acks(self) -> dict[int, _Claimed]:
        acks, self._acks = self._acks, {}
        return acks

    def _confirm_acks(self, acks: dict[int, _Claimed], deleted: set[int]) -> None:
        for job_id, claimed in acks.items():
            if job_id in deleted:
                self.summary.completed += 1
                self._beat_completed[claimed.queue] += 1
                self._count(claimed, "completed")
                # DEBUG, not INFO: at thousands of jobs a second a line per success cost 31% of
                # throughput in the benchmark; the periodic `progress` line counts them instead,
                # and retries, failures and lost leases always log a line each.
                self._log(claimed, "completed", logging.DEBUG)
            else:
                self._lease_lost_at_write(claimed, "completed")

    def _confirm(self, write: _Write, rowcount: int) -> None:
        claimed, outcome = write.claimed, write.outcome
        if isinstance(outcome, Released):
            if rowcount:
                self.summary.released += 1
                self._log(claimed, "released", logging.WARNING)
            return
        if rowcount < 1:
            self._lease_lost_at_write(claimed, type(outcome).__name__.lower())
        elif isinstance(outcome, Retry):
            self.summary.retried += 1
            self._count(claimed, "retried")
            self._log(
                claimed,
                "retrying",
                logging.WARNING,
                error=outcome.error.log_text,
                retry_in=round(outcome.delay, 3),
            )
        elif isinstance(outcome, Snoozed):
            self.summary.snoozed += 1
            self._count(claimed, "snoozed")
            self._log(claimed, "snoozed", snooze_for=round(outcome.seconds, 3))
        elif isinstance(outcome, Failed):
            self.summary.failed += 1
            self._beat_failed[claimed.queue] += 1
            self._count(claimed, "failed")
            self._log(claimed, "failed", logging.ERROR, error=outcome.error.log_text)
        elif isinstance(outcome, Cancelled):
            self.summary.cancelled += 1
            self._count(claimed, "cancelled")
            self._log(claimed, "cancelled", logging.WARNING, error=outcome.error.log_text)

    def _lease_lost_at_write(self, claimed: _Claimed, outcome: str) -> None:
        self.summary.lost += 1
        self._log(
            claimed,
            "lease lost: outcome not written, another worker owns the job",
            logging.WARNING,
            outcome=outcome,
        )

    def _count(self, claimed: _Claimed, outcome: str) -> None:
        if self._metrics is not None:
            labels = (claimed.queue, claimed.job_type)
            self._metrics.jobs.labels(*labels, outcome).inc()
            self._metrics.duration.labels(*labels).observe(time.monotonic() - claimed.started)

    def _log(
        self,
        claimed: _Claimed,
        message: str,
        level: int = logging.INFO,
        **fields: Any,
    ) -> None:
        """Log one line about a job, naming its id, type, queue and attempt."""
        if not logger.isEnabledFor(level):
            return
        extra: dict[str, Any] = {
            "job_id": claimed.id,
            "job_type": claimed.job_type[:_LOGGED_NAME_CHARS],
            "queue": claimed.queue,
            "attempt": claimed.attempts,
            "duration_ms": round((time.monotonic() - claimed.started) * 1000, 2),
            "worker": self.id,
            **fields,
        }
        logger.log(level, message, extra=extra)

    # ---- talking to PostgreSQL -----------------------------------------------------------

    async def _flush_writes(self) -> None:
        while self._writes:
            write = self._writes[0]
            if isinstance(write.outcome, Completed):
                await self._complete_kept()
                continue
            try:
                cursor = await self._conn_or_raise().execute(write.query, write.params)
            except _TRANSIENT_ERRORS:
                raise  # kept: written once the database is back
            except psycopg.Error as exc:
                self._writes.pop(0)
                self._write_refused(write, exc)
                continue
            self._writes.pop(0)
            self._confirm(write, cursor.rowcount)

    async def _complete_kept(self) -> None:
        """Move every pending completion of a keep_result type to job_results in one statement
        (complete_kept_jobs), compare-and-set on each lease token, as acknowledgements are."""
        pairs = [
            (write, write.outcome) for write in self._writes if isinstance(write.outcome, Completed)
        ]
        kept = [write for write, _ in pairs]
        tokens: dict[uuid.UUID, str] = {}  # a claim's jobs share its token: one str() each
        for write in kept:
            if write.claimed.token not in tokens:
                tokens[write.claimed.token] = str(write.claimed.token)
        params = {
            # Array literals and one JSON array, as complete_kept_jobs takes them.
            "ids": "{" + ",".join([str(write.claimed.id) for write in kept]) + "}",
            "tokens": "{" + ",".join([tokens[write.claimed.token] for write in kept]) + "}",
            "results": "[" + ",".join([str(done.result) for _, done in pairs]) + "]",
            "keep_seconds": "{" + ",".join([repr(done.keep_seconds) for _, done in pairs]) + "}",
            "results_channel": self._results_channel,
        }
        rows: list[TupleRow] = []
        refused: psycopg.Error | None = None
        try:
            rows = await self._fetch("complete_kept_jobs", params)
        except _TRANSIENT_ERRORS:
            raise  # kept: written once the database is back
        except psycopg.Error as exc:
            refused = exc
        taken = {id(write) for write in kept}  # others may have been added during the await
        self._writes = [write for write in self._writes if id(write) not in taken]
        if refused is not None:
            for write in kept:
                self._write_refused(write, refused)
            return
        deleted = {row[0] for row in rows}
        self._confirm_acks({write.claimed.id: write.claimed for write in kept}, deleted)

    def _write_refused(self, write: _Write, exc: psycopg.Error) -> None:
        """PostgreSQL refused an outcome's statement (a trigger, a constraint, a value out of
        range): the worker goes on. A retry or a release that cannot be written ends the job in
        failed_jobs with its own error and the refusal; a move to failed_jobs that cannot be
        written leaves the row leased, to be rescued once its lease expires."""
        refusal = translate(exc, self.settings)
        claimed, outcome = write.claimed, write.outcome
        self._log(
            claimed,
            "PostgreSQL refused the outcome",
            logging.ERROR,
            outcome=type(outcome).__name__.lower(),
            error=safe_str(refusal),
        )
        if isinstance(outcome, Failed | Cancelled):
            return
        error = outcome.error if isinstance(outcome, Retry) else self._report(refusal, "")
        note = f"While recording the outcome, PostgreSQL refused it: {safe_str(refusal)}"
        report = ErrorReport(
            error.class_name,
            error.message,
            clean_text(f"{error.traceback}\n{note}".strip(), len(error.traceback) + len(note) + 1),
        )
        self._complete(claimed, Failed(report, claimed.attempts))

    async def _execute(self, name: str, params: dict[str, Any]) -> None:
        await self._conn_or_raise().execute(self._queries[name], params)

    async def _fetch(self, name: str, params: dict[str, Any]) -> list[TupleRow]:
        cursor = await self._conn_or_raise().execute(self._queries[name], params)
        return await cursor.fetchall()

    def _conn_or_raise(self) -> psycopg.AsyncConnection[TupleRow]:
        if self._conn is None or self._conn.closed:
            raise psycopg.OperationalError("the worker's connection is closed")
        return self._conn

    async def _connect(self, application_name: str) -> psycopg.AsyncConnection[TupleRow]:
        # The worker's writes wait for a WAL flush unless the operator opted out: an outcome
        # that PostgreSQL acknowledged is never lost in a crash, so a finished job never costs
        # another try (PGQUEUE_WORKER_SYNCHRONOUS_COMMIT=false trades that for speed).
        # Said explicitly either way: a server configured with synchronous_commit=off must not
        # quietly take the promise back.
        return await connect_async(
            self.settings,
            application_name=application_name,
            options=f"-c synchronous_commit={self._durable}",
        )

    async def _ensure_connection(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect("pgqueue-worker")

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _lost_connection(self, exc: BaseException) -> None:
        """Drop the broken connection and reconnect, backing off across consecutive failures
        (a read-only standby accepts the connection and refuses the next statement, so the
        backoff only resets after a whole round trip succeeded)."""
        await self._drop_connection()
        while not self._hard_stop:
            delay = self._reconnect.next_delay()
            logger.warning(
                "database unavailable, reconnecting",
                extra={
                    "worker": self.id,
                    "error": self._one_line(exc),
                    "retry_in": round(delay, 3),
                },
            )
            await asyncio.sleep(delay)
            self._fence_unrenewed()
            try:
                await self._ensure_connection()
                logger.info("database connection restored", extra={"worker": self.id})
                return
            except _TRANSIENT_ERRORS as again:
                exc = again

    async def _prune_failed_jobs(self) -> None:
        """Prune failed_jobs past retention on a connection of its own, in short batches, so the
        heartbeat and the claims never wait for it. Concurrent prunes by other workers are harmless."""
        try:
            async with await self._connect("pgqueue-cleanup") as conn:
                pruned = await prune_failed_jobs_async(
                    conn, self.settings.retention, schema=self.settings.db_schema
                )
                results = await prune_job_results_async(conn, schema=self.settings.db_schema)
                await prune_queue_throughput_async(conn, schema=self.settings.db_schema)
        except _TRANSIENT_ERRORS as exc:
            logger.warning(
                "cleanup skipped", extra={"worker": self.id, "error": self._one_line(exc)}
            )
            return
        logger.info(
            "pruned failed jobs",
            extra={"worker": self.id, "count": pruned, "kept_results": results},
        )

    async def _beat(self) -> None:
        running = [*self._running.values(), *self._ready]
        if running:
            sent = time.monotonic()
            progress, reports = _progress_params(running, self.settings.redact)
            rows = await self._fetch(
                "renew_leases",
                {**_held_params(running), **progress, "lease_seconds": self.options.lease},
            )
            held = {row[0] for row in rows}
            for claimed, report in reports:
                if claimed.id in held:
                    claimed.progress_sent = report
            cancelled = {row[0] for row in rows if row[1]}
            for claimed in running:
                if claimed.id in held:
                    claimed.renewed = sent
                    if claimed.id in cancelled:
                        self._cancel(claimed)
                elif any(waiting is claimed for waiting in self._ready):
                    self._drop_ready(
                        claimed, "the heartbeat found the lease gone before it started"
                    )
                elif self._running.get(claimed.id) is claimed:
                    self._fence(
                        claimed,
                        "the heartbeat found the lease gone (rescued after it expired); another "
                        "worker may run it",
                    )
        if self._metrics is not None:
            depth_rows = await self._fetch("queue_depths", {"queues": list(self.options.queues)})
            for queue, count, paused in depth_rows:
                self._metrics.queue_depth.labels(queue).set(count)
                self._metrics.queue_paused.labels(queue).set(1 if paused else 0)
            held_back: dict[str, int] = {}
            if self._limits["job_types"] or self._limited_queues:
                # Only a limited worker pays for the count (it reads every ready job of its
                # limited types): the same one `pgqueue stats` shows.
                stats = await read_stats_async(self._conn_or_raise(), self.settings.db_schema)
                held_back = {queue.queue: queue.held_by_limits for queue in stats.queues}
            for queue in self.options.queues:
                self._metrics.queue_held.labels(queue).set(held_back.get(queue, 0))
        await self._send_counts()

    async def _send_counts(self) -> None:
        """Refresh the workers row, adding what ended since the last call (also per queue and
        minute, for the dashboard's chart); kept for the next call if the write fails."""
        completed, self._beat_completed = self._beat_completed, collections.defaultdict(int)
        failed, self._beat_failed = self._beat_failed, collections.defaultdict(int)
        # Sorted: workers upsert the same (queue, minute) rows, always in the same order.
        queues = sorted(completed.keys() | failed.keys())
        try:
            await self._execute(
                "worker_heartbeat",
                {
                    "id": self.id,
                    "queues": queues,
                    "completed": [completed.get(queue, 0) for queue in queues],
                    "failed": [failed.get(queue, 0) for queue in queues],
                },
            )
        except BaseException:
            for queue, count in completed.items():
                self._beat_completed[queue] += count
            for queue, count in failed.items():
                self._beat_failed[queue] += count
            raise

    async def _rescue(self) -> None:
        rescued = await rescue_expired_leases_async(
            self._conn_or_raise(),
            forget_workers_after=max(self.options.lease * 10, 3600),
            schema=self.settings.db_schema,
        )
        for queue, count in rescued.items():
            self.summary.rescued += count
            if self._metrics is not None:
                self._metrics.rescued.labels(queue).inc(count)
            logger.warning(
                "rescued jobs with expired leases",
                extra={"worker": self.id, "queue": queue, "count": count},
            )

    async def _shutdown(self) -> None:
        """Write what is pending (outcomes, releases, acks), unregister, close.

        Bounded whatever a handler does: one that ignores cancellation is abandoned after
        `ABANDON_AFTER_SECONDS` and its job released, so a drain never outlasts the grace by more.
        """
        self._release_ready()
        self._cancel_running()
        if self._running:
            tasks = [c.task for c in self._running.values() if c.task is not None]
            assert self._cancelled_at is not None
            waited = time.monotonic() - self._cancelled_at
            await asyncio.wait(tasks, timeout=max(ABANDON_AFTER_SECONDS - waited, 0.01))
            for claimed in list(self._running.values()):
                self._running.pop(claimed.id, None)
                claimed.cancel_reason = _ABANDONED
                self._log(claimed, "handler ignored cancellation; abandoned", logging.ERROR)
                self._complete(claimed, Released())
        self._close_blocking()
        deadline = time.monotonic() + (2.0 if self._hard_stop else 15.0)
        while time.monotonic() < deadline:
            try:
                await self._ensure_connection()
                await self._flush_writes()
                if self._acks:
                    acks = self._take_acks()
                    try:
                        deleted = await self._fetch("complete_jobs", _ack_params(acks))
                    except BaseException:
                        self._acks = acks
                        raise
                    self._confirm_acks(acks, {row[0] for row in deleted})
                await self._send_counts()  # the last beat's counts reach queue_throughput too
                await self._execute("unregister_worker", {"id": self.id})
                break
            except _TRANSIENT_ERRORS as exc:
                await self._drop_connection()
                logger.warning(
                    "could not write final outcomes yet",
                    extra={"worker": self.id, "error": self._one_line(exc)},
                )
                await asyncio.sleep(0.2)
        await self._drop_connection()

    def _close_blocking(self) -> None:
        if self._blocking is not None:
            self._blocking.close()

    def _database_error(self, exc: psycopg.Error) -> DatabaseError:
        return translate(exc, self.settings)

    def _one_line(self, error: BaseException) -> str:
        text = self.settings.redact(safe_str(error)).strip()
        return text.splitlines()[0] if text else type(error).__name__


async def call_job(
    job: Job,
    method: str,
    timeout: float,
    exc: BaseException | None,
    blocking: BlockingRunner | None,
    deadlines: Deadlines | None = None,
    *,
    returned: list[Any] | None = None,
) -> tuple[BaseException | None, str | None]:
    """Run `job.handle()` or `job.failed(exc)` within `timeout`; return (error, traceback).

    Whatever the method raises, `SystemExit` and `KeyboardInterrupt` included, is returned, not
    raised; the traceback is None when it is still to be formatted from the error.

    An async method runs on the loop and is cancelled at the timeout; one that ignores the
    cancellation and runs on is cancelled again every second, logged as overrunning, and
    recorded as timed out however it ends. A sync one runs in one of `blocking`'s child processes,
    killed at the timeout; with `blocking=None` (pgqueue.testing) it runs in a thread instead,
    which a timeout reports but cannot stop. A worker passes its `deadlines`, one timer for all
    its attempts; without it, the call gets a timer of its own. `returned`, when given, gets
    what the method returned (pgqueue.testing shows it; not for a child process's call).

    For `handle` of a type with `keep_result`, the returned value is kept on the job as JSON
    (`store_result`, encoded in the child for a blocking one); one that cannot be kept is
    returned as the attempt's error (`InvalidResultError`).
    """
    function = getattr(job, method)
    is_async = _is_async(type(job), method)
    if not is_async and blocking is not None:
        assert job.job_id is not None
        result = await blocking.run(
            BlockingCall(
                type(job).job_name,
                job.model_dump_json(),
                job.job_id,
                job.attempts,
                "handle" if exc is None else "failed",
                None if exc is None else picklable(exc),
            ),
            timeout,
            functools.partial(record_progress, job),
        )
        if result.result is not None:  # keep_result: encoded in the child process
            try:
                store_encoded_result(job, result.result)
            except PgQueueError as error:
                return error, None
        return result.error, result.traceback
    if deadlines is None:
        deadlines = Deadlines(asyncio.get_running_loop())
    deadline = deadlines.start(job, method, timeout)
    try:
        if is_async:
            value = await (function() if exc is None else function(exc))
        else:
            value = await asyncio.to_thread(*((function,) if exc is None else (function, exc)))
    except asyncio.CancelledError:
        if deadline.cancels:
            return deadline.error(), ""
        raise
    except BaseException as error:
        if deadline.cancels:
            return deadline.error(), ""
        return error, None
    finally:
        deadlines.end(deadline)
    if deadline.cancels:
        return deadline.error(), ""
    if returned is not None:
        returned.append(value)
    if exc is None and type(job).keep_result is not None:
        try:
            store_result(job, value)  # as JSON, or the attempt fails (InvalidResultError)
        except PgQueueError as error:
            return error, None
    return None, ""


class _Deadline:
    """One call's timeout: when it passes, the scan cancels the running task, and keeps
    cancelling (and warns) while a handler that swallows the cancellation runs on."""

    __slots__ = ("cancels", "due", "job", "method", "started", "task", "timeout")

    def __init__(self, job: Job, method: str, timeout: float, task: Any, now: float) -> None:
        self.job = job
        self.method = method
        self.timeout = timeout
        self.task: asyncio.Task[Any] | None = task
        self.started = now
        self.due = now + timeout
        self.cancels = 0

    def expire(self, now: float) -> None:
        self.cancels += 1
        if self.cancels == 2:
            logger.warning(
                "handler ignores cancellation and overruns its timeout",
                extra={
                    "job_id": self.job.job_id,
                    "job_type": type(self.job).job_name,
                    "attempt": self.job.attempts,
                    "timeout": self.timeout,
                },
            )
        if self.task is not None:
            self.task.cancel()
        self.due = now + _OVERRUN_RECANCEL_SECONDS

    def error(self) -> JobTimeoutError:
        ran = asyncio.get_running_loop().time() - self.started
        if self.cancels > 1:
            return JobTimeoutError(
                f"{self.method}() ran past its {self.timeout:g} s timeout and ignored "
                f"cancellation ({ran:.1f} s in all)"
            )
        return JobTimeoutError(f"{self.method}() ran past its {self.timeout:g} s timeout")


class Deadlines:
    """The timeouts of every call a worker runs, served by one timer set for the earliest.

    A timer per attempt cost a timer handle, a heap push and a cancel for every job; here an
    attempt costs a set entry, and the timer only fires when some deadline is due (a scan that
    finds the earliest call already ended sets the timer again for the next). Calls that end
    before their deadline leave nothing behind.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._active: set[_Deadline] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def start(self, job: Job, method: str, timeout: float) -> _Deadline:
        """Watch the call the current task is about to make."""
        deadline = _Deadline(job, method, timeout, asyncio.current_task(), self._loop.time())
        self._active.add(deadline)
        if deadline.due < self._timer_at:
            self._arm(deadline.due)
        return deadline

    def end(self, deadline: _Deadline) -> None:
        """The call returned or raised: stop watching it. If its timeout passed, the task's
        cancellations that were ours are taken back, so they do not cancel what runs next."""
        self._active.discard(deadline)
        task = deadline.task
        if deadline.cancels and task is not None:
            deadline.task = None
            for _ in range(deadline.cancels):
                if task.cancelling() == 0:
                    break
                task.uncancel()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._scan)
        self._timer_at = when

    def _scan(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        # The loop may run a timer up to its clock resolution early; that counts as due.
        now = self._loop.time()
        due_by = now + _DEADLINE_RESOLUTION
        earliest = float("inf")
        for deadline in self._active:
            if deadline.due <= due_by:
                deadline.expire(now)
            earliest = min(earliest, deadline.due)
        if earliest != float("inf"):
            # Never sooner than the resolution: many deadlines close together cost one scan.
            self._arm(max(earliest, now + _DEADLINE_RESOLUTION))


@functools.cache
def _is_async(job_class: type[Job], method: str) -> bool:
    return inspect.iscoroutinefunction(getattr(job_class, method))


def _by_token(claims: Iterable[_Claimed]) -> tuple[list[str], list[str]]:
    """The claims' lease tokens, and for each the ids it holds as one array literal.

    A claim takes one token for its whole batch, so a batch of acknowledgements is one token and
    one text parameter: psycopg adapting a list of ids and a list of tokens element by element
    cost more than the rest of acknowledging them.
    """
    groups: dict[uuid.UUID, list[str]] = {}
    for claimed in claims:
        ids = groups.get(claimed.token)
        if ids is None:
            groups[claimed.token] = ids = []
        ids.append(str(claimed.id))
    return [str(token) for token in groups], ["{" + ",".join(ids) + "}" for ids in groups.values()]


def _limit_params(job_classes: Iterable[type[Job]]) -> dict[str, Any]:
    """The limited job types among `job_classes`, as the arrays the limited claim takes."""
    limited: dict[str, JobLimits] = {}
    for job_class in job_classes:
        limits = job_limits(job_class)
        if limits is not None:
            limited[job_class.job_name] = limits
    names = sorted(limited)  # lock_limits locks in this order
    return {
        "job_types": names,
        "concurrencies": [limited[name].concurrency for name in names],
        "rate_limits": [limited[name].rate_limit for name in names],
        "rate_periods": [limited[name].rate_period_seconds for name in names],
        "limit_fields": [limited[name].limit_field for name in names],
    }


# renew_leases with no progress to write (the renewal before failed() runs).
_NO_PROGRESS: dict[str, list[Any]] = {"progress_ids": [], "progress": [], "progress_messages": []}


def _progress_params(
    claims: Iterable[_Claimed], redact: Callable[[str], str]
) -> tuple[dict[str, list[Any]], list[tuple[_Claimed, ProgressReport]]]:
    """The progress `claims` reported since the last renewal wrote theirs, as renew_leases takes
    it (messages made storable: capped, no NUL, passwords masked), and which report is whose."""
    reports: list[tuple[_Claimed, ProgressReport]] = []
    for claimed in claims:
        if claimed.job is not None:
            report = reported_progress(claimed.job)
            if report is not None and report is not claimed.progress_sent:
                reports.append((claimed, report))
    if not reports:
        return _NO_PROGRESS, reports
    return {
        "progress_ids": [claimed.id for claimed, _ in reports],
        "progress": [fraction for _, (fraction, _) in reports],
        "progress_messages": [
            None if message is None else clean_text(message, MAX_PROGRESS_MESSAGE_CHARS, redact)
            for _, (_, message) in reports
        ],
    }, reports


def _held_params(claims: Iterable[_Claimed]) -> dict[str, Any]:
    tokens, ids = _by_token(claims)
    return {"tokens": tokens, "ids": ids}


def _ack_params(acks: dict[int, _Claimed]) -> dict[str, Any]:
    tokens, ids = _by_token(acks.values())
    return {"done_tokens": tokens, "done_ids": ids}
