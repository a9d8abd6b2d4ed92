"""`pgqueue demo`: a newcomer's first run, on real PostgreSQL (embedded unless configured).

It migrates its own schema (`pgqueue_demo`, emptied first, so each run counts only its own jobs),
dispatches sample jobs to two queues in bulk, runs a worker with a live progress display, and
prints what happened: completions, retries, timeouts that were killed, the jobs that ended in
`failed_jobs`, and how to look at them again. Each run, however small, has a retry, a failure and
a killed timeout to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

import psycopg
from psycopg import sql
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from pgqueue import migrate
from pgqueue.connection import connect, connect_async, conninfo
from pgqueue.job import Job
from pgqueue.queue import Queue
from pgqueue.settings import Settings
from pgqueue.signals import stop_on_signals
from pgqueue.worker import Worker, WorkerOptions

DEMO_SCHEMA = "pgqueue_demo"


class ResizeImage(Job):
    """Async: a few milliseconds of 'work'; every 40th image (the first too) fails once, then
    succeeds."""

    queue = "images"
    job_name = "pgqueue.demo.ResizeImage"
    retry_after = [0.2, 0.5]
    timeout = 2

    image_id: int

    async def handle(self) -> None:
        await asyncio.sleep(0.002)
        if self.image_id % 40 == 0 and self.attempts == 1:
            raise ConnectionError(f"storage hiccup while resizing image {self.image_id}")


class SendReceipt(Job):
    """Async, with one in 100 (the second too) that always fails and one in 150 that hangs past
    its timeout."""

    queue = "emails"
    job_name = "pgqueue.demo.SendReceipt"
    max_tries = 2
    retry_after = 0.2
    timeout = 0.5

    order_id: int

    async def handle(self) -> None:
        if self.order_id % 150 == 7:
            await asyncio.sleep(30)  # hangs: cancelled at the timeout, twice, then failed
        if self.order_id % 100 == 1:
            raise ValueError(f"order {self.order_id} has no e-mail address")
        await asyncio.sleep(0.003)


class RenderInvoice(Job):
    """Blocking (`def handle`): runs in a child process, killed if it overruns its timeout (one
    in 25, the first too, does)."""

    queue = "emails"
    job_name = "pgqueue.demo.RenderInvoice"
    max_tries = 2
    retry_after = 0.1
    timeout = 1

    order_id: int

    def handle(self) -> None:
        seconds = 60 if self.order_id % 25 == 0 else 0.01
        time.sleep(seconds)


def run_demo(settings: Settings, jobs: int = 3000, concurrency: int = 50) -> int:
    """Run the demo end to end and return the exit code."""
    console = Console(stderr=False)
    with _logging_through(console):
        return _run(
            settings.model_copy(update={"db_schema": DEMO_SCHEMA}), jobs, concurrency, console
        )


def _run(settings: Settings, jobs: int, concurrency: int, console: Console) -> int:
    console.print(
        f"[bold]pgqueue demo[/] on {escape(settings.redacted_url)}, schema {DEMO_SCHEMA!r}",
        soft_wrap=True,
    )
    migrate.upgrade(conninfo(settings), DEMO_SCHEMA)
    with connect(settings, application_name="pgqueue-demo") as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}.jobs, {}.failed_jobs").format(
                sql.Identifier(DEMO_SCHEMA), sql.Identifier(DEMO_SCHEMA)
            )
        )
    # Three quarters images, one in 60 invoices (at least one), the rest receipts: exactly `jobs`
    # (at least 10), so the counts below add up to what was dispatched.
    images = jobs * 3 // 4
    invoices = max(jobs // 60, 1)
    receipts = jobs - images - invoices
    started = time.perf_counter()
    with Queue(settings) as queue:
        queue.bulk([ResizeImage(image_id=n) for n in range(images)])
        queue.bulk([SendReceipt(order_id=n) for n in range(receipts)])
        queue.bulk([RenderInvoice(order_id=n) for n in range(invoices)])
    console.print(
        f"dispatched {jobs} jobs in {time.perf_counter() - started:.2f} s: {images} to 'images', "
        f"{receipts + invoices} to 'emails'",
        soft_wrap=True,
    )
    options = WorkerOptions(
        queues=["emails", "images"],
        concurrency=concurrency,
        sleep=0.2,
        lease=10,
        imports=["pgqueue.demo"],
    )
    worker = Worker(settings, options)
    totals = {"images": images, "emails": receipts + invoices}
    started = time.perf_counter()
    asyncio.run(_work_with_progress(worker, settings, totals, console))
    elapsed = time.perf_counter() - started
    _print_results(settings, totals, worker, elapsed, console)
    return 0


@contextlib.contextmanager
def _logging_through(console: Console) -> Iterator[None]:
    """pgqueue's warnings and errors printed by `console` for the length of the demo (above the
    live progress, never inside it), and the logger as it was afterwards."""
    logger = logging.getLogger("pgqueue")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [_ConsoleHandler(console)]
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


class _ConsoleHandler(logging.Handler):
    """A log line through the demo's console. A job's own outcome (a retry, a failure) is left
    out: the summary counts them and lists what ended in failed_jobs."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "job_id"):
            return
        try:
            line = Text(f"{record.levelname.lower()}: {record.getMessage()}", style="yellow")
            self._console.print(line, soft_wrap=True)
        except Exception:
            self.handleError(record)


