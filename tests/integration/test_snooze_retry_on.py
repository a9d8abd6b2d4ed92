"""Snooze and retry_on/fail_on driven through an in-process worker on a real database: what each
writes to the row, and that a snoozed job runs again with no try spent."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import psycopg

from pgqueue import AsyncQueue, Job, Settings, Snooze
from pgqueue.worker import Worker, WorkerOptions

_seen: list[tuple[str, int]] = []


def _options(**overrides: Any) -> WorkerOptions:
    defaults: dict[str, Any] = {
        "sleep": 0.05,
        "stop_when_empty": True,
        "grace": 0,
        "blocking_in_threads": True,
    }
    return WorkerOptions(**{**defaults, **overrides})


def _row(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT attempts, lease_token IS NULL, last_error,"
        " extract(epoch FROM run_at - now())::float8"
        " FROM pgqueue.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()


def _failed(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT attempts, exception_class FROM pgqueue.failed_jobs WHERE id = %s", (job_id,)
    ).fetchone()


class SnoozesAMinute(Job):
    job_name = "snooze.SnoozesAMinute"
    max_tries = 1  # a snooze on the last try spends none: the job is not failed

    async def handle(self) -> None:
        _seen.append(("SnoozesAMinute", self.attempts))
        raise Snooze(60)


async def test_a_snoozed_job_waits_with_its_attempts_and_last_error_unchanged(
    settings: Settings, conn: psycopg.Connection[Any], caplog: Any
) -> None:
    _seen.clear()
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(SnoozesAMinute())
    conn.execute("UPDATE pgqueue.jobs SET last_error = 'E: before' WHERE id = %s", (job_id,))
    caplog.set_level(logging.INFO, logger="pgqueue.worker")
    summary = await Worker(settings, _options()).run()
    assert (summary.snoozed, summary.retried, summary.failed, summary.completed) == (1, 0, 0, 0)
    assert _seen == [("SnoozesAMinute", 1)]
    row = _row(conn, job_id)
    assert row is not None and row[:3] == (0, True, "E: before")
    assert 55 < row[3] <= 60
    (line,) = [r for r in caplog.records if r.getMessage() == "snoozed"]
    assert getattr(line, "snooze_for", None) == 60 and getattr(line, "job_id", None) == job_id


class SnoozesThenRuns(Job):
    job_name = "snooze.SnoozesThenRuns"
    max_tries = 1

    async def handle(self) -> None:
        _seen.append(("SnoozesThenRuns", self.attempts))
        if len(_seen) < 3:
            raise Snooze(0.3)


async def test_a_snoozed_job_runs_again_after_its_snooze_as_the_same_attempt(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    _seen.clear()
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(SnoozesThenRuns())
    loop = asyncio.get_running_loop()
    started = loop.time()
    summary = await Worker(settings, _options(stop_when_empty=False, max_jobs=3)).run()
    assert _seen == [("SnoozesThenRuns", 1)] * 3  # max_tries = 1, yet it ran three times
    assert (summary.snoozed, summary.completed) == (2, 1)
    assert loop.time() - started >= 0.6  # each run came after its snooze, not before
    assert _row(conn, job_id) is None and _failed(conn, job_id) is None


class SnoozesForNothing(Job):
    job_name = "snooze.SnoozesForNothing"
    max_tries = 1

    async def handle(self) -> None:
        raise Snooze(float("nan"))


async def test_a_snooze_of_no_valid_seconds_fails_the_attempt_with_a_clear_error(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(SnoozesForNothing())
    summary = await Worker(settings, _options()).run()
    assert (summary.snoozed, summary.failed) == (0, 1)
    assert _failed(conn, job_id) == (1, "pgqueue.errors.InvalidSnoozeError")
    message = conn.execute(
        "SELECT exception_message FROM pgqueue.failed_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert message is not None and "got nan" in message[0]


class RetriesOnlyTimeouts(Job):
    job_name = "snooze.RetriesOnlyTimeouts"
    max_tries = 3
    retry_after = 0
    retry_on = (TimeoutError,)
    timeout = 0.2
    failures: ClassVar[list[BaseException]] = []

    slow: bool = False

    async def handle(self) -> None:
        _seen.append(("RetriesOnlyTimeouts", self.attempts))
        if self.slow and self.attempts == 1:
            await asyncio.sleep(5)  # past its timeout: pgqueue's JobTimeoutError, a TimeoutError
        elif not self.slow:
            raise ValueError("not a timeout")

    async def failed(self, exc: BaseException) -> None:
        RetriesOnlyTimeouts.failures.append(exc)


async def test_an_error_retry_on_does_not_name_goes_to_failed_jobs_after_one_try(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    _seen.clear()
    RetriesOnlyTimeouts.failures.clear()
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(RetriesOnlyTimeouts())
    summary = await Worker(settings, _options()).run()
    assert (summary.retried, summary.failed) == (0, 1)
    assert _seen == [("RetriesOnlyTimeouts", 1)]
    assert _failed(conn, job_id) == (1, "builtins.ValueError")
    assert [type(exc) for exc in RetriesOnlyTimeouts.failures] == [ValueError]  # failed() ran


async def test_pgqueues_own_timeout_is_a_timeout_error_for_retry_on(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    _seen.clear()
    RetriesOnlyTimeouts.failures.clear()
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(RetriesOnlyTimeouts(slow=True))
    summary = await Worker(settings, _options()).run()
    assert (summary.retried, summary.completed, summary.failed) == (1, 1, 0)
    assert _seen == [("RetriesOnlyTimeouts", 1), ("RetriesOnlyTimeouts", 2)]
    assert _row(conn, job_id) is None and RetriesOnlyTimeouts.failures == []


class NeverRetriesTimeouts(Job):
    job_name = "snooze.NeverRetriesTimeouts"
    max_tries = 3
    retry_after = 0
    fail_on = (TimeoutError,)
    timeout = 0.2

    async def handle(self) -> None:
        await asyncio.sleep(5)


async def test_fail_on_sends_pgqueues_timeout_straight_to_failed_jobs(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(NeverRetriesTimeouts())
    summary = await Worker(settings, _options()).run()
    assert (summary.retried, summary.failed) == (0, 1)
    assert _failed(conn, job_id) == (1, "pgqueue.errors.JobTimeoutError")


# ---- unique jobs: a snoozed job follows retry_job's rules for its key -----------------------


class SnoozesUnique(Job):
    """Dispatches a duplicate of itself (due in an hour) when `twin`, then snoozes for an hour."""

    job_name = "snooze.SnoozesUnique"
    unique = ("customer_id",)

    customer_id: int
    url: str
    twin: bool

    async def handle(self) -> None:
        if self.twin:
            async with AsyncQueue(Settings(database_url=self.url)) as queue:
                await queue.dispatch(
                    SnoozesUnique(customer_id=self.customer_id, url=self.url, twin=False),
                    delay=3600,
                )
        raise Snooze(3600)


async def test_a_snoozed_job_keeps_its_queued_key_unless_another_job_took_it(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        lonely = await queue.dispatch(SnoozesUnique(customer_id=1, url=database_url, twin=False))
        taken = await queue.dispatch(SnoozesUnique(customer_id=2, url=database_url, twin=True))
        summary = await Worker(settings, _options()).run()
        assert summary.snoozed == 2
        rows = conn.execute(
            "SELECT id, payload->>'customer_id', attempts, unique_key IS NOT NULL"
            " FROM pgqueue.jobs ORDER BY id"
        ).fetchall()
        twin = rows[-1][0]
        assert rows == [(lonely, "1", 0, True), (taken, "2", 0, False), (twin, "2", 0, True)]
        # One queued job holds each key: a duplicate gets the snoozed job or the twin.
        duplicate = SnoozesUnique(customer_id=1, url=database_url, twin=False)
        assert await queue.dispatch(duplicate) == lonely
        duplicate = SnoozesUnique(customer_id=2, url=database_url, twin=False)
        assert await queue.dispatch(duplicate) == twin
