"""Per-queue stats: what `pgqueue stats` shows, for a person, a script or a web admin.

For each queue (every queue with jobs, failed jobs, or a registered worker serving it):

- **ready**: `lease_token IS NULL AND run_at <= now()`, what the claim would pick;
- **scheduled**: waiting with `run_at` in the future (delays, retry backoff);
- **running**: holding a lease (an expired, not yet rescued lease still counts: see `pgqueue doctor`);
- **failed_last_hour** and **failed_total**: rows in `failed_jobs`;
- **oldest_wait_seconds**: how long the oldest ready job has waited since it became ready
  (`now() - run_at`), None when nothing is ready. Counting from `run_at` rather than `enqueued_at`
  keeps delayed jobs and retries from looking late;
- **completed_per_minute**: see below;
- **paused_at** and **paused_reason**: since when and why the queue is paused (`pgqueue queues
  pause`), None when it runs; **concurrency**, **rate_limit** and **rate_period_seconds**: its
  runtime limits (`pgqueue queues limit`), None when it has none. A queue that was paused or
  limited is listed even without jobs;
- **held_by_limits**: ready jobs a concurrency or rate limit holds back right now (see below);
  **at_limit**: the queue's own runtime limit is reached, so none of its ready jobs can start.

Held back by limits. Counted in the database as the limited claim counts (docs/limits.md): for
each (job type, key) in `job_limits`, its ready jobs beyond the least of its free slots (leases
below `concurrency`) and its starts left in the rate window (`limit_starts`); for a queue with
runtime limits, its ready jobs beyond the queue's allowance; per queue the larger of the two, since
a job starts only when both allow it. What this cannot see, by design:

- a class limit lives in the worker's import of the class: the database knows it only once a
  worker importing the class has started (it registers its limited types in `job_limits`), and
  holds it as the last such worker registered it (a limit since removed from the class stays
  there, but holds nothing back once no worker claims with it: plain claims leave
  `jobs.limit_key` NULL and record no starts);
- a (type, key) allowance is shared by every queue its jobs are in, and each queue's count assumes
  it alone used the allowance, so a type spread over several queues can show fewer held back;
- a paused queue's ready jobs wait for the pause, whatever this count says (`paused_at`).

Completion rate. A finished job's row is deleted, so the only record of completions is each worker's
`jobs_completed` counter in `workers`, which its heartbeat adds to (every `lease / 3`, 10 s by
default). One read therefore cannot know a rate, and says so (None). Two reads can: `Stats.since`
divides the counters' growth by the time between the reads, and `RateWindow` keeps the reads of
`pgqueue stats --watch` so the rate covers the last minute. Known limits, by design:

- a counter is per worker, not per queue: a queue's rate is known when every worker that completed
  jobs meanwhile serves that queue alone; a worker serving several queues makes their rates unknown
  (the total over all queues stays known);
- a worker that stops cleanly deletes its row and takes its last few seconds of completions with it;
- counters move in heartbeat steps, so a window shorter than a few heartbeats is lumpy.

Vacuum held back. Every completed job leaves a dead row that vacuum can remove only once no
snapshot older than it remains, so a read also names what holds back vacuum the most
(`Stats.xmin_holder`, the `XminHolder` that `pgqueue doctor` rates) and adds a one-line warning
to `Stats.warnings` once it is `held_back_warn_seconds` old (default 60 s, doctor's
HELD_BACK_WARN_SECONDS). A slot's or a standby's age is unknown, so those are named but not warned
about here: `pgqueue doctor` rates them against the jobs table's dead tuples.

Progress. The running jobs whose handlers reported progress (`self.progress()`, docs/results.md)
are listed too (`Stats.progress`, oldest claim first, at most `PROGRESS_LISTED`, with
`progress_total` saying how many there are), as their workers' last heartbeats wrote it.

Reads are one plan of four statements (`worker_counters`, then `queue_stats` and
`running_progress` at the same moment, then `oldest_xmin_holder`), run by `read_stats` on a
blocking connection or `read_stats_async` on an asyncio one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg

from pgqueue.connection import connect, translate
from pgqueue.doctor import HELD_BACK_WARN_SECONDS, XminHolder
from pgqueue.settings import DEFAULT_SCHEMA, Settings
from pgqueue.sql import Plan, Statement, queries_for, run_plan, run_plan_async

# `pgqueue stats --watch` reports completions over this many seconds (once it has read that long).
RATE_WINDOW_SECONDS = 60.0
# Running jobs with progress listed by a read (the oldest claims); the rest are counted.
PROGRESS_LISTED = 10


@dataclass(frozen=True)
class QueueStats:
    """One queue's numbers at one moment (see the module docstring for each field)."""

    queue: str
    ready: int
    scheduled: int
    running: int
    failed_last_hour: int
    failed_total: int
    oldest_wait_seconds: float | None
    completed_per_minute: float | None = None
    paused_at: datetime | None = None
    paused_reason: str | None = None
    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_seconds: int | None = None
    held_by_limits: int = 0
    at_limit: bool = False

    @property
    def paused(self) -> bool:
        """Whether the claim takes none of this queue's jobs (`pgqueue queues pause`)."""
        return self.paused_at is not None

    def to_json(self) -> dict[str, Any]:
        """The numbers as a JSON-ready dict; unknown values are None (null), times ISO 8601."""
        return {
            "queue": self.queue,
            "ready": self.ready,
            "scheduled": self.scheduled,
            "running": self.running,
            "failed_last_hour": self.failed_last_hour,
            "failed_total": self.failed_total,
            "oldest_wait_seconds": self.oldest_wait_seconds,
            "completed_per_minute": self.completed_per_minute,
            "paused": self.paused,
            "paused_at": None if self.paused_at is None else self.paused_at.isoformat(),
            "paused_reason": self.paused_reason,
            "concurrency": self.concurrency,
            "rate_limit": self.rate_limit,
            "rate_period_seconds": self.rate_period_seconds,
            "held_by_limits": self.held_by_limits,
            "at_limit": self.at_limit,
        }


