"""Middleware around every attempt (SPEC 12): `async def mw(job, call_next)` in the library's
`Worker(middleware=...)`, in `WorkerOptions` from `PGQUEUE_MIDDLEWARE`, and in `pgqueue work
--middleware`, on a real database."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from pgqueue import AsyncQueue, Job, Settings, Snooze
from pgqueue.errors import ConfigurationError
from pgqueue.worker import Worker, WorkerOptions, load_middleware
from tests.cli_runner import one_error, run_pgqueue

CallNext = Callable[[], Awaitable[None]]
events: list[str] = []


class Mw(Job):
    queue = "middleware"
    job_name = "tests.middleware.Mw"
    max_tries = 1
    fail: ClassVar[bool] = False

    async def handle(self) -> None:
        events.append("handle")
        if Mw.fail:
            raise ValueError("the handler failed")


async def outer(job: Job, call_next: CallNext) -> None:
    events.append(f"outer before {type(job).__name__} {job.attempts}")
    try:
        await call_next()
    except ValueError as exc:
        events.append(f"outer saw {exc}")
        raise
    finally:
        events.append("outer after")


async def inner(job: Job, call_next: CallNext) -> None:
    events.append("inner before")
    await call_next()
    events.append("inner after")


async def swallows(job: Job, call_next: CallNext) -> None:
    try:
        await call_next()
    except ValueError:
        events.append("swallowed")


async def raises_its_own(job: Job, call_next: CallNext) -> None:
    raise RuntimeError("refused by the middleware")


def not_async(job: Job, call_next: CallNext) -> None:
    pass


async def _run(settings: Settings, *middleware: Any) -> Worker:
    events.clear()
    async with AsyncQueue(settings) as queue:
        await queue.dispatch(Mw())
    options = WorkerOptions(
        queues=("middleware",), sleep=0.05, stop_when_empty=True, grace=0, middleware=middleware
    )
    worker = Worker(settings, options)
    await worker.run()
    return worker


def _failed(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT exception_class, exception_message FROM pgqueue.failed_jobs"
    ).fetchall()


async def test_middleware_wraps_each_attempt_outermost_first(settings: Settings) -> None:
    Mw.fail = False
    worker = await _run(settings, outer, inner)
    assert events == ["outer before Mw 1", "inner before", "handle", "inner after", "outer after"]
    assert worker.summary.completed == 1


async def test_middleware_sees_the_handlers_error_and_the_job_fails_with_it(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    Mw.fail = True
    worker = await _run(settings, outer)
    assert "outer saw the handler failed" in events
    assert worker.summary.failed == 1
    assert _failed(conn) == [("builtins.ValueError", "the handler failed")]


async def test_a_middleware_that_swallows_the_error_completes_the_attempt(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    Mw.fail = True
    worker = await _run(settings, swallows)
    assert events == ["handle", "swallowed"]
    assert worker.summary.completed == 1 and _failed(conn) == []


async def test_a_middleware_that_raises_fails_the_attempt_with_its_error(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    Mw.fail = False
    worker = await _run(settings, raises_its_own)
    assert "handle" not in events  # it never called call_next
    assert worker.summary.failed == 1
    assert _failed(conn) == [("builtins.RuntimeError", "refused by the middleware")]


def test_middleware_comes_from_settings_as_module_name(settings: Settings) -> None:
    chosen = settings.model_copy(update={"middleware": [f"{__name__}:outer", f"{__name__}:inner"]})
    assert list(WorkerOptions.from_settings(chosen).middleware) == [outer, inner]
    with pytest.raises(ConfigurationError, match="must be an `async def"):
        load_middleware(f"{__name__}:not_async")
    with pytest.raises(ConfigurationError, match="cannot load middleware"):
        load_middleware(f"{__name__}:missing")


def test_pgqueue_work_runs_its_middleware(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "mwapp.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            from pgqueue import Job


            class Noted(Job):
                queue = "mwapp"

                async def handle(self) -> None:
                    Path("handled").write_text("yes")


            async def note(job, call_next):
                Path("before").write_text(type(job).__name__)
                await call_next()
            """
        )
    )
    env = {"PGQUEUE_DATABASE_URL": database_url}
    dispatched = run_pgqueue(
        "dispatch", "mwapp.Noted", "--app", "mwapp", process=True, cwd=tmp_path, env=env
    )
    assert dispatched.exit_code == 0, dispatched.stderr
    worked = run_pgqueue(
        "work", "--app", "mwapp", "--middleware", "mwapp:note", "--stop-when-empty",
        process=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert worked.exit_code == 0, worked.stderr
    assert (tmp_path / "before").read_text() == "Noted"
    assert (tmp_path / "handled").read_text() == "yes"


def test_pgqueue_work_refuses_a_middleware_it_cannot_load(database_url: str) -> None:
    run = run_pgqueue(
        "work", "--app", "tests.acceptance.jobs", "--middleware", "no_such_module:mw",
        process=True, env={"PGQUEUE_DATABASE_URL": database_url},
    )  # fmt: skip
    assert "cannot load middleware 'no_such_module:mw'" in one_error(run, 2)


class Flaky(Job):
    queue = "sentry"
    job_name = "tests.middleware.Flaky"
    max_tries = 1

    mode: str

    async def handle(self) -> None:
        if self.mode == "fail":
            raise ValueError("the card was declined")
        if self.mode == "snooze":
            raise Snooze(3600)


async def test_the_sentry_example_reports_a_failed_attempt_with_its_job(
    settings: Settings,
) -> None:
    import sentry_sdk
    from sentry_sdk.transport import Transport

    from examples.sentry_middleware import report_to_sentry

    sent: list[dict[str, Any]] = []

    class Captured(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            event = envelope.get_event()
            if event is not None:
                sent.append(event)

    sentry_sdk.init(
        dsn="https://key@sentry.invalid/1", transport=Captured, default_integrations=False
    )
    try:
        async with AsyncQueue(settings) as queue:
            failing = await queue.dispatch(Flaky(mode="fail"))
            await queue.dispatch(Flaky(mode="snooze"))
            await queue.dispatch(Flaky(mode="ok"))
        async with Worker(settings, queues=("sentry",), middleware=[report_to_sentry]) as worker:
            for _ in range(500):
                if worker.summary.failed + worker.summary.snoozed + worker.summary.completed == 3:
                    break
                await asyncio.sleep(0.02)
        sentry_sdk.flush()
    finally:
        sentry_sdk.init()  # no DSN: a disabled client again for the rest of the suite
    [event] = sent
    assert event["tags"] == {
        "pgqueue.job_type": "tests.middleware.Flaky",
        "pgqueue.queue": "sentry",
    }
    assert event["contexts"]["pgqueue"] == {"job_id": failing, "attempt": 1}
    assert event["exception"]["values"][-1]["value"] == "the card was declined"


def test_docs_show_the_sentry_example_as_the_suite_runs_it() -> None:
    repo = Path(__file__).resolve().parents[2]
    source = (repo / "examples" / "sentry_middleware.py").read_text()
    code = source[source.index("from __future__") :]
    assert f"# myapp/sentry.py\n{code}```" in (repo / "docs" / "workers.md").read_text()
