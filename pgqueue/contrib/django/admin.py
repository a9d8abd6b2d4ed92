"""The admin pages: failed jobs (list, search, traceback, retry, forget) and the queues.

Both are read-only views of pgqueue's tables. Retrying and forgetting are actions that call
`pgqueue.failed.FailedJobs` on the admin's own database connection, so a job is moved back to
`jobs` (or deleted) exactly as `pgqueue failed retry` / `forget` do it. They need the
`pgqueue.change_failedjob` and `pgqueue.delete_failedjob` permissions (a superuser has both).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.utils.html import format_html

from pgqueue.contrib.django.database import psycopg_connection
from pgqueue.contrib.django.models import FailedJob, QueueBacklog
from pgqueue.failed import FailedJobs
from pgqueue.settings import Settings

MESSAGE_CHARS = 120


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows pgqueue writes: viewed here, never added, edited or deleted through a form."""

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(FailedJob)
class FailedJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "what", "queue", "exception_class", "message", "attempts", "failed_at")
    list_filter = ("queue", "failed_at")
    search_fields = ("job_type", "exception_class", "exception_message")
    actions = ("retry", "forget")
    fields = (
        "id",
        "job_type",
        "queue",
        "payload_json",
        "priority",
        ("attempts", "max_tries"),
        "exception_class",
        "exception_message",
        "traceback_text",
        "worker_id",
        ("enqueued_at", "started_at", "failed_at"),
    )
    readonly_fields = tuple(
        name for entry in fields for name in (entry if isinstance(entry, tuple) else (entry,))
    )

    @admin.display(description="job")
    def what(self, job: FailedJob) -> str:
        """The task's path for a Django task, else the job type."""
        task = _payload(job.payload)
        if job.job_type.startswith("django.tasks:") and isinstance(task, dict):
            return str(task.get("task", job.job_type))
        return str(job.job_type)

    @admin.display(description="message")
    def message(self, job: FailedJob) -> str:
        text = str(job.exception_message)
        return text if len(text) <= MESSAGE_CHARS else f"{text[: MESSAGE_CHARS - 3]}..."

    @admin.display(description="payload")
    def payload_json(self, job: FailedJob) -> str:
        loaded = _payload(job.payload)
        text = job.payload if loaded is None else json.dumps(loaded, indent=2, ensure_ascii=False)
        return str(format_html("<pre>{}</pre>", text))

    @admin.display(description="traceback")
    def traceback_text(self, job: FailedJob) -> str:
        return str(format_html("<pre>{}</pre>", job.traceback))

    def get_search_results(self, request: Any, queryset: Any, search_term: str) -> tuple[Any, bool]:
        """Also find a job by its id."""
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term.isdecimal() and term.isascii() and int(term) < 2**63:
            found |= queryset.filter(id=int(term))
        return found, duplicates

    def has_retry_permission(self, request: Any) -> bool:
        return bool(request.user.has_perm("pgqueue.change_failedjob"))

    def has_forget_permission(self, request: Any) -> bool:
        return bool(request.user.has_perm("pgqueue.delete_failedjob"))

    @admin.action(description="Retry the selected failed jobs", permissions=["retry"])
    def retry(self, request: Any, queryset: Any) -> None:
        ids = list(queryset.values_list("id", flat=True))
        retried = FailedJobs(Settings()).retry(ids, conn=psycopg_connection(queryset.db))
        self.message_user(request, f"{len(retried)} job(s) moved back to their queue.")
        for failed_id, holder in retried.held.items():
            self.message_user(
                request,
                f"Job {failed_id} stays failed: job {holder} holds its unique key.",
                messages.WARNING,
            )

    @admin.action(description="Forget the selected failed jobs", permissions=["forget"])
    def forget(self, request: Any, queryset: Any) -> None:
        ids = list(queryset.values_list("id", flat=True))
        forgotten = FailedJobs(Settings()).forget(ids, conn=psycopg_connection(queryset.db))
        self.message_user(request, f"{len(forgotten)} failed job(s) forgotten.")


@admin.register(QueueBacklog)
class QueueBacklogAdmin(ReadOnlyAdmin):
    list_display = (
        "queue",
        "ready",
        "scheduled",
        "running",
        "expired_leases",
        "oldest_ready_at",
        "oldest_wait_seconds",
    )
    actions = None


def _payload(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
