"""The worker engine driven in process on a real database: supervised services, compare-and-set
outcomes, and the durability of the worker's own writes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, ClassVar

import psycopg
import pytest

from pgqueue import AsyncQueue, Job, Settings
from pgqueue.sql import queries_for
from pgqueue.worker import Prefetch, Worker, WorkerOptions

_seen: list[str] = []


class SleepsAWhile(Job):
    job_name = "engine.SleepsAWhile"

    seconds: float = 0.0

    async def handle(self) -> None:
        await asyncio.sleep(self.seconds)


class TakenOverWhileRunning(Job):
    """Its row is taken over (here: deleted) while it runs, as after a rescue by another worker."""

    job_name = "engine.TakenOverWhileRunning"

    url: str

    async def handle(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute("DELETE FROM pgqueue.jobs WHERE id = %s", (self.job_id,))


class ReadsItsSetting(Job):
    job_name = "engine.ReadsItsSetting"

    async def handle(self) -> None:
        _seen.append("ran")


def _options(**overrides: Any) -> WorkerOptions:
    defaults: dict[str, Any] = {
        "sleep": 0.05,
        "stop_when_empty": True,
        "grace": 0,
        "blocking_in_threads": True,
    }
    return WorkerOptions(**{**defaults, **overrides})


async def test_a_failing_heartbeat_is_restarted_and_keeps_the_lease(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    failures = 2
    real_beat = Worker._beat

    async def flaky_beat(self: Worker) -> None:
        nonlocal failures
        if failures > 0:
            failures -= 1
            raise RuntimeError("heartbeat broke")
        await real_beat(self)

    monkeypatch.setattr(Worker, "_beat", flaky_beat)
    async with AsyncQueue(settings) as queue:
        await queue.dispatch(SleepsAWhile(seconds=3))
    rescue = queries_for("pgqueue")["rescue_expired_leases"]
    rescued = 0

    async def rescue_all_the_time() -> None:
        nonlocal rescued
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            while True:
                cursor = await conn.execute(rescue, {"limit": 100, "channel": "pgqueue"})
                rescued += sum(row[1] for row in await cursor.fetchall())
                await asyncio.sleep(0.1)

    rescuer = asyncio.create_task(rescue_all_the_time())
    caplog.set_level(logging.ERROR, logger="pgqueue.worker")
    try:
        summary = await Worker(settings, _options(lease=2.0)).run()
    finally:
        rescuer.cancel()
    assert failures == 0
    assert (summary.completed, summary.lost, rescued) == (1, 0, 0)
    restarts = [
        r for r in caplog.records if r.getMessage() == "worker service failed, restarting it"
    ]
    assert [getattr(r, "service", None) for r in restarts] == ["heartbeat", "heartbeat"]
    assert all(r.exc_info is not None for r in restarts)


async def test_an_acknowledgement_that_changed_no_row_is_a_lost_lease_not_a_completion(
    settings: Settings, database_url: str, caplog: Any
) -> None:
    async with AsyncQueue(settings) as queue:
        await queue.dispatch(TakenOverWhileRunning(url=database_url))
    caplog.set_level(logging.DEBUG, logger="pgqueue.worker")
    summary = await Worker(settings, _options()).run()
    assert (summary.completed, summary.lost) == (0, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert "completed" not in messages
    assert "lease lost: outcome not written, another worker owns the job" in messages


@pytest.mark.parametrize(("durable", "expected"), [(True, "on"), (False, "off")])
async def test_worker_writes_wait_for_the_wal_flush_unless_opted_out(
    settings: Settings, durable: bool, expected: str
) -> None:
    # The test server itself runs with synchronous_commit=off: the worker must say "on" itself.
    assert Settings().worker_synchronous_commit is True
    worker = Worker(settings.model_copy(update={"worker_synchronous_commit": durable}), _options())
    async with await worker._connect("pgqueue-worker") as conn:
        cursor = await conn.execute("SHOW synchronous_commit")
        assert await cursor.fetchone() == (expected,)


class FailsOnceRefused(Job):
    job_name = "engine.FailsOnceRefused"
    max_tries = 3
    retry_after = 0

    async def handle(self) -> None:
        raise RuntimeError("refuse-me")


async def test_an_outcome_postgresql_refuses_ends_the_job_visibly_and_the_worker_goes_on(
    settings: Settings, conn: psycopg.Connection[Any], caplog: Any
) -> None:
    # A real refusal: a trigger rejects the retry's UPDATE (a constraint or an out-of-range
    # value would be refused the same way).
    conn.execute(
        """
        CREATE FUNCTION refuse_retry() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.last_error LIKE '%refuse-me%' THEN RAISE EXCEPTION 'retries refused here'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_retry BEFORE UPDATE ON pgqueue.jobs
            FOR EACH ROW EXECUTE FUNCTION refuse_retry();
        """
    )
    async with AsyncQueue(settings) as queue:
        await queue.dispatch(FailsOnceRefused())
        await queue.dispatch(SleepsAWhile())
    caplog.set_level(logging.ERROR, logger="pgqueue.worker")
    summary = await Worker(settings, _options()).run()
    assert (summary.completed, summary.failed) == (1, 1)
    row = conn.execute(
        "SELECT exception_class, exception_message, traceback FROM pgqueue.failed_jobs"
    ).fetchone()
    assert row is not None
    assert row[:2] == ("builtins.RuntimeError", "refuse-me")
    assert "PostgreSQL refused it" in row[2] and "retries refused here" in row[2]
    assert "PostgreSQL refused the outcome" in [r.getMessage() for r in caplog.records]


class AbsurdRetry(Job):
    job_name = "engine.AbsurdRetry"
    max_tries = 2

    async def handle(self) -> None:
        raise RuntimeError("later")


async def test_a_retry_after_reassigned_to_an_absurd_value_still_retries(
    settings: Settings, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AbsurdRetry, "retry_after", 1e300)  # past PostgreSQL's interval range
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(AbsurdRetry())
    summary = await Worker(settings, _options()).run()
    assert summary.retried == 1
    row = conn.execute(
        "SELECT run_at > now() + interval '99 years' FROM pgqueue.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == (True,)


async def test_an_in_process_worker_leaves_the_hosts_signal_handlers_alone(
    settings: Settings,
) -> None:
    loop = asyncio.get_running_loop()
    received: list[str] = []
    loop.add_signal_handler(signal.SIGTERM, lambda: received.append("host"))
    try:
        worker = Worker(settings, _options(stop_when_empty=False))
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert received == ["host"]
        assert not running.done()
        worker.request_stop()
        await asyncio.wait_for(running, 10)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


class CountsOverlap(Job):
    job_name = "engine.CountsOverlap"
    running: ClassVar[int] = 0
    most: ClassVar[int] = 0

    async def handle(self) -> None:
        CountsOverlap.running += 1
        CountsOverlap.most = max(CountsOverlap.most, CountsOverlap.running)
        try:
            await asyncio.sleep(5)
        finally:
            CountsOverlap.running -= 1


async def test_slow_jobs_are_not_claimed_ahead_so_other_workers_can_take_them(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        await queue.bulk([CountsOverlap() for _ in range(6)])
    worker = Worker(settings, _options(concurrency=2, stop_when_empty=False))
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(1)
    leased = conn.execute(
        "SELECT count(*) FROM pgqueue.jobs WHERE lease_token IS NOT NULL"
    ).fetchone()
    assert leased == (2,)  # the two running; the other four stay claimable
    worker.request_stop()
    await asyncio.wait_for(running, 10)
    rows = conn.execute("SELECT attempts, lease_token FROM pgqueue.jobs").fetchall()
    assert rows == [(0, None)] * 6  # all back, no try spent


async def test_jobs_claimed_ahead_wait_for_a_slot_and_go_back_untouched_on_stop(
    settings: Settings, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A buffer of two ahead, as a worker whose jobs had been fast would have learnt.
    monkeypatch.setattr(Prefetch, "observe", lambda self, *args: setattr(self, "size", 2))
    async with AsyncQueue(settings) as queue:
        await queue.bulk([CountsOverlap() for _ in range(6)])
    worker = Worker(settings, _options(concurrency=2, stop_when_empty=False))
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(1)
    leased = conn.execute(
        "SELECT count(*) FROM pgqueue.jobs WHERE lease_token IS NOT NULL"
    ).fetchone()
    assert leased == (4,)  # two running, two claimed ahead
    assert CountsOverlap.most == 2
    worker.request_stop()
    await asyncio.wait_for(running, 10)
    rows = conn.execute("SELECT attempts, lease_token FROM pgqueue.jobs").fetchall()
    assert rows == [(0, None)] * 6  # all back, no try spent


async def test_successes_are_counted_in_progress_lines_not_logged_one_by_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr("pgqueue.worker.PROGRESS_INTERVAL_SECONDS", 0.2)
    async with AsyncQueue(settings) as queue:
        await queue.bulk([SleepsAWhile(seconds=0.1) for _ in range(30)])
    caplog.set_level(logging.INFO, logger="pgqueue.worker")
    summary = await Worker(settings, _options(concurrency=5)).run()
    assert summary.completed == 30
    messages = [r.getMessage() for r in caplog.records]
    assert "completed" not in messages  # a line per success is DEBUG
    progress = [r for r in caplog.records if r.getMessage() == "progress"]
    assert progress and all(getattr(r, "completed", 0) > 0 for r in progress)
    assert sum(getattr(r, "completed", 0) for r in progress) <= 30
