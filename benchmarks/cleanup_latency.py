"""Workers' claim latency before and while `pgqueue cleanup` prunes 500,000 failed jobs.

    .venv/bin/python benchmarks/cleanup_latency.py [--rows 500000] [--seconds 15]

On a PostgreSQL cluster of its own (durable defaults: fsync and synchronous_commit on), it fills
`failed_jobs` with `--rows` rows that failed 31 to 60 days ago (and 20,000 recent ones that must
survive), then keeps workers claiming: `--claimers` processes each running the worker's own
`claim_jobs` statement (acknowledging the previous batch, claiming up to 10) in a loop with a
short pause, while a dispatcher adds `--rate` jobs per second. It records every claim's round
trip for `--seconds` with no cleanup running, then while `pgqueue cleanup --older-than 30d` runs
as a real subprocess, and prints:

- claim latency p50 / p99 / max and claims per second, before and during the cleanup;
- the cleanup's wall time and rows per second, with its batch statements' execution times and the
  span they ran over, from the server log (`log_min_duration_statement=0` for that session only);
- claim latency again over just that span ('deleting') and for a while after ('after').
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pgqueue import migrate
from pgqueue.embedded import EmbeddedCluster
from pgqueue.sql import queries_for

SCHEMA = "pgqueue"
QUEUE = "bench"
CLAIM_LIMIT = 10
RECENT_ROWS = 20_000
REPO = Path(__file__).resolve().parents[1]
PGQUEUE = [sys.executable, "-m", "pgqueue"]

_TRACEBACK = "Traceback (most recent call last):\n" + (
    '  File "/srv/app/jobs.py", line 42, in handle\n    raise ValueError(f"upstream said {code}")\n'
    * 6
)
_POPULATE = f"""
INSERT INTO {SCHEMA}.failed_jobs (
    id, queue, job_type, payload, priority, attempts, max_tries, exception_class,
    exception_message, traceback, worker_id, enqueued_at, failed_at
)
SELECT nextval(pg_get_serial_sequence('{SCHEMA}.jobs', 'id')), 'queue' || (g %% 4),
       'app.jobs.Job' || (g %% 20), jsonb_build_object('user_id', g, 'note', repeat('x', 80)),
       0, 3, 3, 'builtins.ValueError', 'upstream said ' || (500 + g %% 4), %(traceback)s,
       'host:' || (g %% 7) || ':abc', at - interval '5 minutes', at
FROM generate_series(1, %(count)s) AS g,
     LATERAL (SELECT now() - %(min_age)s * interval '1 day'
                     - random() * %(spread)s * interval '1 day' AS at) AS t
"""


@dataclass
class Window:
    name: str
    start: float
    end: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="old failed jobs to prune")
    parser.add_argument("--seconds", type=float, default=15.0, help="baseline window length")
    parser.add_argument("--claimers", type=int, default=2, help="claiming worker processes")
    parser.add_argument("--rate", type=int, default=500, help="jobs dispatched per second")
    parser.add_argument("--pause", type=float, default=0.005, help="seconds between claims")
    parser.add_argument("--batch-size", type=int, default=1000, help="cleanup's --batch-size")
    parser.add_argument("--rest", type=float, default=1.0, help="cleanup's --rest")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="pgq-cleanup-"))
    # We may run as root; the server then runs as `nobody` and must reach its directory.
    root.chmod(0o755)
    cluster = EmbeddedCluster(root / "pg", server_settings={"max_connections": "50"})
    try:
        server = cluster.ensure_running()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        url = make_conninfo(server, dbname="bench")
        migrate.upgrade(url, SCHEMA)
        populate(url, args.rows)
        return measure(cluster, url, args)
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def populate(url: str, rows: int) -> None:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        chunk = 100_000
        for offset in range(0, rows, chunk):
            count = min(chunk, rows - offset)
            params = {"traceback": _TRACEBACK, "count": count, "min_age": 31, "spread": 29}
            conn.execute(_POPULATE, params)
        conn.execute(
            _POPULATE, {"traceback": _TRACEBACK, "count": RECENT_ROWS, "min_age": 0, "spread": 29}
        )
        # A table that filled up over weeks has been vacuumed and analysed by autovacuum, and its
        # pages written out by checkpoints long ago: no leftover I/O from filling it in the way.
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.failed_jobs")
        conn.execute("CHECKPOINT")
        size = conn.execute(
            f"SELECT pg_size_pretty(pg_total_relation_size('{SCHEMA}.failed_jobs'))"
        ).fetchone()
    print(
        f"populated failed_jobs: {rows:,} rows older than 30 days + {RECENT_ROWS:,} recent "
        f"({size[0] if size else '?'}) in {time.monotonic() - started:.1f} s"
    )


def measure(cluster: EmbeddedCluster, url: str, args: argparse.Namespace) -> int:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results: Any = context.Queue()
    workers = [
        context.Process(target=claimer, args=(url, index, args.pause, stop, results))
        for index in range(args.claimers)
    ]
    workers.append(context.Process(target=dispatcher, args=(url, args.rate, stop)))
    for process in workers:
        process.start()
    time.sleep(3.0)  # warm up: connections, prepared statements, a steady backlog

    # Wall-clock times, so the server log's timestamps can bound the window the batches ran in.
    before = Window("before", time.time(), 0.0)
    time.sleep(args.seconds)
    before.end = time.time()

    log_offset = cluster.log_file.stat().st_size
    command = Window("cleanup", time.time(), 0.0)
    wall, output = run_cleanup(url, "30d", args.batch_size, args.rest)
    command.end = time.time()

    after = Window("after", time.time(), 0.0)
    time.sleep(min(args.seconds, 10.0))
    after.end = time.time()

    stop.set()
    samples: list[tuple[float, float, int]] = []
    for _ in range(args.claimers):
        samples.extend(results.get(timeout=60))
    for process in workers:
        process.join(30)

    pruned = int(output.split()[1])
    print(
        f"cleanup --batch-size {args.batch_size} --rest {args.rest:g}: `{output}` in {wall:.2f} s "
        f"wall ({pruned / wall:,.0f} rows/s)"
    )
    windows = [before, command]
    batches = statement_durations(cluster.log_file, log_offset)
    if batches:
        durations = [ms for _, ms in batches]
        deleting = Window("deleting", batches[0][0] - durations[0] / 1000, batches[-1][0])
        windows.append(deleting)
        print(
            f"         {len(batches)} batch statements (execution): p50 "
            f"{percentile(durations, 50):.1f} ms, p99 {percentile(durations, 99):.1f} ms, max "
            f"{max(durations):.1f} ms; batches ran for {deleting.end - deleting.start:.2f} s "
            f"({pruned / (deleting.end - deleting.start):,.0f} rows/s)"
        )
    windows.append(after)
    print(
        f"claim latency ({args.claimers} claimers, ~{args.rate} jobs/s dispatched; 'cleanup' is "
        "the whole command with its start-up, 'deleting' the span of its batches):"
    )
    for window in windows:
        latencies = [ms for at, ms, _ in samples if window.start <= at < window.end]
        claimed = sum(n for at, _, n in samples if window.start <= at < window.end)
        seconds = window.end - window.start
        if not latencies:
            print(f"  {window.name:<8} no claims")
            continue
        print(
            f"  {window.name:<8} {len(latencies) / seconds:7,.0f} claims/s  "
            f"{claimed / seconds:6,.0f} jobs/s  p50 {percentile(latencies, 50):6.2f} ms  "
            f"p99 {percentile(latencies, 99):6.2f} ms  max {max(latencies):7.2f} ms  "
            f"({seconds:.1f} s)"
        )
    return 0


def run_cleanup(url: str, older_than: str, batch_size: int, rest: float) -> tuple[float, str]:
    """Run `pgqueue cleanup` as cron would, logging its statements' durations; (wall s, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env.update(PGQUEUE_DATABASE_URL=url, PGQUEUE_SCHEMA=SCHEMA)
    env["PGOPTIONS"] = "-c log_min_duration_statement=0"
    flags = ["--older-than", older_than, "--batch-size", str(batch_size), "--rest", str(rest)]
    started = time.monotonic()
    result = subprocess.run(
        [*PGQUEUE, "cleanup", *flags],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"pgqueue cleanup failed ({result.returncode}): {result.stderr}")
    return wall, result.stdout.strip()


