"""Job types for the pause acceptance tests (`--app tests.acceptance.pause_jobs`).

Each start writes a ledger row (`tests.acceptance.jobs`' ledger, with the two columns the pause
tests add: `queue` and `claimed_at`) copied from the job's own row in one statement, so a test
sees when each started job was claimed even after its row is gone.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg

from pgqueue import Job

_ledger: psycopg.AsyncConnection[Any] | None = None


async def _record_start(job: Job) -> None:
    global _ledger
    if _ledger is None or _ledger.closed:
        _ledger = await psycopg.AsyncConnection.connect(
            os.environ["PGQUEUE_DATABASE_URL"], autocommit=True
        )
    await _ledger.execute(
        "INSERT INTO ledger (job_id, attempt, event, pid, queue, claimed_at) "
        "SELECT id, attempts, 'start', %s, queue, claimed_at FROM pgqueue.jobs WHERE id = %s",
        (os.getpid(), job.job_id),
    )


class Paced(Job):
    """Takes `seconds`, so a worker with one slot claims little or nothing ahead of it."""

    job_name = "pause.Paced"
    queue = "emails"

    seconds: float = 0.2

    async def handle(self) -> None:
        await _record_start(self)
        await asyncio.sleep(self.seconds)
