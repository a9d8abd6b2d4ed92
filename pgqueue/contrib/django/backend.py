"""`PgQueueBackend`: Django's tasks framework on pgqueue.

```python
TASKS = {"default": {"BACKEND": "pgqueue.contrib.django.PgQueueBackend"}}
```

`my_task.enqueue(...)` dispatches a pgqueue job on Django's own connection, inside whatever
`transaction.atomic()` block is open there: the task exists if and only if that transaction
commits (no `transaction.on_commit` needed). Outside a block, Django's connection is in autocommit
and the task is committed at once.

- The task's `queue_name` is the pgqueue queue; its `priority` is turned around, since Django runs
  higher priorities first (-100 to 100) and pgqueue lower ones: pgqueue priority = -priority.
- `run_after` is the job's `run_at` (a naive datetime is read in Django's `TIME_ZONE`).
- `get_result(id)` / `refresh()` read pgqueue's status of the job (`Queue.status`): queued,
  scheduled (a run_after or a retry's backoff) -> READY; running -> RUNNING; completed ->
  SUCCESSFUL with the return value; failed or cancelled -> FAILED with the error and traceback.
  Once a completed task's kept result is pruned (after `KEEP_RESULT`), or a failed one is
  forgotten, `get_result` raises `TaskResultDoesNotExist`.

OPTIONS (all optional):
    DATABASE: the DATABASES alias to write through (default "default"); `pgqueue_work` and
        `pgqueue_migrate` connect to the same database unless PGQUEUE_DATABASE_URL is set.
    KEEP_RESULT: how long a completed task's result stays readable: "1d" (the default), "12h",
        seconds or a timedelta; None keeps nothing.
    MAX_TRIES: tries per task before it fails (default 3, pgqueue's; retries back off
        exponentially). 1: a task that raises fails at once, as with Django's own backends.
    TIMEOUT: seconds an attempt may run before it is stopped (default 60, pgqueue's).

pgqueue's own settings (PGQUEUE_SCHEMA, PGQUEUE_MAX_PAYLOAD_BYTES, ...) come from the environment
as everywhere else.
"""

from __future__ import annotations

import contextlib
import datetime
from inspect import iscoroutinefunction
from typing import Any

import psycopg
import pydantic
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils import timezone

