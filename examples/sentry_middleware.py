"""Sentry: report a job's errors with the job they came from, as a pgqueue middleware.

    pip install sentry-sdk
    export SENTRY_DSN=https://...@sentry.example/1        # sentry_sdk.init() reads it
    pgqueue work --app myapp.jobs --middleware examples.sentry_middleware:report_to_sentry

Call `sentry_sdk.init()` where the worker starts (the `--app` module, say). Each attempt runs in
an isolation scope of its own, so tags never leak from one job to another running beside it,
and an error is sent with the job's type, queue, id and attempt. Every failed attempt is
reported, retries included; a `Snooze` is not an error and is left alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import sentry_sdk

from pgqueue import Job, Snooze


async def report_to_sentry(job: Job, call_next: Callable[[], Awaitable[None]]) -> None:
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("pgqueue.job_type", type(job).job_name)
        scope.set_tag("pgqueue.queue", type(job).queue)
        scope.set_context("pgqueue", {"job_id": job.job_id, "attempt": job.attempts})
        try:
            await call_next()
        except Snooze:
            raise
        except Exception as exc:
            sentry_sdk.capture_exception(exc)
            raise
