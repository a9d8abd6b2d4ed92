"""The benchmark's plumbing: one PostgreSQL cluster, fresh databases, worker processes, timing.

Every system runs against the same cluster, started here with PostgreSQL's default durable
settings (fsync and synchronous_commit on); only max_connections is raised.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import probe
import psycopg
from psycopg import sql

from pgqueue.embedded import EmbeddedCluster

BENCH_DIR = Path(__file__).resolve().parent
BIN_DIR = Path(sys.executable).parent
# How often a drain is checked: often enough to add at most this much to a timing, seldom enough
# that the count(*) (about a millisecond of server time over 20,000 rows) adds little load.
POLL_SECONDS = 0.01


class BenchmarkError(Exception):
    """A measurement could not be taken (a worker failed, jobs were lost, a timeout)."""


@dataclass
class Cluster:
    """The one PostgreSQL server every system is measured against."""

    embedded: EmbeddedCluster
    root: Path

    @classmethod
    def start(cls) -> Cluster:
        root = Path(tempfile.mkdtemp(dir="/tmp", prefix="pgqb-"))
        # We may run as root; the server then runs as `nobody` and must reach its directory.
        root.chmod(0o755)
        embedded = EmbeddedCluster(root / "pg", server_settings={"max_connections": "200"})
        embedded.ensure_running()
        return cls(embedded, root)

    def stop(self) -> None:
        self.embedded.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        with connect(self.embedded.url()) as conn:
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        return self.embedded.url(name)

    def log_path(self, name: str) -> Path:
        return self.root / f"{name}.log"


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection: every statement is its own transaction."""
    return psycopg.connect(url, autocommit=True)


def scalar(url: str, query: str) -> Any:
    with connect(url) as conn:
        row = conn.execute(query.encode()).fetchone()
    assert row is not None
    return row[0]


