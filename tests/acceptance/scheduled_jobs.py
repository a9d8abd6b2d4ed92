"""A periodic job for the acceptance tests' real `pgqueue work` processes
(`--app tests.acceptance.scheduled_jobs`). Never imported by the test process itself: its
schedule would then be registered by the in-process workers of other tests."""

from __future__ import annotations

from pgqueue import Job
from tests.acceptance.jobs import _record


class NewYear(Job):
    """Once a year, so no fire time falls due while a test runs unless the test arranged it."""

    job_name = "acceptance.NewYear"
    queue = "scheduled"
    schedule = "0 0 1 1 *"

    async def handle(self) -> None:
        await _record(self, "finish")
