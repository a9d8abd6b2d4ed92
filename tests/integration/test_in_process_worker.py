"""`async with pgqueue.Worker(...)`: a worker inside an application, on a real database. It works
while the block runs, leaves the host's signal handlers alone, and stops like `pgqueue work` on
SIGTERM when the block ends."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, ClassVar

import psycopg
import pytest
from pydantic import SecretStr

import pgqueue
from pgqueue import AsyncQueue, Job, Settings
from pgqueue.errors import ConfigurationError, DatabaseError


class Greets(Job):
    queue = "in-process"
    job_name = "tests.in_process.Greets"
    done: ClassVar[list[int]] = []

    n: int

    async def handle(self) -> None:
        Greets.done.append(self.n)


class RunsLong(Job):
    queue = "in-process"
    job_name = "tests.in_process.RunsLong"

    async def handle(self) -> None:
        await asyncio.sleep(30)


async def _until(predicate: Any, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_a_worker_runs_jobs_in_the_background_of_an_async_with_block(
    settings: Settings,
) -> None:
    Greets.done.clear()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    async with pgqueue.Worker(settings, queues=("in-process",), concurrency=5) as worker:
        assert list(worker.options.queues) == ["in-process"] and worker.options.concurrency == 5
        async with AsyncQueue(settings) as queue:
            await queue.bulk([Greets(n=n) for n in range(20)])
        await _until(lambda: len(Greets.done) == 20)
        assert {signum: signal.getsignal(signum) for signum in handlers} == handlers
    assert sorted(Greets.done) == list(range(20))
    assert worker.summary.completed == 20


async def test_leaving_the_block_returns_a_running_job_to_its_queue(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    fast = settings.model_copy(update={"grace": 0.2})
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(RunsLong())
    async with pgqueue.Worker(fast, queues=("in-process",)):
        await _until(
            lambda: (
                conn.execute(
                    "SELECT lease_token IS NOT NULL FROM pgqueue.jobs WHERE id = %s", (job_id,)
                ).fetchone()
                == (True,)
            )
        )
    row = conn.execute(
        "SELECT attempts, lease_token FROM pgqueue.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == (0, None)  # back in the queue, no try spent


async def test_entering_raises_what_waiting_cannot_fix(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        database = conn.info.dbname
    wrong = Settings(database_url=SecretStr(database_url.replace(database, "no_such_db")))
    with pytest.raises(DatabaseError):
        async with pgqueue.Worker(wrong, queues=("in-process",)):
            raise AssertionError("the block must not run")


def test_bad_arguments_name_what_was_wrong(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="PGQUEUE_CONCURRENCY"):
        pgqueue.Worker(settings, concurrency=0)
    with pytest.raises(ConfigurationError, match="queues"):
        pgqueue.Worker(settings, queues=("x" * 64,))  # over 63 bytes
