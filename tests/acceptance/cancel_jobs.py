"""Job types for tests/acceptance/test_cancel_running.py (`--app tests.acceptance.cancel_jobs`):
long handlers that record, in the ledger, whether they started, were cancelled in place,
finished, or had failed() called."""

from __future__ import annotations

import asyncio
import time

from pgqueue import Job
from tests.acceptance.jobs import _record, _record_sync


class LongAsync(Job):
    job_name = "acceptance.cancel.LongAsync"
    max_tries = 3  # tries left: a cancelled job must still not come back

    async def handle(self) -> None:
        await _record(self, "start")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await _record(self, "cancelled-in-place")
            raise
        await _record(self, "finish")

    async def failed(self, exc: BaseException) -> None:
        await _record(self, "failed-called")


class LongBlocking(Job):
    job_name = "acceptance.cancel.LongBlocking"
    max_tries = 3

    def handle(self) -> None:
        _record_sync(self, "start")  # the ledger's pid is the child process running it
        time.sleep(60)
        _record_sync(self, "finish")

    def failed(self, exc: BaseException) -> None:
        _record_sync(self, "failed-called")