@dataclass(frozen=True)
class JobProgress:
    """A running job's last reported progress: `progress` from 0 to 1, its `message` (or None),
    and `running_seconds` since its attempt was claimed."""

    id: int
    queue: str
    job_type: str
    progress: float
    message: str | None
    running_seconds: float

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return {
            "id": self.id,
            "queue": self.queue,
            "job_type": self.job_type,
            "progress": self.progress,
            "message": self.message,
            "running_seconds": self.running_seconds,
        }


@dataclass(frozen=True)
class WorkerCounter:
    """A worker's queues and its `jobs_completed` counter when the stats were read."""

    queues: tuple[str, ...]
    completed: int


@dataclass(frozen=True)
class Stats:
    """Every queue's stats at `taken_at` (database time).

    `window_seconds` and `completed_per_minute` (all queues together) are None on a single read;
    `since` fills them in from an earlier read. `xmin_holder` is what holds back vacuum the most
    (None when nothing does); `warnings` has one line for each thing a person should look at.
    `progress` lists running jobs that reported progress (the oldest claims, at most
    PROGRESS_LISTED), `progress_total` counts them all.
    """

    taken_at: datetime
    queues: tuple[QueueStats, ...]
    workers: Mapping[str, WorkerCounter] = field(default_factory=dict)
    window_seconds: float | None = None
    completed_per_minute: float | None = None
    xmin_holder: XminHolder | None = None
    warnings: tuple[str, ...] = ()
    progress: tuple[JobProgress, ...] = ()
    progress_total: int = 0

    def since(self, earlier: Stats) -> Stats:
        """These stats with completion rates measured from `earlier` to now.

        A worker absent from `earlier` registered after it, so its whole counter counts. A queue's
        rate stays None when a worker that also serves other queues completed jobs meanwhile,
        since its counter cannot be split between them.
        """
        window = (self.taken_at - earlier.taken_at).total_seconds()
        if window <= 0:
            return self
        done: dict[str, int] = {}
        for worker_id, counter in self.workers.items():
            before = earlier.workers.get(worker_id)
            done[worker_id] = max(counter.completed - (before.completed if before else 0), 0)
        per_minute = 60.0 / window
        queues = []
        for queue in self.queues:
            serving = [wid for wid, c in self.workers.items() if queue.queue in c.queues]
            shared = any(len(self.workers[wid].queues) > 1 and done[wid] for wid in serving)
            rate = None if shared else sum(done[wid] for wid in serving) * per_minute
            queues.append(replace(queue, completed_per_minute=rate))
        return replace(
            self,
            queues=tuple(queues),
            window_seconds=window,
            completed_per_minute=sum(done.values()) * per_minute,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready document: `taken_at` in ISO 8601, the window, the total rate, the queues,
        what holds back vacuum (null when nothing does) and the warnings (a list of lines)."""
        return {
            "taken_at": self.taken_at.isoformat(),
            "window_seconds": self.window_seconds,
            "completed_per_minute": self.completed_per_minute,
            "queues": [queue.to_json() for queue in self.queues],
            "xmin_holder": None if self.xmin_holder is None else self.xmin_holder.to_json(),
            "warnings": list(self.warnings),
            "progress": [job.to_json() for job in self.progress],
            "progress_total": self.progress_total,
        }


class RateWindow:
    """Successive reads turned into stats with completion rates over the last `seconds`.

    `add` keeps the newest read that is at least `seconds` old as the baseline (until reads span
    that long, the first read), so the window is about a minute once `--watch` has run that long.

    Parameters:
        seconds: the span rates cover once reads go back that far (default 60).
    """

    def __init__(self, seconds: float = RATE_WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._reads: deque[Stats] = deque()

    def add(self, stats: Stats) -> Stats:
        """Record a read and return it with rates since the baseline (none for the first read)."""
        self._reads.append(stats)
        cutoff = stats.taken_at.timestamp() - self.seconds
        while len(self._reads) > 1 and self._reads[1].taken_at.timestamp() <= cutoff:
            self._reads.popleft()
        if len(self._reads) == 1:
            return stats
        return stats.since(self._reads[0])


def read_stats(
    conn: psycopg.Connection[Any],
    schema: str = DEFAULT_SCHEMA,
    *,
    at: datetime | None = None,
    held_back_warn_seconds: float = HELD_BACK_WARN_SECONDS,
) -> Stats:
    """Read every queue's stats through a blocking psycopg connection.

    Parameters:
        conn: used as it is (never committed or closed); autocommit is best, so no snapshot lingers.
        schema: the schema holding pgqueue's tables (default `pgqueue`).
        at: the moment to evaluate ready/scheduled and the last hour at; default the database's
            now(). Tests use it to put rows exactly on either side of a boundary.
        held_back_warn_seconds: warn once what holds back vacuum is this old (default 60).
    """
    try:
        return run_plan(_read(schema, at, held_back_warn_seconds), conn)
    except psycopg.Error as exc:
        raise translate(exc, schema=schema) from exc


async def read_stats_async(
    conn: psycopg.AsyncConnection[Any],
    schema: str = DEFAULT_SCHEMA,
    *,
    at: datetime | None = None,
    held_back_warn_seconds: float = HELD_BACK_WARN_SECONDS,
) -> Stats:
    """`read_stats` through an asyncio psycopg connection."""
    try:
        return await run_plan_async(_read(schema, at, held_back_warn_seconds), conn)
    except psycopg.Error as exc:
        raise translate(exc, schema=schema) from exc


def watch_stats(settings: Settings, interval: float | None = None) -> Generator[Stats, None, None]:
    """Connect as `settings` say and yield reads: one when `interval` is None, else one every
    `interval` seconds until the caller stops, each with rates over the last minute (`RateWindow`).

    This is `pgqueue stats [--watch]`. It uses one autocommit connection, closed when the generator
    is; a failed connect or read raises DatabaseError (the URL's password masked).
    """
    with connect(settings, application_name="pgqueue-stats") as conn:
        window = RateWindow()
        while True:
            yield window.add(read_stats(conn, settings.db_schema))
            if interval is None:
                return
            time.sleep(interval)


def _read(schema: str, at: datetime | None, held_back_warn_seconds: float) -> Plan[Stats]:
    queries = queries_for(schema)
    rows = yield Statement(queries["worker_counters"], {"at": at})
    taken_at: datetime = rows[0][0]
    workers = {
        str(worker_id): WorkerCounter(tuple(queues), int(completed))
        for _, worker_id, queues, completed in rows
        if worker_id is not None
    }
    # The same moment for both statements, so a job is never counted on both sides of `at`.
    rows = yield Statement(queries["queue_stats"], {"at": taken_at})
    queues = tuple(
        QueueStats(
            queue=str(queue),
            ready=int(ready),
            scheduled=int(scheduled),
            running=int(running),
            failed_last_hour=int(failed_last_hour),
            failed_total=int(failed_total),
            oldest_wait_seconds=None if oldest is None else float(oldest),
            paused_at=paused_at,
            paused_reason=paused_reason,
            concurrency=concurrency,
            rate_limit=rate_limit,
            rate_period_seconds=rate_period,
            held_by_limits=int(held),
            at_limit=bool(at_limit),
        )
        for (
            queue,
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
    )
    rows = yield Statement(queries["running_progress"], {"at": taken_at, "limit": PROGRESS_LISTED})
    progress = tuple(
        JobProgress(
            int(job_id), str(queue), str(job_type), float(done), message, float(seconds or 0)
        )
        for job_id, queue, job_type, done, message, seconds, _ in rows
    )
    progress_total = int(rows[0][6]) if rows else 0
    rows = yield Statement(queries["oldest_xmin_holder"], {})
    holder = XminHolder.from_row(rows[0]) if rows else None
    return Stats(
        taken_at=taken_at,
        queues=queues,
        workers=workers,
        xmin_holder=holder,
        warnings=_held_back_warnings(holder, held_back_warn_seconds),
        progress=progress,
        progress_total=progress_total,
    )


def _held_back_warnings(holder: XminHolder | None, warn_seconds: float) -> tuple[str, ...]:
    """One line when what holds back vacuum is `warn_seconds` old or more. A slot's or a standby's
    age is unknown: doctor rates those, against the jobs table's dead tuples."""
    if holder is None or holder.seconds is None or holder.seconds < warn_seconds:
        return ()
    return (
        f"vacuum held back by {holder.describe()}: dead jobs rows pile up until it ends; "
        f"{holder.fix()}",
    )
