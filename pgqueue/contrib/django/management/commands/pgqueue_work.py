"""`python manage.py pgqueue_work`: a pgqueue worker running this project's Django tasks.

It takes the flags of `pgqueue work` (`--queue`, `--concurrency`, `--stop-when-empty`, ...) and
runs it with Django set up: the tasks are those of the installed apps' `tasks` modules (`--app`
adds modules, such as ones defining pgqueue `Job` classes). Without `--queue` (and with
PGQUEUE_QUEUE unset) it serves the queues the pgqueue backends in TASKS allow (their QUEUES).
"""

from __future__ import annotations

from typing import Any

import pydantic

from pgqueue.contrib.django.commands import PgQueueCommand
from pgqueue.contrib.django.setup import worker_queues
from pgqueue.settings import Settings

# Imported by the worker and by each child process it starts for blocking tasks.
WORKER_MODULE = "pgqueue.contrib.django.worker"


class Command(PgQueueCommand):
    help = "Run a pgqueue worker for this project's Django tasks (the flags of `pgqueue work`)."
    pgqueue_command = "work"

    def pgqueue_args(self, options: dict[str, Any]) -> list[str]:
        argv = ["--app", WORKER_MODULE]
        if not options.get("queue") and not _queues_in_environment():
            argv += ["--queue", ",".join(worker_queues())]
        return argv


def _queues_in_environment() -> bool:
    try:
        return Settings().queue is not None
    except pydantic.ValidationError:
        return True  # invalid: `pgqueue work` names the variable