async def _work_with_progress(
    worker: Worker, settings: Settings, totals: dict[str, int], console: Console
) -> None:
    columns = (
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bars = {
            queue: progress.add_task(queue, total=total, state="")
            for queue, total in totals.items()
        }
        work = asyncio.create_task(_run_stopping_on_signals(worker))
        async with await connect_async(settings, application_name="pgqueue-demo") as conn:
            while True:
                remaining = await _remaining(conn)
                for queue, bar in bars.items():
                    left, running = remaining.get(queue, (0, 0))
                    progress.update(
                        bar,
                        completed=totals[queue] - left,
                        state=f"running {running:>3}, waiting {left - running:>4}",
                    )
                if work.done():
                    break
                if not remaining:
                    # Every sample job has ended, retries included: stop as SIGTERM would.
                    worker.request_stop()
                await asyncio.sleep(0.2)
        await work


async def _run_stopping_on_signals(worker: Worker) -> None:
    with stop_on_signals(worker.request_stop):  # Ctrl-C drains, as in `pgqueue work`
        await worker.run()


async def _remaining(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
) -> dict[str, tuple[int, int]]:
    cursor = await conn.execute(
        sql.SQL("SELECT queue, count(*), count(lease_token) FROM {}.jobs GROUP BY queue").format(
            sql.Identifier(DEMO_SCHEMA)
        )
    )
    return {str(q): (int(str(n)), int(str(r))) for q, n, r in await cursor.fetchall()}


def _print_results(
    settings: Settings, totals: dict[str, int], worker: Worker, elapsed: float, console: Console
) -> None:
    schema = sql.Identifier(DEMO_SCHEMA)
    with connect(settings, application_name="pgqueue-demo") as conn:
        failed_by_queue: dict[str, int] = dict(
            conn.execute(
                sql.SQL("SELECT queue, count(*) FROM {}.failed_jobs GROUP BY queue").format(schema)
            ).fetchall()
        )
        left_by_queue: dict[str, int] = dict(
            conn.execute(
                sql.SQL("SELECT queue, count(*) FROM {}.jobs GROUP BY queue").format(schema)
            ).fetchall()
        )
        failures = conn.execute(
            sql.SQL(
                "SELECT job_type, exception_class, count(*), max(attempts), "
                "min(exception_message) FROM {}.failed_jobs GROUP BY 1, 2 ORDER BY 3 DESC"
            ).format(schema)
        ).fetchall()
    results = Table(title="Per queue")
    for column in ("queue", "dispatched", "completed", "in failed_jobs", "left"):
        results.add_column(column, justify="right" if column != "queue" else "left")
    for queue, total in totals.items():
        failed = int(failed_by_queue.get(queue, 0))
        left = int(left_by_queue.get(queue, 0))
        results.add_row(queue, str(total), str(total - failed - left), str(failed), str(left))
    console.print(results)
    summary = worker.summary
    console.print(
        f"worker {summary.worker_id}: {summary.completed} completed, {summary.retried} retried, "
        f"{summary.failed} failed in {elapsed:.1f} s "
        f"({summary.completed / elapsed:,.0f} jobs/s)"
    )
    if failures:
        table = Table(title="failed_jobs: the jobs that used their last try")
        for column in ("job type", "exception", "jobs", "attempts", "example message"):
            table.add_column(column)
        for job_type, exception_class, count, attempts, message in failures:
            table.add_row(
                *(Text(str(cell)) for cell in (job_type, exception_class, count, attempts, message))
            )
        console.print(table)
    else:
        console.print("no job ended in failed_jobs")
    _print_where_to_look(settings, console)


def _print_where_to_look(settings: Settings, console: Console) -> None:
    """How to see the demo's failed jobs again: the CLI, and psql on the same database."""
    connect_with = (
        '"$(pgqueue embedded url)"' if settings.database_url is None else '"$PGQUEUE_DATABASE_URL"'
    )
    for line in (
        f"See them again: pgqueue failed list --schema {DEMO_SCHEMA}  "
        f"(one in full: pgqueue failed show ID --schema {DEMO_SCHEMA})",
        f"Or with SQL: psql {connect_with} -c "
        f"'SELECT * FROM {DEMO_SCHEMA}.failed_jobs ORDER BY failed_at DESC'",
    ):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
