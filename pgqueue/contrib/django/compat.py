"""The one place that knows where Django's tasks framework lives.

Django 6 ships it as `django.tasks`; Django 5.2 has it as the `django-tasks` backport package
(module `django_tasks`, `pip install django-tasks`), with the same classes under the same names
but for two exceptions (`InvalidTaskError`) and the home of `normalize_json`. Every other module
of `pgqueue.contrib.django` imports these names from here.

Django has no type stubs here (django-stubs needs its mypy plugin), so the names are `Any` to
mypy: the boundary is this module, and the code around it is typed.
"""

from __future__ import annotations

import importlib
from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured

BACKPORT = django.VERSION < (6, 0)
_PACKAGE = "django_tasks" if BACKPORT else "django.tasks"

try:
    _tasks = importlib.import_module(_PACKAGE)
except ImportError as exc:  # only the backport can be missing
    raise ImproperlyConfigured(
        f"pgqueue's task backend needs Django's tasks framework: Django {django.get_version()} "
        "has it as the django-tasks backport, so `pip install django-tasks` (or upgrade to "
        "Django 6)"
    ) from exc

_base: Any = importlib.import_module(f"{_PACKAGE}.base")
_backends: Any = importlib.import_module(f"{_PACKAGE}.backends.base")
_exceptions: Any = importlib.import_module(f"{_PACKAGE}.exceptions")
_signals: Any = importlib.import_module(f"{_PACKAGE}.signals")
_json: Any = importlib.import_module("django_tasks.utils" if BACKPORT else "django.utils.json")

BaseTaskBackend: Any = _backends.BaseTaskBackend
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
TASK_MIN_PRIORITY: int = _base.TASK_MIN_PRIORITY
TASK_MAX_PRIORITY: int = _base.TASK_MAX_PRIORITY
InvalidTask: Any = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
task_backends: Any = _tasks.task_backends
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished
# Django's own check that a value is JSON (tuples become lists, bytes text; else TypeError).
normalize_json: Any = _json.normalize_json
