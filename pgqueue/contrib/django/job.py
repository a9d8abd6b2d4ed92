"""The pgqueue job type that runs a Django task, and how a worker finds the task a row names.

A Django task is stored as one pgqueue job whose payload is the task's path (`module.function`),
its arguments and its keyword arguments, as JSON. Its type is made per backend alias from the
backend's OPTIONS, so `KEEP_RESULT`, `MAX_TRIES` and `TIMEOUT` are stored and applied the way a
`Job` class's own settings are: `task_job_classes(alias, ...)` gives two types, one for plain
`def` tasks (run in a child process the worker can kill on timeout, as every blocking pgqueue job)
and one for `async def` tasks (run on the worker's event loop).

pgqueue never imports code because a row names it. A worker imports the `tasks` module of every
installed app when it starts (`discover_tasks`), and `resolve_task` only looks the row's path up
among the modules already imported: it must name a `@task` of an installed app, else the job fails
at once with `UnknownJobTypeError` saying what to fix.
"""

from __future__ import annotations

import functools
import sys
import traceback
from datetime import timedelta
from typing import Any, ClassVar

from django.apps import apps
from django.db import close_old_connections
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules
from pydantic import Field

from pgqueue.contrib.django.compat import (
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from pgqueue.errors import UnknownJobTypeError
from pgqueue.job import Job

# The stored type names: `django.tasks:<alias>` and `django.tasks:<alias>:async`.
JOB_NAME_PREFIX = "django.tasks:"
ASYNC_SUFFIX = ":async"
# The module in each installed app that a worker imports to learn its tasks (Django's habit).
TASK_MODULE = "tasks"


class DjangoTask(Job, abstract=True):
    """A Django task as a pgqueue job: `task` is the function's path, `args` and `kwargs` what
    `enqueue()` was given (checked as JSON by Django's `normalize_json` before dispatch).

    What `handle` returns is kept (for the backend's `KEEP_RESULT`) as
    `{"task": ..., "args": ..., "kwargs": ..., "return_value": ...}`: `job_results` holds no
    payload, and `get_result()` needs the task and its arguments to rebuild the `TaskResult`.
    """

    # Which TASKS alias this type belongs to (the signals' results name it as their backend).
    backend_alias: ClassVar[str] = "default"
    # A row naming no task of this project fails at once: another try would find none either.
    fail_on = (UnknownJobTypeError,)

    task: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    def handle(self) -> dict[str, Any]:
        """Run the task in this (child) process, with fresh database connections around it."""
        task = resolve_task(self.task)
        close_old_connections()  # a long-lived process: drop connections the server closed
        try:
            running = self._running(task)
            try:
                value = normalize_json(task.call(*self._call_args(running), **self.kwargs))
            except BaseException as exc:
                _ended(running, TaskResultStatus.FAILED, exc)
                raise
            return self._succeeded(running, value)
        finally:
            close_old_connections()

    def _running(self, task: Any) -> Any:
        """The `TaskResult` the task's context and Django's signals see while it runs."""
        now = timezone.now()
        running = TaskResult(
            task=task,
            id=str(self.job_id),
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=self.args,
            kwargs=self.kwargs,
            backend=self.backend_alias,
            errors=[],
            # One entry per attempt, as Django counts attempts; pgqueue keeps no worker per try.
            worker_ids=[""] * max(self.attempts, 1),
        )
        task_started.send(sender=_backend_class(), task_result=running)
        return running

    def _call_args(self, running: Any) -> list[Any]:
        if running.task.takes_context:
            return [TaskContext(task_result=running), *self.args]
        return list(self.args)

    def _succeeded(self, running: Any, value: Any) -> dict[str, Any]:
        object.__setattr__(running, "_return_value", value)
        _ended(running, TaskResultStatus.SUCCESSFUL)
        return {"task": self.task, "args": self.args, "kwargs": self.kwargs, "return_value": value}


class AsyncDjangoTask(DjangoTask, abstract=True):
    """`DjangoTask` for `async def` tasks, run on the worker's event loop."""

    async def handle(self) -> dict[str, Any]:  # type: ignore[override]
        """Await the task; Django's connections are looked after in its sync thread."""
        from asgiref.sync import sync_to_async

        task = resolve_task(self.task)
        # The ORM's sync_to_async calls run in one thread: its connections are the ones to renew.
        await sync_to_async(close_old_connections)()
        try:
            running = self._running(task)
            try:
                value = normalize_json(await task.acall(*self._call_args(running), **self.kwargs))
            except BaseException as exc:
                _ended(running, TaskResultStatus.FAILED, exc)
                raise
            return self._succeeded(running, value)
        finally:
            await sync_to_async(close_old_connections)()


def _ended(running: Any, status: Any, exc: BaseException | None = None) -> None:
    object.__setattr__(running, "status", status)
    object.__setattr__(running, "finished_at", timezone.now())
    if exc is not None:
        cls = type(exc)
        running.errors.append(
            TaskError(
                exception_class_path=f"{cls.__module__}.{cls.__qualname__}",
                traceback="".join(traceback.format_exception(exc)),
            )
        )
    task_finished.send(sender=_backend_class(), task_result=running)


def _backend_class() -> type[Any]:
    from pgqueue.contrib.django.backend import PgQueueBackend  # it imports this module

    return PgQueueBackend


# (alias, keep_result, max_tries, timeout) -> the two types, so a backend made again (Django makes
# one per thread) reuses them.
_classes: dict[tuple[Any, ...], tuple[type[DjangoTask], type[DjangoTask]]] = {}


def task_job_classes(
    alias: str,
    *,
    keep_result: str | float | timedelta | None,
    max_tries: int,
    timeout: float,
) -> tuple[type[DjangoTask], type[DjangoTask]]:
    """The job types of backend `alias`: (for `def` tasks, for `async def` tasks), registered
    under `django.tasks:<alias>` and `django.tasks:<alias>:async`. Raises `JobDefinitionError`
    for a setting a `Job` class could not have either."""
    key = (alias, keep_result, max_tries, timeout)
    made = _classes.get(key)
    if made is None:
        made = (
            _job_class(DjangoTask, alias, "", keep_result, max_tries, timeout),
            _job_class(AsyncDjangoTask, alias, ASYNC_SUFFIX, keep_result, max_tries, timeout),
        )
        _classes[key] = made
    return made


def _job_class(
    base: type[DjangoTask],
    alias: str,
    suffix: str,
    keep_result: str | float | timedelta | None,
    max_tries: int,
    timeout: float,
) -> type[DjangoTask]:
    # A class name of its own per alias, so the registry tells two aliases' types apart.
    name = f"{base.__name__}_{alias.encode().hex()}"
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "job_name": f"{JOB_NAME_PREFIX}{alias}{suffix}",
        "backend_alias": alias,
        "keep_result": keep_result,
        "max_tries": max_tries,
        "timeout": timeout,
    }
    return type(name, (base,), namespace)


