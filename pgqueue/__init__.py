"""pgqueue: a durable job queue that needs nothing but PostgreSQL.

A job is enqueued inside the caller's own database transaction, so it exists if and only if that
transaction commits.
"""

from pgqueue.errors import DispatchError, PgQueueError
from pgqueue.failed import FailedJobs
from pgqueue.job import Job
from pgqueue.queue import AsyncQueue, Queue
from pgqueue.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AsyncQueue",  # Queue for asyncio: await dispatch/bulk/size
    "DispatchError",  # a job refused before anything was written
    "FailedJobs",  # list/show/retry/forget/flush failed jobs (AsyncFailedJobs in pgqueue.failed)
    "Job",  # subclass it: payload fields, handle(), failed(), queue/max_tries/timeout/...
    "PgQueueError",  # the root of every pgqueue error
    "Queue",  # dispatch(job, conn=...), bulk(jobs), size(queue)
    "Settings",  # PGQUEUE_* configuration
    "__version__",
]
