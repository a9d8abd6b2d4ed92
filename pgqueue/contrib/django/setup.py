"""What a Django worker needs to know of the project: its pgqueue backends, their queues and
database, and the tasks of its installed apps."""

from __future__ import annotations

from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from pgqueue.contrib.django.compat import task_backends
from pgqueue.contrib.django.job import discover_tasks


def pgqueue_backends() -> list[Any]:
    """Every backend in TASKS that is a `PgQueueBackend`, in the order TASKS lists them."""
    from pgqueue.contrib.django.backend import PgQueueBackend

    found = []
    for alias, params in (getattr(settings, "TASKS", None) or {}).items():
        try:
            backend_class = import_string(params["BACKEND"])
        except (ImportError, KeyError):
            continue  # Django's own check names a broken entry
        if isinstance(backend_class, type) and issubclass(backend_class, PgQueueBackend):
            found.append(task_backends[alias])
    return found


def prepare_worker() -> None:
    """Set Django up if this process has not (a fresh child), import the installed apps' task
    modules, and make the job types of every pgqueue backend."""
    if not apps.ready:
        try:
            django.setup()
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(
                f"a pgqueue worker for Django runs with the project's settings (run `python "
                f"manage.py pgqueue_work`, which sets DJANGO_SETTINGS_MODULE): {exc}"
            ) from exc
    discover_tasks()
    if not pgqueue_backends():
        raise ImproperlyConfigured(
            "no TASKS backend is pgqueue's: set TASKS = {'default': {'BACKEND': "
            "'pgqueue.contrib.django.PgQueueBackend'}} in your settings"
        )


def worker_queues() -> list[str]:
    """The queues the pgqueue backends allow (their QUEUES), in order, for a worker that names
    none: every queue a task of this project can be enqueued in."""
    queues: dict[str, None] = {}
    for backend in pgqueue_backends():
        params = settings.TASKS[backend.alias]
        queues.update(dict.fromkeys(params.get("QUEUES", ["default"]) or ["default"]))
    return list(queues)


def worker_database() -> str:
    """The DATABASES alias the pgqueue backends write through (they must agree)."""
    databases = {backend.database for backend in pgqueue_backends()}
    if len(databases) > 1:
        raise ImproperlyConfigured(
            f"the pgqueue backends write to several databases ({', '.join(sorted(databases))}): "
            "name the one to serve with --database"
        )
    return databases.pop() if databases else "default"
