"""pgqueue.testing: run one job in process, and drain a queue with a real worker."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import psycopg
import pytest

from pgqueue import Job, Queue, Settings, Snooze
from pgqueue.blocking import JobTimeoutError
from pgqueue.errors import UnserializablePayloadError
from pgqueue.testing import arun_job, drain, run_job


class Greet(Job):
    job_name = "testing.Greet"
    seen: ClassVar[list[str]] = []

    name: str

    def handle(self) -> None:
        Greet.seen.append(f"{self.name}:{self.attempts}")


class Flaky(Job):
    job_name = "testing.Flaky"
    max_tries = 3
    retry_after = [5, 10]
    failures: ClassVar[list[BaseException]] = []

    fail_times: int

    async def handle(self) -> None:
        if self.attempts <= self.fail_times:
            raise ConnectionError(f"try {self.attempts}")

    async def failed(self, exc: BaseException) -> None:
        Flaky.failures.append(exc)


class Sleepy(Job):
    job_name = "testing.Sleepy"
    timeout = 0.2
    max_tries = 1

    blocking: bool = False

    async def handle(self) -> None:
        if self.blocking:
            await asyncio.to_thread(time.sleep, 1)
        else:
            await asyncio.sleep(5)


class Holder(Job):
    job_name = "testing.Holder"

    value: Any = None

    def handle(self) -> None:
        return None


def test_run_job_completes_on_the_first_try() -> None:
    Greet.seen.clear()
    run = run_job(Greet(name="ada"))
    assert (run.outcome, run.attempts, run.errors) == ("completed", 1, [])
    assert Greet.seen == ["ada:1"]


def test_run_job_retries_then_completes_and_reports_the_delays() -> None:
    run = run_job(Flaky(fail_times=2))
    assert run.outcome == "completed"
    assert run.attempts == 3
    assert [str(error) for error in run.errors] == ["try 1", "try 2"]
    assert run.retry_delays == [5.0, 10.0]


def test_run_job_calls_failed_once_tries_run_out() -> None:
    Flaky.failures.clear()
    run = run_job(Flaky(fail_times=9), max_tries=2)
    assert (run.outcome, run.attempts) == ("failed", 2)
    assert [str(error) for error in Flaky.failures] == ["try 2"]


async def test_run_job_enforces_the_timeout() -> None:
    run = await arun_job(Sleepy())
    assert run.outcome == "failed"
    assert isinstance(run.errors[0], JobTimeoutError)


def test_run_job_refuses_what_dispatch_would_refuse() -> None:
    with pytest.raises(UnserializablePayloadError):
        run_job(Holder(value=float("nan")))


def test_drain_runs_every_ready_job_with_a_real_worker(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    Greet.seen.clear()
    with Queue(settings) as queue:
        queue.bulk([Greet(name=name) for name in ("a", "b", "c")])
        queue.dispatch(Flaky(fail_times=1))
        queue.dispatch(Greet(name="later"), delay=3600)
    summary = drain(settings)
    assert (summary.completed, summary.retried, summary.failed) == (3, 1, 0)
    assert sorted(Greet.seen) == ["a:1", "b:1", "c:1"]
    # The retried job and the delayed one wait for later, as they would in production.
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (2,)


class SnoozesOnTry(Job):
    job_name = "testing.SnoozesOnTry"
    retry_after = 0

    snooze_on: int

    def handle(self) -> None:  # a plain def: run_job runs it in a thread, Snooze crosses back
        if self.attempts == self.snooze_on:
            raise Snooze(90)
        raise ConnectionError(f"try {self.attempts}")


def test_run_job_stops_at_a_snooze_which_spends_no_try() -> None:
    run = run_job(SnoozesOnTry(snooze_on=1))
    assert (run.outcome, run.attempts, run.snoozed_for, run.errors) == ("snoozed", 0, 90.0, [])
    run = run_job(SnoozesOnTry(snooze_on=2))
    assert (run.outcome, run.attempts, run.snoozed_for) == ("snoozed", 1, 90.0)
    assert [str(error) for error in run.errors] == ["try 1"] and run.retry_delays == [0.0]


class RetriesTimeoutsOnly(Job):
    job_name = "testing.RetriesTimeoutsOnly"
    retry_on = (TimeoutError,)
    retry_after = 0
    timeout = 0.2
    failures: ClassVar[list[BaseException]] = []

    slow_tries: int = 0

    async def handle(self) -> None:
        if self.attempts <= self.slow_tries:
            await asyncio.sleep(5)
        raise ValueError(f"try {self.attempts}")

    async def failed(self, exc: BaseException) -> None:
        RetriesTimeoutsOnly.failures.append(exc)


async def test_run_job_honours_retry_on_with_its_timeout_as_a_timeout_error() -> None:
    RetriesTimeoutsOnly.failures.clear()
    run = await arun_job(RetriesTimeoutsOnly())
    assert (run.outcome, run.attempts, run.retry_delays) == ("failed", 1, [])
    assert [str(error) for error in RetriesTimeoutsOnly.failures] == ["try 1"]
    run = await arun_job(RetriesTimeoutsOnly(slow_tries=1))
    assert (run.outcome, run.attempts, run.retry_delays) == ("failed", 2, [0.0])
    assert isinstance(run.errors[0], JobTimeoutError)
    assert [str(error) for error in run.errors[1:]] == ["try 2"]
