"""Job types the acceptance tests run in real `pgqueue work` processes (`--app tests.acceptance.jobs`).

Handlers write to a `ledger` table on a connection of their own, so a test can count how often
each job started and finished, whatever happened to the worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import psycopg

from pgqueue import Job, Snooze

_ledger: psycopg.AsyncConnection[Any] | None = None


async def _record(job: Job, event: str) -> None:
    """Write one ledger row; retry through a database restart so the ledger itself never fails."""
    global _ledger
    for attempt in range(100):
        try:
            if _ledger is None or _ledger.closed:
                # The test cluster commits asynchronously; the ledger must survive a crash.
                _ledger = await psycopg.AsyncConnection.connect(
                    os.environ["PGQUEUE_DATABASE_URL"],
                    autocommit=True,
                    options="-c synchronous_commit=on",
                )
            await _ledger.execute(
                "INSERT INTO ledger (job_id, attempt, event, pid) VALUES (%s, %s, %s, %s)",
                (job.job_id, job.attempts, event, os.getpid()),
            )
            return
        except psycopg.OperationalError:
            if _ledger is not None:
                await _ledger.close()
            await asyncio.sleep(0.1 * min(attempt + 1, 10))
    raise RuntimeError("ledger unreachable")


def _record_sync(job: Job, event: str) -> None:
    with psycopg.connect(os.environ["PGQUEUE_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ledger (job_id, attempt, event, pid) VALUES (%s, %s, %s, %s)",
            (job.job_id, job.attempts, event, os.getpid()),
        )


class Record(Job):
    job_name = "acceptance.Record"

    seconds: float = 0.0

    async def handle(self) -> None:
        await _record(self, "start")
        if self.seconds:
            await asyncio.sleep(self.seconds)
        await _record(self, "finish")


class SlowAsync(Job):
    job_name = "acceptance.SlowAsync"
    timeout = 0.5
    max_tries = 1

    async def handle(self) -> None:
        await _record(self, "start")
        await asyncio.sleep(30)


class SlowBlocking(Job):
    job_name = "acceptance.SlowBlocking"
    timeout = 1
    max_tries = 1

    def handle(self) -> None:
        _record_sync(self, "start")
        time.sleep(60)


class KillsItsProcess(Job):
    job_name = "acceptance.KillsItsProcess"
    max_tries = 2

    async def handle(self) -> None:
        await _record(self, "start")
        os.kill(os.getpid(), signal.SIGKILL)


class FailedRaises(Job):
    job_name = "acceptance.FailedRaises"
    max_tries = 1

    async def handle(self) -> None:
        raise RuntimeError("handle broke")

    async def failed(self, exc: BaseException) -> None:
        await _record(self, "failed-called")
        raise LookupError("failed() broke too")


class FixedRetry(Job):
    job_name = "acceptance.FixedRetry"
    max_tries = 3
    retry_after = 30

    async def handle(self) -> None:
        raise ValueError("always")


class ListRetry(Job):
    job_name = "acceptance.ListRetry"
    max_tries = 4
    retry_after = [0.3, 0.6]

    async def handle(self) -> None:
        await _record(self, "start")
        raise ValueError("always")


class DefaultBackoff(Job):
    job_name = "acceptance.DefaultBackoff"
    max_tries = 5

    async def handle(self) -> None:
        raise ValueError("always")


class BlockingRecord(Job):
    job_name = "acceptance.BlockingRecord"

    seconds: float = 0.0

    def handle(self) -> None:
        _record_sync(self, "start")
        time.sleep(self.seconds)
        _record_sync(self, "finish")


class BlockingSnoozes(Job):
    """A plain `def handle` that snoozes `times` times (counted in the ledger), then finishes: its
    Snooze crosses back from the worker's child process. One try only: a snooze spends none."""

    job_name = "acceptance.BlockingSnoozes"
    max_tries = 1

    times: int = 1
    seconds: float = 0.5

    def handle(self) -> None:
        _record_sync(self, "start")
        with psycopg.connect(os.environ["PGQUEUE_DATABASE_URL"], autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM ledger WHERE job_id = %s AND event = 'start'",
                (self.job_id,),
            ).fetchone()
        if row is not None and row[0] <= self.times:
            raise Snooze(self.seconds)
        _record_sync(self, "finish")


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself fails")


def _hostile_error(kind: str) -> BaseException:
    """An exception whose text a PostgreSQL column or a log line would choke on."""
    if kind == "nul":
        return RuntimeError("bad \x00 byte")
    if kind == "surrogate":
        return RuntimeError("bad \udc80 surrogate")
    if kind == "unprintable":
        return _UnprintableError()
    if kind == "huge":
        return RuntimeError("x" * 5_000_000)
    if kind == "dsn":
        return RuntimeError(f"could not reach {os.environ['PGQUEUE_DATABASE_URL']}")
    if kind == "exit":
        return SystemExit(3)
    raise AssertionError(kind)


class RaisesHostile(Job):
    job_name = "acceptance.RaisesHostile"
    max_tries = 1

    kind: str

    async def handle(self) -> None:
        raise _hostile_error(self.kind)


class BlockingRaisesHostile(Job):
    job_name = "acceptance.BlockingRaisesHostile"
    max_tries = 1

    kind: str

    def handle(self) -> None:
        raise _hostile_error(self.kind)


class SwallowsCancellation(Job):
    """An async handler that catches every CancelledError and goes on for `seconds`."""

    job_name = "acceptance.SwallowsCancellation"
    timeout = 1
    max_tries = 1

    seconds: float = 6.0

    async def handle(self) -> None:
        await _record(self, "start")
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                continue
        await _record(self, "finish")


class RecordsFailed(Job):
    """Sleeps, then (with `fail`) fails; records start, finish and failed() in the ledger."""

    job_name = "acceptance.RecordsFailed"
    max_tries = 2
    timeout = 120

    seconds: float = 0.0
    fail: bool = False

    async def handle(self) -> None:
        await _record(self, "start")
        await asyncio.sleep(self.seconds)
        await _record(self, "finish")
        if self.fail:
            raise RuntimeError("fails after sleeping")

    async def failed(self, exc: BaseException) -> None:
        await _record(self, "failed-called")


class OnlyTry(Job):
    """A job with a single try: a finished one must never come back as a lost attempt."""

    job_name = "acceptance.OnlyTry"
    max_tries = 1

    async def handle(self) -> None:
        # No ledger row: a durable ledger commit would flush the worker's own WAL with it.
        await asyncio.sleep(0.005)
