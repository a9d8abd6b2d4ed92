"""The Django app: `"pgqueue.contrib.django"` in INSTALLED_APPS, under the label `pgqueue`."""

from __future__ import annotations

from django.apps import AppConfig


class PgQueueConfig(AppConfig):
    """Brings the management commands, the failed-jobs admin and the queues page."""

    name = "pgqueue.contrib.django"
    label = "pgqueue"
    verbose_name = "pgqueue"
    default_auto_field = "django.db.models.BigAutoField"