def statement_durations(log_file: Path, offset: int) -> list[tuple[float, float]]:
    """(when it ended, milliseconds) of each prune statement the server logged after `offset`.

    Entries look like `2026-01-01 10:00:00.123 UTC [pid] LOG:  duration: 3.2 ms  execute _pg3_0:`
    followed by the statement's text over several lines (the server logs in UTC here).
    """
    with log_file.open(encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        text = log.read()
    entry = re.compile(
        r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC \[\d+\] LOG:  duration: ([\d.]+) ms"
        r"\s+execute [^:]*:(.*?)(?=^\d{4}-\d\d-\d\d |\Z)",
        re.S | re.M,
    )
    found = []
    for stamp, ms, body in entry.findall(text):
        if "WITH doomed" in body and "ORDER BY failed_at" in body:
            ended = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
            found.append((ended.timestamp(), float(ms)))
    return found


def percentile(values: list[float], pct: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(pct * 10) - 1]


def claimer(
    url: str, index: int, pause: float, stop: Event, results: multiprocessing.Queue[Any]
) -> None:
    """Claim like a worker: one statement acks the last batch and claims up to 10 more."""
    query = queries_for(SCHEMA)["claim_jobs"]
    samples: list[tuple[float, float, int]] = []
    done_ids: list[int] = []
    token = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            next_token = uuid.uuid4()
            params = {
                # One token per claim: the last batch's ids as one array literal under it.
                "done_ids": ["{" + ",".join(map(str, done_ids)) + "}"] if done_ids else [],
                "done_tokens": [str(token)] if done_ids else [],
                "synchronous_commit": "on",
                "queue": QUEUE,
                "limit": CLAIM_LIMIT,
                "token": next_token,
                "lease_seconds": 30.0,
                "worker_id": f"bench:{index}",
            }
            started = time.perf_counter()
            rows = conn.execute(query, params).fetchall()
            elapsed = time.perf_counter() - started
            samples.append((time.time(), elapsed * 1000, len(rows)))
            done_ids, token = [row[0] for row in rows], next_token
            time.sleep(pause)
    results.put(samples)


def dispatcher(url: str, rate: int, stop: Event) -> None:
    """Dispatch `rate` no-op jobs a second in batches of 10, on schedule."""
    batch = 10
    interval = batch / rate
    with psycopg.connect(url, autocommit=True) as conn:
        next_at = time.monotonic()
        while not stop.is_set():
            conn.execute(
                f"INSERT INTO {SCHEMA}.jobs (queue, job_type, payload) "
                "SELECT %s, 'bench.Noop', '{}'::jsonb FROM generate_series(1, %s)",
                (QUEUE, batch),
            )
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    raise SystemExit(main())
