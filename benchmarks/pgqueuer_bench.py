"""PgQueuer, set up as its README says: `pgq install` for the schema, an asyncpg connection, an
async no-op entrypoint, and its `pgq run` command (`--mode drain` to stop once the queue is empty).
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import time
from importlib.metadata import version

import asyncpg  # type: ignore[import-untyped]
import harness
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

PGQ = str(harness.BIN_DIR / "pgq")
FACTORY = "pgqueuer_app:main"
REMAINING = "SELECT count(*) FROM pgqueuer"
SEED_BATCH = 10_000
# PgQueuer's throughput depends on how many jobs one dequeue takes; these are tried and the best
# is reported. Its default, 10, is far from the best, so it runs once to save time.
DEFAULT_BATCH_SIZE = 10
BATCH_SIZES = (DEFAULT_BATCH_SIZE, 100, 500, 1000)


class PgQueuer:
    name = "PgQueuer"
    bulk_api = "Queries.enqueue(lists)"
    single_api = "Queries.enqueue"

    def __init__(self, cluster: harness.Cluster) -> None:
        self.cluster = cluster
        self.url = ""
        self._runner = asyncio.Runner()
        self._conn: asyncpg.Connection | None = None
        self._queries: Queries | None = None

    @property
    def version(self) -> str:
        return f"{version('pgqueuer')} (asyncpg {version('asyncpg')})"

    @property
    def queries(self) -> Queries:
        assert self._queries is not None, "setup() first"
        return self._queries

    def setup(self) -> None:
        """A fresh database with PgQueuer's schema (`pgq install`, its default durability)."""
        self.url = self.cluster.create_database("bench_pgqueuer")
        subprocess.run(
            [PGQ, "--pg-dsn", self.url, "install"],
            env=harness.worker_env(self.url),
            check=True,
            capture_output=True,
        )
        self._conn = self._runner.run(asyncpg.connect(self.url))
        self._queries = Queries(AsyncpgDriver(self._conn))

    def close(self) -> None:
        if self._conn is not None:
            self._runner.run(self._conn.close())
        self._runner.close()

    # ---- preparing the queue ------------------------------------------------------------

    def reset(self) -> None:
        with harness.connect(self.url) as conn:
            conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")

    def enqueue_many(self, start: int, stop: int) -> None:
        count = stop - start
        payloads: list[bytes | None] = [str(n).encode() for n in range(start, stop)]
        self._runner.run(self.queries.enqueue(["noop"] * count, payloads, [0] * count))

    def seed(self, jobs: int) -> None:
        self.reset()
        for start in range(0, jobs, SEED_BATCH):
            self.enqueue_many(start, min(start + SEED_BATCH, jobs))
        harness.settle(self.url)

    # ---- measurements -------------------------------------------------------------------

    def variants(self) -> list[harness.Variant]:
        return [
            harness.Variant(
                f"pgq run --mode drain --batch-size {batch_size}",
                functools.partial(self.work, batch_size),
                repeat=batch_size != DEFAULT_BATCH_SIZE,
            )
            for batch_size in BATCH_SIZES
        ]

    def work(self, batch_size: int, jobs: int) -> harness.Drain:
        """`pgq run --mode drain --batch-size N` over `jobs` waiting no-op jobs."""
        self.seed(jobs)
        command = [
            PGQ,
            "run",
            FACTORY,
            "--mode",
            "drain",
            "--log-level",
            "WARNING",
            "--batch-size",
            str(batch_size),
        ]
        log = self.cluster.log_path(f"pgqueuer-work-{batch_size}")
        result = harness.drain(command, self.url, REMAINING, jobs, log)
        self.check_nothing_failed()
        return result

    def check_nothing_failed(self) -> None:
        failed = harness.scalar(
            self.url, "SELECT count(*) FROM pgqueuer_log WHERE status IN ('exception', 'failed')"
        )
        if failed:
            raise harness.BenchmarkError(f"PgQueuer: {failed} no-op jobs failed")

    def bulk(self, jobs: int, batch: int) -> float:
        """Seconds to enqueue `jobs` with `Queries.enqueue` given lists, `batch` at a time."""
        batches = [
            (
                ["noop"] * (min(start + batch, jobs) - start),
                [str(n).encode() for n in range(start, min(start + batch, jobs))],
                [0] * (min(start + batch, jobs) - start),
            )
            for start in range(0, jobs, batch)
        ]
        self.reset()
        harness.settle(self.url)

        async def enqueue() -> None:
            for entrypoints, payloads, priorities in batches:
                await self.queries.enqueue(entrypoints, list(payloads), priorities)

        started = time.perf_counter()
        self._runner.run(enqueue())
        return time.perf_counter() - started

    def single(self, jobs: int) -> float:
        """Seconds to enqueue `jobs` with `Queries.enqueue`, one at a time (autocommit)."""
        payloads = [str(n).encode() for n in range(jobs)]
        self.reset()
        harness.settle(self.url)

        async def enqueue() -> None:
            for payload in payloads:
                await self.queries.enqueue("noop", payload)

        started = time.perf_counter()
        self._runner.run(enqueue())
        return time.perf_counter() - started

    def latency(self, probe: harness.LatencyProbe) -> list[float]:
        """Commit-to-entrypoint-start delays on an idle `pgq run` with default settings."""
        self.reset()
        conn = self._conn
        assert conn is not None

        async def enqueue(seq: int) -> None:
            async with conn.transaction():
                await self.queries.enqueue("ping", str(seq).encode())

        def dispatch(seq: int) -> None:
            self._runner.run(enqueue(seq))

        command = [PGQ, "run", FACTORY, "--log-level", "WARNING"]
        log = self.cluster.log_path("pgqueuer-latency")
        return probe.measure(command, self.url, dispatch, log)
