"""procrastinate, set up as its documentation says: its schema applied with its CLI, an async
no-op task, and its `procrastinate worker` command (`--one-shot` to stop once the queue is empty).
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import time
from importlib.metadata import version
from types import ModuleType
from typing import Any

import harness
import procrastinate

PROCRASTINATE = str(harness.BIN_DIR / "procrastinate")
APP = "procrastinate_app.app"
REMAINING = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
SEED_BATCH = 10_000
CONCURRENCIES = (1, 10)


class Procrastinate:
    name = "procrastinate"
    bulk_api = "task.batch_defer_async"
    single_api = "task.defer_async"

    def __init__(self, cluster: harness.Cluster) -> None:
        self.cluster = cluster
        self.url = ""
        self._runner = asyncio.Runner()

    @property
    def version(self) -> str:
        return version("procrastinate")

    def setup(self) -> None:
        """A fresh database with procrastinate's schema (`procrastinate schema --apply`)."""
        self.url = self.cluster.create_database("bench_procrastinate")
        # The app module reads its connection string when imported, here and in the workers.
        os.environ["BENCH_DATABASE_URL"] = self.url
        subprocess.run(
            [PROCRASTINATE, "--app", APP, "schema", "--apply"],
            env=harness.worker_env(self.url),
            check=True,
            capture_output=True,
        )
        app = self._app()

        async def open_app() -> None:
            await app.open_async()

        self._runner.run(open_app())

    def close(self) -> None:
        self._runner.run(self._app().close_async())
        self._runner.close()

    def _app(self) -> procrastinate.App:
        app: procrastinate.App = _app_module().app
        return app

    def _tasks(self) -> tuple[Any, Any]:
        return _app_module().noop, _app_module().ping

    # ---- preparing the queue ------------------------------------------------------------

    def reset(self) -> None:
        with harness.connect(self.url) as conn:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")

    def seed(self, jobs: int) -> None:
        self.reset()
        noop, _ = self._tasks()
        for start in range(0, jobs, SEED_BATCH):
            stop = min(start + SEED_BATCH, jobs)
            self._runner.run(noop.batch_defer_async(*({"n": n} for n in range(start, stop))))
        harness.settle(self.url)

    # ---- measurements -------------------------------------------------------------------

    def variants(self) -> list[harness.Variant]:
        # A run takes minutes at procrastinate's pace, so each runs once.
        return [
            harness.Variant(
                f"worker --one-shot --concurrency {concurrency}",
                functools.partial(self.work, concurrency),
                repeat=False,
            )
            for concurrency in CONCURRENCIES
        ]

    def work(self, concurrency: int, jobs: int) -> harness.Drain:
        """`procrastinate worker --one-shot --concurrency N` over `jobs` waiting no-op jobs."""
        self.seed(jobs)
        command = [
            PROCRASTINATE,
            "--app",
            APP,
            "--log-level",
            "warning",
            "worker",
            "--one-shot",
            "--concurrency",
            str(concurrency),
        ]
        log = self.cluster.log_path(f"procrastinate-work-{concurrency}")
        result = harness.drain(command, self.url, REMAINING, jobs, log)
        self.check_nothing_failed()
        return result

    def check_nothing_failed(self) -> None:
        failed = harness.scalar(
            self.url, "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'"
        )
        if failed:
            raise harness.BenchmarkError(f"procrastinate: {failed} no-op jobs did not succeed")

    def bulk(self, jobs: int, batch: int) -> float:
        """Seconds to enqueue `jobs` with `task.batch_defer_async`, `batch` at a time."""
        noop, _ = self._tasks()
        batches = [
            [{"n": n} for n in range(start, min(start + batch, jobs))]
            for start in range(0, jobs, batch)
        ]
        self.reset()
        harness.settle(self.url)

        async def enqueue() -> None:
            for chunk in batches:
                await noop.batch_defer_async(*chunk)

        started = time.perf_counter()
        self._runner.run(enqueue())
        return time.perf_counter() - started

    def single(self, jobs: int) -> float:
        """Seconds to enqueue `jobs` with `task.defer_async`, one at a time."""
        noop, _ = self._tasks()
        self.reset()
        harness.settle(self.url)

        async def enqueue() -> None:
            for n in range(jobs):
                await noop.defer_async(n=n)

        started = time.perf_counter()
        self._runner.run(enqueue())
        return time.perf_counter() - started

    def latency(self, probe: harness.LatencyProbe) -> list[float]:
        """Defer-to-task-start delays on an idle `procrastinate worker` with default settings."""
        self.reset()
        _, ping = self._tasks()

        def dispatch(seq: int) -> None:
            # defer_async commits on its own connection before it returns.
            self._runner.run(ping.defer_async(seq=seq))

        command = [PROCRASTINATE, "--app", APP, "--log-level", "warning", "worker"]
        log = self.cluster.log_path("procrastinate-latency")
        return probe.measure(command, self.url, dispatch, log)


def _app_module() -> ModuleType:
    # Imported only once setup() has put the database URL in the environment: the app module
    # reads it at import, as the workers' copies do.
    import procrastinate_app

    return procrastinate_app