@functools.cache
def discover_tasks() -> None:
    """Import the `tasks` module of every installed app (once per process): what a worker may
    run, and what `get_result()` resolves a stored task path among."""
    autodiscover_modules(TASK_MODULE)


def resolve_task(path: str) -> Any:
    """The `Task` that `path` (`module.function`) names, among the modules already imported.

    Raises `UnknownJobTypeError` when the path is outside the installed apps, its module was not
    imported (not an app's `tasks` module, nor an `--app` module of the worker), or the name is
    no `@task`.
    """
    module_name, _, name = path.rpartition(".")
    if not module_name or not name:
        raise UnknownJobTypeError(f"{path!r} is not a task path (module.function)")
    if apps.get_containing_app_config(path) is None:
        raise UnknownJobTypeError(
            f"task {path!r} is not in an installed app: pgqueue runs only the tasks of the apps in "
            "INSTALLED_APPS"
        )
    module = sys.modules.get(module_name)
    if module is None:
        raise UnknownJobTypeError(
            f"task module {module_name!r} was not imported by this worker: define tasks in an "
            f"app's {TASK_MODULE}.py (imported for every installed app), or name the module with "
            "`manage.py pgqueue_work --app MODULE`"
        )
    found = getattr(module, name, None)
    if not isinstance(found, Task):
        raise UnknownJobTypeError(
            f"{path!r} is not a task: decorate the function with @task (django.tasks)"
        )
    return found
