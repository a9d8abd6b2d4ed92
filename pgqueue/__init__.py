"""pgqueue: a durable job queue that needs nothing but PostgreSQL.

A job is enqueued inside the caller's own database transaction, so it exists if and only if that
transaction commits.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgqueue.errors import DispatchError, PgQueueError
    from pgqueue.failed import FailedJobs
    from pgqueue.job import Job
    from pgqueue.outcome import Snooze
    from pgqueue.queue import AsyncQueue, Queue
    from pgqueue.results import JobStatus
    from pgqueue.schedules import schedule
    from pgqueue.settings import Settings
    from pgqueue.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AsyncQueue",  # Queue for asyncio: await dispatch/bulk/size
    "DispatchError",  # a job refused before anything was written
    "FailedJobs",  # list/show/retry/forget/flush failed jobs (AsyncFailedJobs in pgqueue.failed)
    "Job",  # subclass it: payload fields, handle(), failed(), queue/max_tries/timeout/...
    "JobStatus",  # queue.status(id): state, attempts, progress, result, error, timestamps
    "PgQueueError",  # the root of every pgqueue error
    "Queue",  # dispatch(job, conn=...), bulk(jobs), size(queue)
    "Settings",  # PGQUEUE_* configuration
    "Snooze",  # raise Snooze(seconds) in handle(): back in the queue after that long, no try spent
    "Worker",  # async with Worker(queues=...): a worker inside your app (pgqueue work is the CLI's)
    "__version__",
    "schedule",  # schedule(cron, job, name=...): a periodic job with a payload
]

# The module of each public name. A name is imported when first used (PEP 562), so a process
# that needs a few of them loads only those: a worker whose app says `from pgqueue import Job`
# starts without Queue's and FailedJobs' modules.
_HOMES = {
    "AsyncQueue": "pgqueue.queue",
    "DispatchError": "pgqueue.errors",
    "FailedJobs": "pgqueue.failed",
    "Job": "pgqueue.job",
    "JobStatus": "pgqueue.results",
    "PgQueueError": "pgqueue.errors",
    "Queue": "pgqueue.queue",
    "Settings": "pgqueue.settings",
    "Snooze": "pgqueue.outcome",
    "Worker": "pgqueue.worker",
    "schedule": "pgqueue.schedules",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pgqueue' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
