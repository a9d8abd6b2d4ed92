"""`pgqueue demo`: a newcomer's first run, on real PostgreSQL (embedded unless configured).

It migrates its own schema (`pgqueue_demo`, emptied first), dispatches sample jobs to two queues
in bulk, runs a worker with a live progress display, and prints what happened: completions,
retries, timeouts that were killed, and the jobs that ended in `failed_jobs`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pgqueue import migrate
from pgqueue.connection import connect, connect_async, conninfo
from pgqueue.job import Job
from pgqueue.queue import Queue
from pgqueue.settings import Settings
from pgqueue.signals import stop_on_signals
from pgqueue.worker import Worker, WorkerOptions

DEMO_SCHEMA = "pgqueue_demo"


class ResizeImage(Job):
    """Async: a few milliseconds of 'work'; every 40th image fails once, then succeeds."""

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
    """Async, with a few that always fail and a few that hang past their timeout."""

    queue = "emails"
    job_name = "pgqueue.demo.SendReceipt"
    max_tries = 2
    retry_after = 0.2
    timeout = 0.5

    order_id: int

    async def handle(self) -> None:
        if self.order_id % 150 == 7:
            await asyncio.sleep(30)  # hangs: cancelled at the timeout, twice, then failed
        if self.order_id % 100 == 3:
            raise ValueError(f"order {self.order_id} has no e-mail address")
        await asyncio.sleep(0.003)


class RenderInvoice(Job):
    """Blocking (`def handle`): runs in a child process, killed if it overruns its timeout."""

    queue = "emails"
    job_name = "pgqueue.demo.RenderInvoice"
    max_tries = 2
    retry_after = 0.1
    timeout = 1

    order_id: int

    def handle(self) -> None:
        seconds = 60 if self.order_id % 25 == 5 else 0.01
        time.sleep(seconds)


def run_demo(settings: Settings, jobs: int = 3000, concurrency: int = 50) -> int:
    """Run the demo end to end and return the exit code."""
    console = Console(stderr=False)
    # The live display replaces the per-job log lines; errors still show.
    logging.getLogger("pgqueue").setLevel(logging.ERROR)
    logging.getLogger("pgqueue").addHandler(logging.StreamHandler())
    settings = settings.model_copy(update={"db_schema": DEMO_SCHEMA})
    console.print(f"[bold]pgqueue demo[/] on {settings.redacted_url}, schema {DEMO_SCHEMA!r}")
    migrate.upgrade(conninfo(settings), DEMO_SCHEMA)
    with connect(settings, application_name="pgqueue-demo") as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}.jobs, {}.failed_jobs").format(
                sql.Identifier(DEMO_SCHEMA), sql.Identifier(DEMO_SCHEMA)
            )
        )
    images = int(jobs * 0.75)
    invoices = max(jobs // 60, 5)
    receipts = jobs - images - invoices
    started = time.perf_counter()
    with Queue(settings) as queue:
        queue.bulk([ResizeImage(image_id=n) for n in range(images)])
        queue.bulk([SendReceipt(order_id=n) for n in range(receipts)])
        queue.bulk([RenderInvoice(order_id=n) for n in range(invoices)])
    console.print(
        f"dispatched {jobs} jobs in {time.perf_counter() - started:.2f} s: {images} to 'images', "
        f"{receipts + invoices} to 'emails'"
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
    table = Table(title="failed_jobs")
    for column in ("job type", "exception", "jobs", "attempts", "example message"):
        table.add_column(column)
    for job_type, exception_class, count, attempts, message in failures:
        table.add_row(str(job_type), str(exception_class), str(count), str(attempts), str(message))
    console.print(table)
    console.print(
        f"Inspect them with SQL: SELECT * FROM {DEMO_SCHEMA}.failed_jobs ORDER BY failed_at DESC;"
    )
