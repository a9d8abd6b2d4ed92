"""pgqueue for Django: a `django.tasks` backend, a worker command, migrations and an admin.

```python
INSTALLED_APPS = [..., "pgqueue.contrib.django"]     # the commands and the admin pages
TASKS = {"default": {"BACKEND": "pgqueue.contrib.django.PgQueueBackend"}}
```

- `PgQueueBackend` (`backend.py`): `@task` functions' `enqueue()` writes a pgqueue job in the
  current `transaction.atomic()` block on Django's own connection; `get_result()` reads its status.
- `python manage.py pgqueue_work [the flags of pgqueue work]` runs a worker with Django set up,
  running the tasks of the installed apps' `tasks` modules; `pgqueue_migrate` creates pgqueue's
  schema in the backend's database.
- The admin lists, searches, retries and forgets failed jobs, and shows the queues, read-only.

On Django 5.2 the tasks framework is the `django-tasks` backport (`compat.py`). See
docs/django.md. The backend is imported when first named, so the app loads without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PgQueueBackend"]


def __getattr__(name: str) -> Any:
    # Lazy, so INSTALLED_APPS can load this package before Django's tasks framework is ready.
    if name == "PgQueueBackend":
        from pgqueue.contrib.django.backend import PgQueueBackend

        return PgQueueBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