from pgqueue.connection import translate
from pgqueue.contrib.django.compat import (
    BaseTaskBackend,
    InvalidTask,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from pgqueue.contrib.django.database import psycopg_connection
from pgqueue.contrib.django.job import DjangoTask, discover_tasks, resolve_task, task_job_classes
from pgqueue.errors import InvalidQueueNameError, JobDefinitionError
from pgqueue.job import Job, validate_queue_name
from pgqueue.queue import Queue
from pgqueue.results import JobStatus
from pgqueue.settings import Settings
from pgqueue.sql import queries_for

DEFAULT_KEEP_RESULT = "1d"
_OPTIONS = ("DATABASE", "KEEP_RESULT", "MAX_TRIES", "TIMEOUT")
# pgqueue's states as Django's.
_STATUSES = {
    "queued": "READY",
    "scheduled": "READY",
    "running": "RUNNING",
    "completed": "SUCCESSFUL",
    "failed": "FAILED",
    "cancelled": "FAILED",
}
# A status read and the row read after it race a worker moving the job on; this many rounds settle.
_READ_ROUNDS = 5


class PgQueueBackend(BaseTaskBackend):
    """Django tasks as pgqueue jobs, written in the caller's transaction (see the module doc)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options: dict[str, Any] = dict(self.options)
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {unknown}; pgqueue's backend "
                f"takes {', '.join(_OPTIONS)}"
            )
        self.database: str = options.get("DATABASE", "default")
        try:
            self.settings = Settings()
            self.job_classes = task_job_classes(
                alias,
                keep_result=options.get("KEEP_RESULT", DEFAULT_KEEP_RESULT),
                max_tries=options.get("MAX_TRIES", Job.max_tries),
                timeout=options.get("TIMEOUT", Job.timeout),
            )
        except (JobDefinitionError, pydantic.ValidationError) as exc:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]: {exc}") from exc
        self.job_names = frozenset(job_class.job_name for job_class in self.job_classes)
        self.queue = Queue(self.settings)

    def validate_task(self, task: Any) -> None:
        """Django's checks, and that the queue name is one pgqueue can store."""
        super().validate_task(task)
        try:
            validate_queue_name(task.queue_name)
        except InvalidQueueNameError as exc:
            raise InvalidTask(str(exc)) from None

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Dispatch `task` with `args` and `kwargs` on Django's connection, in its open
        transaction; the `TaskResult` (READY) whose id is the pgqueue job id."""
        self.validate_task(task)
        args = normalize_json(list(args))  # TypeError for what JSON cannot hold, before any SQL
        kwargs = normalize_json(dict(kwargs))
        job_class = self.job_classes[1 if iscoroutinefunction(task.func) else 0]
        job = job_class(task=task.module_path, args=args, kwargs=kwargs)
        conn = connections[self.database]
        job_id = self.queue.dispatch(
            job,
            conn=conn,
            queue=task.queue_name,
            priority=-task.priority,
            run_at=None if task.run_after is None else _aware(task.run_after),
        )
        # What a status read would say now, but for the time, which is the application's: a
        # read would nearly treble what enqueue costs (measured 270 against 750 us), and in a
        # transaction the database's now() is the transaction's start anyway. refresh() reads
        # the stored time.
        status = JobStatus(
            id=job_id,
            state="queued" if task.run_after is None else "scheduled",
            attempts=0,
            progress=None,
            progress_message=None,
            result=None,
            error=None,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            queue=task.queue_name,
            job_type=job.job_name,
        )
        result = self._task_result(task, status, args, kwargs)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The `TaskResult` of the task `result_id` (its pgqueue job id), read in Django's
        current transaction; `TaskResultDoesNotExist` once nothing is kept of it."""
        job_id = _job_id(result_id)
        conn = connections[self.database]
        for _ in range(_READ_ROUNDS):
            status = self.queue.status(job_id, conn=conn)
            if status is None or status.job_type not in self.job_names:
                raise TaskResultDoesNotExist(result_id)
            if status.state == "completed":
                return self._completed(status)
            row = self._row(job_id)
            if row is not None:  # else it moved on between the two reads: read again
                return self._unfinished(status, *row)
        raise TaskResultDoesNotExist(result_id)

    def check(self, **kwargs: Any) -> list[Any]:
        """System checks: the DATABASE alias exists and is PostgreSQL."""
        if self.database not in connections:
            return [
                checks.Error(
                    f"TASKS[{self.alias!r}] writes through DATABASES[{self.database!r}], which "
                    "does not exist",
                    hint="Set OPTIONS['DATABASE'] to one of your DATABASES aliases.",
                    id="pgqueue.E001",
                )
            ]
        if connections[self.database].vendor != "postgresql":
            return [
                checks.Error(
                    f"TASKS[{self.alias!r}] needs PostgreSQL, and DATABASES[{self.database!r}] "
                    f"is {connections[self.database].vendor}",
                    id="pgqueue.E002",
                )
            ]
        return []

    def _row(self, job_id: int) -> tuple[str, int, str | None] | None:
        """(payload, priority, traceback) of a job in jobs or failed_jobs, or None."""
        conn = psycopg_connection(self.database)
        query = queries_for(self.settings.db_schema)["django_task_row"]
        try:
            rows = conn.execute(query, {"id": job_id}).fetchall()
        except psycopg.Error as exc:
            raise translate(exc, self.settings) from exc
        if not rows:
            return None
        payload, priority, traceback = rows[0]
        return payload, priority, traceback

    def _completed(self, status: JobStatus) -> Any:
        kept = status.result
        if not isinstance(kept, dict) or not isinstance(kept.get("task"), str):
            raise TaskResultDoesNotExist(str(status.id))  # not a result this backend wrote
        task = resolved(kept["task"])
        return self._task_result(
            task,
            status,
            kept.get("args", []),
            kept.get("kwargs", {}),
            return_value=kept.get("return_value"),
        )

    def _unfinished(
        self, status: JobStatus, payload: str, priority: int, traceback: str | None
    ) -> Any:
        job = self.job_classes[0].model_validate_json(payload)
        assert isinstance(job, DjangoTask)
        task = resolved(job.task)
        # The task as it was enqueued, where its queue and priority are still valid.
        with contextlib.suppress(InvalidTask, TypeError, ValueError):
            task = task.using(queue_name=status.queue, priority=-priority)
        return self._task_result(task, status, job.args, job.kwargs, traceback=traceback)

    def _task_result(
        self,
        task: Any,
        status: JobStatus,
        args: Any,
        kwargs: Any,
        *,
        return_value: Any = None,
        traceback: str | None = None,
    ) -> Any:
        errors = []
        if status.error is not None:
            exception_class = status.error.split(": ", 1)[0]
            errors.append(
                TaskError(exception_class_path=exception_class, traceback=traceback or status.error)
            )
        result = TaskResult(
            task=task,
            id=str(status.id),
            status=TaskResultStatus(_STATUSES[status.state]),
            enqueued_at=status.enqueued_at,
            started_at=status.started_at,
            finished_at=status.finished_at,
            last_attempted_at=status.started_at,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=errors,
            # One entry per attempt, as Django counts them; pgqueue keeps no worker per attempt.
            worker_ids=[""] * status.attempts,
        )
        if status.state == "completed":
            object.__setattr__(result, "_return_value", return_value)
        return result


def resolved(path: str) -> Any:
    """The `Task` at `path`, among the installed apps' task modules (imported once here)."""
    discover_tasks()
    return resolve_task(path)


def _job_id(result_id: object) -> int:
    text = str(result_id)
    if not text.isdecimal() or not text.isascii():
        raise TaskResultDoesNotExist(text)
    return int(text)


def _aware(moment: datetime.datetime) -> datetime.datetime:
    if timezone.is_naive(moment):  # USE_TZ = False: Django's times are in TIME_ZONE
        aware: datetime.datetime = timezone.make_aware(moment, timezone.get_default_timezone())
        return aware
    return moment
