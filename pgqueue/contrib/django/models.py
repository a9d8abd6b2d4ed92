"""Unmanaged models over pgqueue's tables, for the admin: Django never creates, alters or drops
them (`managed = False`); pgqueue's own migrations do (`manage.py pgqueue_migrate`).

The tables sit in pgqueue's schema (PGQUEUE_SCHEMA, default `pgqueue`), named whole in
`db_table` ('"pgqueue"."failed_jobs"', which Django leaves as it is), on the default database
unless a database router sends the `pgqueue` app elsewhere.
"""

from __future__ import annotations

from django.db import models

from pgqueue.settings import Settings

SCHEMA = Settings().db_schema


def _table(name: str) -> str:
    return f'"{SCHEMA}"."{name}"'


class FailedJob(models.Model):
    """A row of `failed_jobs`: a job that used its last try, or was cancelled (docs/schema.md)."""

    id = models.BigIntegerField(primary_key=True)
    queue = models.TextField()
    job_type = models.TextField()
    # The JSON as text: a row written by another tool may hold JSON that Python cannot load.
    payload = models.TextField()
    priority = models.IntegerField()
    attempts = models.IntegerField()
    max_tries = models.IntegerField()
    exception_class = models.TextField()
    exception_message = models.TextField()
    traceback = models.TextField()
    worker_id = models.TextField(null=True)
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    failed_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = _table("failed_jobs")
        ordering = ("-failed_at", "-id")
        verbose_name = "failed job"

    def __str__(self) -> str:
        return f"{self.job_type} #{self.id}"


class QueueBacklog(models.Model):
    """A row of the `queue_backlog` view: one queue's ready, scheduled and running jobs."""

    queue = models.TextField(primary_key=True)
    ready = models.BigIntegerField()
    scheduled = models.BigIntegerField()
    running = models.BigIntegerField()
    expired_leases = models.BigIntegerField()
    oldest_ready_at = models.DateTimeField(null=True)
    oldest_wait_seconds = models.FloatField()

    class Meta:
        managed = False
        db_table = _table("queue_backlog")
        ordering = ("queue",)
        verbose_name = "queue"

    def __str__(self) -> str:
        return str(self.queue)
