"""Limited job types for the limits acceptance tests (`--app tests.acceptance.limited_jobs`).

A module of their own: a worker that imports a limited type claims every queue the limited way,
so the other acceptance tests' workers never import these. Each handler writes its start and end
to the ledger (`tests.acceptance.jobs`), the event naming the limit key where there is one.
"""

from __future__ import annotations

import asyncio
import os

import psycopg

from pgqueue import Job
from tests.acceptance.jobs import _record


class TwoAtOnce(Job):
    job_name = "limits.TwoAtOnce"
    queue = "limited"
    concurrency = 2

    seconds: float = 0.2

    async def handle(self) -> None:
        await _record(self, "start")
        await asyncio.sleep(self.seconds)
        await _record(self, "end")


class TwoPerPartner(Job):
    job_name = "limits.TwoPerPartner"
    queue = "limited"
    concurrency = 2
    limit_key = "partner"

    partner: int
    seconds: float = 0.2

    async def handle(self) -> None:
        await _record(self, f"start:{self.partner}")
        await asyncio.sleep(self.seconds)
        await _record(self, f"end:{self.partner}")


class FivePerSecond(Job):
    """Records its start at its row's claimed_at: the rate limit counts starts in database time."""

    job_name = "limits.FivePerSecond"
    queue = "limited"
    rate_limit = "5/s"

    async def handle(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            os.environ["PGQUEUE_DATABASE_URL"], autocommit=True
        ) as conn:
            await conn.execute(
                "INSERT INTO ledger (job_id, attempt, event, pid, at)"
                " SELECT id, attempts, 'claimed', %s, claimed_at FROM pgqueue.jobs WHERE id = %s",
                (os.getpid(), self.job_id),
            )


class Unlimited(Job):
    """Shares the queue with the limited types: held-back jobs ahead of it must not hide it."""

    job_name = "limits.Unlimited"
    queue = "limited"

    seconds: float = 0.2

    async def handle(self) -> None:
        await _record(self, "start")
        await asyncio.sleep(self.seconds)
        await _record(self, "end")
