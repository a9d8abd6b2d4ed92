"""The job module a Django worker imports (`manage.py pgqueue_work` passes it as `--app`).

Importing it readies a process to run Django tasks, the worker's and each child process that
runs blocking tasks alike (a child starts fresh, from `DJANGO_SETTINGS_MODULE`, which manage.py
sets): Django is set up if it is not yet, the `tasks` module of every installed app is imported,
and the job types of every pgqueue backend in TASKS are made from its OPTIONS. Nothing else is
imported because a row names it (`pgqueue.contrib.django.job.resolve_task`).
"""

from __future__ import annotations

from pgqueue.contrib.django.setup import prepare_worker

prepare_worker()
