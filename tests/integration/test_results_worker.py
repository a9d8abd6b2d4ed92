"""Results and progress written by an in-process worker (SPEC 11), on real PostgreSQL: a
keep_result job's return value kept in job_results, one that is not JSON failing cleanly, a plain
job's value ignored, and progress visible through `status` while the job runs, for `async def`
and for `def handle` in its child process. `wait` against real workers is at the end."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.errors import (
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    WaitTimeoutError,
)
from pgqueue.worker import Worker, WorkerOptions

QUEUE = "results"


class Resize(Job):
    queue = QUEUE
    job_name = "tests.results_worker.Resize"
    keep_result = "1h"

    width: int

    async def handle(self) -> dict[str, Any]:
        return {"width": self.width, "sizes": (1, 2)}


class ResizeBlocking(Job):
    queue = QUEUE
    job_name = "tests.results_worker.ResizeBlocking"
    keep_result = timedelta(minutes=5)

    width: int

    def handle(self) -> dict[str, int]:
        return {"width": self.width}


class ReturnsAnObject(Job):
    queue = QUEUE
    job_name = "tests.results_worker.ReturnsAnObject"
    keep_result = 60
    failed_calls: ClassVar[list[str]] = []

    async def handle(self) -> object:
        return object()

    async def failed(self, exc: BaseException) -> None:
        ReturnsAnObject.failed_calls.append(type(exc).__name__)


class ReturnsNaNBlocking(Job):
    queue = QUEUE
    job_name = "tests.results_worker.ReturnsNaNBlocking"
    keep_result = 60

    def handle(self) -> float:
        return float("nan")


class Plain(Job):
    queue = QUEUE
    job_name = "tests.results_worker.Plain"

    async def handle(self) -> object:
        return object()  # not JSON, and nobody asked for it: ignored


class Reports(Job):
    """Reports progress, then waits until `release` exists (a file, so a child process sees it)."""

    queue = QUEUE
    job_name = "tests.results_worker.Reports"
    keep_result = 60

    release: str

    async def handle(self) -> str:
        self.progress(0.1)
        self.progress(0.4, "40 of 100 done")
        while not Path(self.release).exists():
            await asyncio.sleep(0.02)
        self.progress(1.0, "done")
        return "finished"


class ReportsBlocking(Job):
    queue = QUEUE
    job_name = "tests.results_worker.ReportsBlocking"
    keep_result = 60

    release: str

    def handle(self) -> str:
        for step in range(1, 51):  # a burst: the child sends the latest, not each one
            self.progress(step / 100, f"{step} of 100 done")
        while not Path(self.release).exists():
            time.sleep(0.02)
        return "finished"


class FailsAfterProgress(Job):
    queue = QUEUE
    job_name = "tests.results_worker.FailsAfterProgress"
    max_tries = 2
    retry_after = 600

    release: str

    async def handle(self) -> None:
        self.progress(0.7, "almost")
        while not Path(self.release).exists():
            await asyncio.sleep(0.02)
        raise OSError("disk full")


class Fails(Job):
    queue = QUEUE
    job_name = "tests.results_worker.Fails"
    max_tries = 1
    keep_result = 60

    async def handle(self) -> None:
        raise ValueError("no such image")


def _options(**overrides: Any) -> WorkerOptions:
    defaults: dict[str, Any] = {
        "queues": (QUEUE,),
        "sleep": 0.05,
        "grace": 0,
        "lease": 0.6,  # a heartbeat every 0.2 s, so progress shows quickly
        "imports": (__name__,),  # the blocking jobs run in child processes
    }
    return WorkerOptions(**{**defaults, **overrides})


async def _drain(settings: Settings) -> Worker:
    worker = Worker(settings, _options(stop_when_empty=True))
    await worker.run()
    return worker


async def _until(predicate: Any, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def _failed(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT exception_class, exception_message, attempts FROM pgqueue.failed_jobs"
        " WHERE id = %s",
        (job_id,),
    ).fetchone()


async def test_a_worker_keeps_the_result_of_a_keep_result_job(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Resize(width=100))
        worker = await _drain(settings)
        status = await queue.status(job_id)
    assert worker.summary.completed == 1
    assert status is not None
    assert (status.state, status.result, status.attempts) == (
        "completed",
        {"width": 100, "sizes": [1, 2]},
        1,
    )
    assert status.started_at is not None and status.finished_at is not None
    kept = conn.execute(
        "SELECT keep_until - finished_at, queue, job_type FROM pgqueue.job_results"
    ).fetchall()
    assert kept == [(timedelta(hours=1), QUEUE, "tests.results_worker.Resize")]
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (0,)


async def test_a_blocking_job_s_result_is_encoded_in_its_child_and_kept(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(ResizeBlocking(width=7))
        await _drain(settings)
        status = await queue.status(job_id)
    assert status is not None and (status.state, status.result) == ("completed", {"width": 7})
    assert conn.execute("SELECT keep_until - finished_at FROM pgqueue.job_results").fetchone() == (
        timedelta(minutes=5),
    )


async def test_many_kept_completions_are_all_written(settings: Settings) -> None:
    async with AsyncQueue(settings) as queue:
        ids = await queue.bulk([Resize(width=n) for n in range(300)])
        worker = await _drain(settings)
        results = [await queue.status(job_id) for job_id in ids[::50]]
    assert worker.summary.completed == 300
    assert [status.result["width"] for status in results if status is not None] == list(
        range(0, 300, 50)
    )


async def test_a_result_that_is_not_json_fails_the_job_at_once_and_the_worker_goes_on(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    ReturnsAnObject.failed_calls.clear()
    async with AsyncQueue(settings) as queue:
        bad = await queue.dispatch(ReturnsAnObject())
        good = await queue.dispatch(Resize(width=1))
        worker = await _drain(settings)
        status = await queue.status(bad)
    assert (worker.summary.completed, worker.summary.failed, worker.summary.retried) == (1, 1, 0)
    failed = _failed(conn, bad)
    assert failed is not None
    exception_class, message, attempts = failed
    assert (exception_class, attempts) == ("pgqueue.errors.InvalidResultError", 1)
    assert "ReturnsAnObject.handle() returned <object object" in message
    assert "cannot be kept as JSON" in message
    assert ReturnsAnObject.failed_calls == ["InvalidResultError"]  # a final failure: failed() ran
    assert status is not None and status.state == "failed"
    assert status.error is not None and status.error.startswith("pgqueue.errors.InvalidResultError")
    assert conn.execute("SELECT id FROM pgqueue.job_results").fetchall() == [(good,)]


async def test_a_blocking_job_returning_nan_fails_with_invalid_result_error(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(ReturnsNaNBlocking())
        await _drain(settings)
    failed = _failed(conn, job_id)
    assert failed is not None
    assert failed[0] == "pgqueue.errors.InvalidResultError" and failed[2] == 1
    assert "NaN or infinity" in failed[1]


async def test_a_plain_job_s_return_value_is_ignored(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Plain())
        worker = await _drain(settings)
        assert await queue.status(job_id) is None
    assert worker.summary.completed == 1
    assert conn.execute("SELECT count(*) FROM pgqueue.job_results").fetchone() == (0,)


@pytest.mark.parametrize("job_class", [Reports, ReportsBlocking], ids=["async", "def"])
async def test_progress_is_visible_in_status_while_the_job_runs(
    settings: Settings, tmp_path: Path, job_class: type[Reports] | type[ReportsBlocking]
) -> None:
    release = tmp_path / "release"
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(job_class(release=str(release)))
        async with Worker(settings, _options()):

            async def reported() -> Any:
                status = await queue.status(job_id)
                wanted = 0.4 if job_class is Reports else 0.5
                if status is not None and status.progress == pytest.approx(wanted):
                    return status
                return None

            status = await _until(reported)
            assert status.state == "running"
            expected = "40 of 100 done" if job_class is Reports else "50 of 100 done"
            assert status.progress_message == expected
            release.touch()

            async def ended() -> Any:
                ended = await queue.status(job_id)
                return ended if ended is not None and ended.ended else None

            final = await _until(ended)
    assert (final.state, final.result, final.progress) == ("completed", "finished", None)


async def test_a_retry_clears_the_progress_of_the_failed_attempt(
    settings: Settings, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(FailsAfterProgress(release=str(release)))
        async with Worker(settings, _options()):

            async def reported() -> Any:
                status = await queue.status(job_id)
                return status is not None and status.progress == pytest.approx(0.7)

            await _until(reported)
            release.touch()

            async def retrying() -> Any:
                status = await queue.status(job_id)
                return status if status is not None and status.state == "scheduled" else None

            status = await _until(retrying)
    assert (status.progress, status.progress_message) == (None, None)
    assert status.error == "builtins.OSError: disk full"


async def test_a_progress_message_is_stored_as_clean_text(
    settings: Settings, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    class Messy(Job):
        queue = QUEUE
        job_name = "tests.results_worker.Messy"

        release: str

        async def handle(self) -> None:
            self.progress(0.5, "nul \x00 here, lone \ud800, and " + "x" * 5000)
            while not Path(self.release).exists():
                await asyncio.sleep(0.02)

    release = tmp_path / "release"
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Messy(release=str(release)))
        async with Worker(settings, _options(imports=())):

            async def reported() -> Any:
                status = await queue.status(job_id)
                return status if status is not None and status.progress is not None else None

            status = await _until(reported)
            release.touch()
    message = status.progress_message
    assert message.startswith("nul \\x00 here, lone \\ud800, and xxx")
    assert len(message) < 1100


# ---- wait, against real workers ----------------------------------------------------------


async def test_wait_returns_the_result_once_a_worker_completes_the_job(settings: Settings) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Resize(width=3))
        async with Worker(settings, _options()):
            result = await queue.wait(job_id, timeout=30)
    assert result == {"width": 3, "sizes": [1, 2]}


async def test_wait_is_woken_by_the_notification_not_the_poll(
    settings: Settings, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Reports(release=str(release)))
        async with Worker(settings, _options()):
            waiting = asyncio.create_task(queue.wait(job_id, timeout=60, poll=60))
            await asyncio.sleep(0.5)  # the waiter has read the status and is listening
            assert not waiting.done()
            release.touch()
            started = time.monotonic()
            result = await asyncio.wait_for(waiting, 20)
    assert result == "finished"
    assert time.monotonic() - started < 30  # far sooner than the 60 s poll


async def test_wait_raises_job_failed_error_with_the_job_s_error(settings: Settings) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Fails())
        async with Worker(settings, _options()):
            with pytest.raises(JobFailedError) as raised:
                await queue.wait(job_id, timeout=30, poll=60)
    error = raised.value
    assert (error.job_id, error.exception_class, error.exception_message) == (
        job_id,
        "builtins.ValueError",
        "no such image",
    )
    assert str(error) == f"job {job_id} failed: builtins.ValueError: no such image"


def test_blocking_wait_raises_job_cancelled_error_for_a_job_cancelled_meanwhile(
    settings: Settings,
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Resize(width=1), delay=600)
        loop_result: list[BaseException] = []

        def cancel_soon() -> None:
            time.sleep(0.3)
            with Queue(settings) as other:
                other.cancel(job_id)

        canceller = threading.Thread(target=cancel_soon)
        canceller.start()
        started = time.monotonic()
        try:
            queue.wait(job_id, timeout=30, poll=60)
        except JobCancelledError as exc:
            loop_result.append(exc)
        canceller.join()
    assert len(loop_result) == 1 and f"job {job_id} was cancelled" in str(loop_result[0])
    assert time.monotonic() - started < 20  # woken by the cancel's notification


def test_wait_times_out_with_a_timeout_error_naming_the_job(settings: Settings) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Resize(width=1), delay=600)
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as raised:
            queue.wait(job_id, timeout=0.3, poll=0.1)
    assert isinstance(raised.value, TimeoutError)
    assert str(raised.value) == (
        f"job {job_id} is still scheduled after waiting 0.3 s; wait again, or pass a longer "
        "timeout="
    )
    assert time.monotonic() - started >= 0.3


def test_wait_with_a_zero_timeout_reads_once(settings: Settings) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Resize(width=1))
        with pytest.raises(WaitTimeoutError, match="still queued"):
            queue.wait(job_id, timeout=0)


def test_wait_for_an_unknown_id_raises_job_not_found_error(settings: Settings) -> None:
    with Queue(settings) as queue, pytest.raises(JobNotFoundError, match="no job 424242 is known"):
        queue.wait(424242, timeout=5)


async def test_wait_for_a_plain_job_returns_none_once_it_is_gone(settings: Settings) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Plain(), delay=0.5)
        async with Worker(settings, _options()):
            assert await queue.wait(job_id, timeout=30, poll=0.1) is None


async def test_wait_returns_a_kept_none_result(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    class ReturnsNothing(Job):
        queue = QUEUE
        job_name = "tests.results_worker.ReturnsNothing"
        keep_result = "30s"

        async def handle(self) -> None:
            pass

    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(ReturnsNothing())
        async with Worker(settings, _options(imports=())):
            assert await queue.wait(job_id, timeout=30) is None
    assert conn.execute("SELECT result FROM pgqueue.job_results").fetchall() == [(None,)]


@pytest.mark.parametrize(
    ("timeout", "poll", "match"),
    [
        (-1, 1.0, "timeout as seconds >= 0"),
        (float("inf"), 1.0, "timeout"),
        (True, 1.0, "timeout"),
        (1, 0, "poll as seconds > 0"),
        (1, float("nan"), "poll"),
    ],
)
def test_wait_refuses_bad_arguments_before_connecting(timeout: Any, poll: Any, match: str) -> None:
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    with Queue(settings) as queue, pytest.raises(ValueError, match=match):
        queue.wait(1, timeout=timeout, poll=poll)
