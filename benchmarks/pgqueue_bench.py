"""pgqueue measured through its public API and its `pgqueue work` command."""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Sequence

import harness
import psycopg
from pgqueue_jobs import Noop, Ping  # what the workers run: --app pgqueue_jobs
from pydantic import SecretStr

from pgqueue import Job, Queue, Settings
from pgqueue import __version__ as version

PGQUEUE = str(harness.BIN_DIR / "pgqueue")
REMAINING = "SELECT count(*) FROM pgqueue.jobs"
NOOP = "bench.noop"
SEED_BATCH = 10_000
DEFAULT_VARIANT = "default (concurrency 50)"
CLASS_LIMIT_VARIANT = "class concurrency limit"
QUEUE_LIMIT_VARIANT = "runtime queue limit"
# The variants of `pgqueue work` measured: a label, the flags added to the defaults, and whether
# the run is repeated (--concurrency 1 takes half a minute, so it runs once).
# label, flags, repeated, extra environment
WORK_VARIANTS: list[tuple[str, list[str], bool, dict[str, str]]] = [
    (DEFAULT_VARIANT, [], True, {}),
    # What durable worker writes (the default) cost: the same run with the opt-out.
    ("async commit", [], True, {"PGQUEUE_WORKER_SYNCHRONOUS_COMMIT": "false"}),
    # The other runs log at WARNING; this one at the default level, a line per job.
    ("--log-level info", ["--log-level", "info"], True, {}),
    ("--concurrency 1", ["--concurrency", "1"], False, {}),
    ("--concurrency 10", ["--concurrency", "10"], False, {}),
    ("--processes 2", ["--processes", "2"], True, {}),
    # What limits cost when they hold nothing back: the no-op type with a class concurrency limit
    # of 10,000 (its own --app module), and a runtime limit of 10,000 on the queue.
    (CLASS_LIMIT_VARIANT, ["--app", "pgqueue_limited_jobs"], True, {}),
    (QUEUE_LIMIT_VARIANT, [], True, {}),
]


class PgQueue:
    name = "pgqueue"
    bulk_api = "Queue.bulk"
    single_api = "Queue.dispatch(job)"

    def __init__(self, cluster: harness.Cluster) -> None:
        self.cluster = cluster
        self.url = ""
        self._queue: Queue | None = None

    @property
    def version(self) -> str:
        return version

    @property
    def queue(self) -> Queue:
        assert self._queue is not None, "setup() first"
        return self._queue

    def setup(self) -> None:
        """A fresh database, migrated with `pgqueue migrate`."""
        self.url = self.cluster.create_database("bench_pgqueue")
        subprocess.run(
            [PGQUEUE, "migrate"],
            env=harness.worker_env(self.url),
            check=True,
            capture_output=True,
        )
        self._queue = Queue(Settings(database_url=SecretStr(self.url)))
        self.queue.size()  # opens the dispatch pool before anything is timed

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()

    # ---- preparing the queue ------------------------------------------------------------

    def reset(self) -> None:
        with harness.connect(self.url) as conn:
            conn.execute("TRUNCATE pgqueue.jobs, pgqueue.failed_jobs, pgqueue.workers")

    def noop_jobs(self, start: int, stop: int) -> list[Job]:
        return [Noop(n=n) for n in range(start, stop)]

    def seed(self, jobs: int) -> None:
        """Empty the queue, then fill it with `jobs` no-op jobs through `Queue.bulk`."""
        self.reset()
        for start, stop in _chunks(jobs, SEED_BATCH):
            self.queue.bulk(self.noop_jobs(start, stop))
        harness.settle(self.url)

    # ---- measurements -------------------------------------------------------------------

    def work_command(self, *flags: str) -> list[str]:
        app = [] if "--app" in flags else ["--app", "pgqueue_jobs"]
        return [PGQUEUE, "work", *app, "--log-level", "warning", *flags]

    def variants(self) -> list[harness.Variant]:
        return [
            harness.Variant(
                label, functools.partial(self.work, flags, env=env, label=label), repeat
            )
            for label, flags, repeat, env in WORK_VARIANTS
        ]

    def work(
        self, flags: list[str], jobs: int, env: dict[str, str] | None = None, label: str = ""
    ) -> harness.Drain:
        """`pgqueue work --stop-when-empty <flags>` over `jobs` waiting no-op jobs."""
        self.seed(jobs)
        name = label.replace(" ", "-").replace("(", "").replace(")", "") or "default"
        log = self.cluster.log_path(f"pgqueue-work-{name}")
        command = self.work_command("--stop-when-empty", *flags)
        limited = label == QUEUE_LIMIT_VARIANT
        if limited:
            self.queue.limit("default", concurrency=10_000)
        try:
            result = harness.drain(command, self.url, REMAINING, jobs, log, env=env)
        finally:
            if limited:
                self.queue.clear_limits("default")
        self.check_nothing_failed()
        return result

    def check_nothing_failed(self) -> None:
        failed = harness.scalar(self.url, "SELECT count(*) FROM pgqueue.failed_jobs")
        if failed:
            raise harness.BenchmarkError(f"pgqueue: {failed} no-op jobs failed")

    def bulk(self, jobs: int, batch: int) -> float:
        """Seconds to enqueue `jobs` prepared Job instances with `Queue.bulk`, `batch` at a time
        (each call its own transaction)."""
        batches = [self.noop_jobs(start, stop) for start, stop in _chunks(jobs, batch)]
        self.reset()
        harness.settle(self.url)
        started = time.perf_counter()
        for chunk in batches:
            self.queue.bulk(chunk)
        return time.perf_counter() - started

    def single(self, jobs: int) -> float:
        """Seconds to enqueue `jobs` prepared jobs with `Queue.dispatch(job)`, one commit each."""
        prepared = self.noop_jobs(0, jobs)
        self.reset()
        harness.settle(self.url)
        started = time.perf_counter()
        for job in prepared:
            self.queue.dispatch(job)
        return time.perf_counter() - started

    def latency(self, probe: harness.LatencyProbe) -> list[float]:
        """Commit-to-handler-start delays on an idle `pgqueue work` with default settings."""
        self.reset()
        with psycopg.connect(self.url) as conn:

            def dispatch(seq: int) -> None:
                with conn.transaction():
                    self.queue.dispatch(Ping(seq=seq), conn=conn)

            return probe.measure(
                self.work_command(),
                self.url,
                dispatch,
                self.cluster.log_path("pgqueue-latency"),
            )

    def backlog_run(self, waiting: int, processed: int) -> float:
        """Seconds for `pgqueue work --max-jobs <processed>` with `waiting` jobs in the queue."""
        self.seed(waiting)
        command = self.work_command("--max-jobs", str(processed))
        seconds = harness.run_to_exit(
            command, self.url, self.cluster.log_path(f"pgqueue-backlog-{waiting}")
        )
        left = harness.scalar(self.url, REMAINING)
        if left != waiting - processed:
            raise harness.BenchmarkError(
                f"pgqueue --max-jobs {processed}: {waiting - left} jobs gone, not {processed}"
            )
        self.check_nothing_failed()
        return seconds


def _chunks(total: int, size: int) -> Sequence[tuple[int, int]]:
    return [(start, min(start + size, total)) for start in range(0, total, size)]