def settle(url: str) -> None:
    """Put a database in the same state before every timed run: fresh statistics, a checkpoint.

    Without it, an autovacuum or a checkpoint would land in some runs and not in others.
    """
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def worker_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker process: the database URL for each system, the apps on path."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(BENCH_DIR),
        PGQUEUE_DATABASE_URL=url,
        BENCH_DATABASE_URL=url,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def measure_in_child(
    script: str, mode: str, url: str, tables: Sequence[str], arguments: Sequence[str]
) -> dict[str, float]:
    """Run `script --child MODE --url URL ARGUMENTS...` in a fresh process, after emptying
    pgqueue's `tables` and settling the database, and return the JSON object its last line prints:
    each mode of a cost benchmark measured in an interpreter of its own (imports, tracer
    providers and caches never carry over between modes)."""
    with connect(url) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier("pgqueue", table) for table in tables)
            )
        )
    settle(url)
    command = [sys.executable, script, "--child", mode, "--url", url, *arguments]
    run = subprocess.run(command, env=worker_env(url), capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{run.stderr[-3000:]}")
    result: dict[str, float] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def spawn(command: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a worker process, its output going to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(command), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=BENCH_DIR
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Ask a worker to stop (SIGTERM), then kill it if it does not within `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(log: Path, lines: int = 15) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Drain:
    """One worker run over a seeded queue.

    `to_empty` is from the worker process's spawn to the first poll that found no job left
    (start-up included, nothing subtracted); `to_exit` is from spawn to the process's exit.
    """

    jobs: int
    to_first: float
    to_empty: float
    to_exit: float

    @property
    def rate(self) -> float:
        return self.jobs / self.to_empty

    @property
    def steady_rate(self) -> float | None:
        """Jobs/s from the first finished job to the last: the rate without start-up (None when
        both fell within a few polls, too short to tell)."""
        if self.to_empty - self.to_first < 5 * POLL_SECONDS:
            return None
        return (self.jobs - 1) / (self.to_empty - self.to_first)


@dataclass(frozen=True)
class Variant:
    """One way of running a system's worker: `run(jobs)` seeds the queue and drains it.

    `repeat` is False for runs too slow to repeat within the benchmark's time budget.
    """

    label: str
    run: Callable[[int], Drain]
    repeat: bool = True


def drain(
    command: Sequence[str],
    url: str,
    remaining_query: str,
    jobs: int,
    log: Path,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
) -> Drain:
    """Run a worker that stops when its queue is empty, polling how many jobs remain; `env`
    adds to the worker's environment."""
    with connect(url) as conn:
        query = remaining_query.encode()
        started = time.monotonic()
        process = spawn(command, worker_env(url, **(env or {})), log)
        first: float | None = None
        try:
            while True:
                row = conn.execute(query).fetchone()
                left = int(row[0]) if row else -1
                now = time.monotonic()
                if first is None and left < jobs:
                    first = now
                if left == 0:
                    break
                if process.poll() is not None:
                    raise BenchmarkError(
                        f"{command[0]} exited ({process.returncode}) with {left} jobs left:\n"
                        f"{log_tail(log)}"
                    )
                if now - started > timeout:
                    raise BenchmarkError(f"{command[0]} did not drain in {timeout:g} s")
                time.sleep(POLL_SECONDS)
            emptied = now
            code = process.wait(timeout)
            exited = time.monotonic()
        finally:
            stop(process)
    if code != 0:
        raise BenchmarkError(f"{command[0]} exited with {code}:\n{log_tail(log)}")
    assert first is not None
    return Drain(jobs, first - started, emptied - started, exited - started)


def run_to_exit(command: Sequence[str], url: str, log: Path, timeout: float = 600.0) -> float:
    """Seconds from spawning `command` to its exit (it must exit 0)."""
    started = time.monotonic()
    process = spawn(command, worker_env(url), log)
    try:
        code = process.wait(timeout)
    finally:
        stop(process)
    elapsed = time.monotonic() - started
    if code != 0:
        raise BenchmarkError(f"{command[0]} exited with {code}:\n{log_tail(log)}")
    return elapsed


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (fraction 0.5 is the median)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@dataclass(frozen=True)
class LatencyProbe:
    """Measures commit-to-handler-start delays on an idle worker.

    The worker is started with the probe's socket in its environment; a few warm-up jobs make
    sure it is up and listening. Then, `samples` times: wait `gap`, dispatch one job (the
    `dispatch` callable returns once its transaction has committed), take time.monotonic(), and
    wait for the handler's report of its own time.monotonic() at its start.
    """

    socket_path: Path
    samples: int
    warmup: int = 5
    gap: float = 0.02
    timeout: float = 30.0

    def measure(
        self,
        command: Sequence[str],
        url: str,
        dispatch: Callable[[int], None],
        log: Path,
    ) -> list[float]:
        receiver = probe.Receiver(self.socket_path)
        env = worker_env(url, **{probe.SOCKET_ENV: str(self.socket_path)})
        process = spawn(command, env, log)
        try:
            for seq in range(-self.warmup, 0):
                dispatch(seq)
                self._started(receiver, seq, process, log)
            delays = []
            for seq in range(self.samples):
                time.sleep(self.gap)
                dispatch(seq)
                committed = time.monotonic()
                delays.append(self._started(receiver, seq, process, log) - committed)
            return delays
        finally:
            stop(process)
            receiver.close()

    def _started(
        self, receiver: probe.Receiver, seq: int, process: subprocess.Popen[bytes], log: Path
    ) -> float:
        """When the handler of job `seq` started (earlier reports, if late, are skipped)."""
        while True:
            try:
                got, started = receiver.receive(self.timeout)
            except TimeoutError:
                state = "running" if process.poll() is None else f"exited {process.returncode}"
                raise BenchmarkError(
                    f"no report for job {seq} within {self.timeout:g} s (worker {state}):\n"
                    f"{log_tail(log)}"
                ) from None
            if got == seq:
                return started
