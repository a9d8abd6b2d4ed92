"""What each dashboard page costs the database on a big queue: 1,000,000 jobs, 100,000 failed.

    .venv/bin/python benchmarks/dashboard_queries.py [--jobs 1000000] [--failed 100000] [--runs 5]

On a PostgreSQL cluster of its own (durable defaults), it fills a migrated database with
generate_series (a few seconds): `--jobs` jobs over four queues (one of them small, with 1,000
jobs), 90% ready, 8% scheduled, 2,000 running, with a job type that is rare (0.01%); `--failed`
failed jobs over a week; 20 workers; 24 hours of throughput rows; 10 schedules. Then VACUUM
ANALYZE and a CHECKPOINT, as a table that filled up over time would be.

It prints two tables:

- every statement each page runs, with its parameters as the page sends them (and, for
  comparison, the statements of `pgqueue stats`, which counts every row): the median wall
  time over `--runs` runs (execute and fetch, one connection, after a warm-up run), and from one
  `EXPLAIN (ANALYZE, BUFFERS)` the server's execution time and the shared buffers it touched
  (8 kB each; hit + read);
- every page end to end through the ASGI app (Starlette's TestClient, in process): connect, the
  statements, rendering; the median over `--runs` requests.

It is a database measurement: nothing else needs to be idle, but the numbers are one machine's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pgqueue import migrate
from pgqueue.dashboard.reads import MAX_COUNT, MAX_LANES
from pgqueue.doctor import EXPIRED_LEASE_GRACE_SECONDS
from pgqueue.embedded import EmbeddedCluster
from pgqueue.results import CANCELLED_CLASS
from pgqueue.schedules import DEFINED_WITHIN_SECONDS
from pgqueue.settings import Settings
from pgqueue.sql import queries_for

SCHEMA = "pgqueue"
RARE_TYPE = "app.jobs.Rare"
RUNNING = 2_000

_FILL_JOBS = """
INSERT INTO pgqueue.jobs (queue, job_type, payload, priority, run_at, attempts, enqueued_at,
                          lease_token, lease_expires_at, claimed_at, worker_id)
SELECT CASE WHEN n <= 1000 THEN 'small'
            WHEN n %% 10 < 6 THEN 'default'
            WHEN n %% 10 < 9 THEN 'emails'
            ELSE 'images' END,
       CASE WHEN n %% 10000 = 7 THEN 'app.jobs.Rare'
            ELSE 'app.jobs.Type' || (n %% 5) END,
       jsonb_build_object('user_id', n, 'note', 'hello'),
       (n %% 3) - 1,
       CASE WHEN n %% 100 < 8 THEN now() + (n %% 86400) * interval '1 second'
            ELSE now() - (n %% 3600) * interval '1 second' END,
       CASE WHEN n %% 50 = 0 THEN 1 ELSE 0 END,
       now() - (n %% 3600) * interval '1 second',
       CASE WHEN n > %(first_running)s THEN gen_random_uuid() END,
       CASE WHEN n > %(first_running)s THEN now() + interval '30 seconds' END,
       CASE WHEN n > %(first_running)s THEN now() - interval '3 seconds' END,
       CASE WHEN n > %(first_running)s THEN 'worker-' || (n %% 20) END
FROM generate_series(%(start)s, %(stop)s) AS n
"""
_FILL_FAILED = """
INSERT INTO pgqueue.failed_jobs (id, queue, job_type, payload, priority, attempts, max_tries,
                                 exception_class, exception_message, traceback, worker_id,
                                 enqueued_at, failed_at)
SELECT nextval(pg_get_serial_sequence('pgqueue.jobs', 'id')),
       CASE WHEN n %% 10 < 6 THEN 'default' WHEN n %% 10 < 9 THEN 'emails' ELSE 'images' END,
       CASE WHEN n %% 10000 = 7 THEN 'app.jobs.Rare' ELSE 'app.jobs.Type' || (n %% 5) END,
       jsonb_build_object('user_id', n), 0, 3, 3, 'builtins.ValueError', 'upstream said 503',
       %(traceback)s, 'worker-' || (n %% 20),
       now() - interval '8 days',
       now() - (n::float8 / %(count)s) * interval '7 days'
FROM generate_series(1, %(count)s) AS n
"""
_TRACEBACK = "Traceback (most recent call last):\n" + (
    '  File "/srv/app/jobs.py", line 42, in handle\n    raise ValueError("upstream said 503")\n' * 8
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="rows in jobs")
    parser.add_argument("--failed", type=int, default=100_000, help="rows in failed_jobs")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each statement/page")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="pgq-dashboard-"))
    root.chmod(0o755)  # we may run as root; the server then runs as `nobody`
    cluster = EmbeddedCluster(root / "pg", server_settings={"max_connections": "50"})
    try:
        server = cluster.ensure_running()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
            version = admin.info.server_version
        url = make_conninfo(server, dbname="bench")
        migrate.upgrade(url, SCHEMA)
        fill(url, args.jobs, args.failed)
        print(f"PostgreSQL {version // 10000}.{version % 10000}, {sys.platform}")
        measure_statements(url, args.runs)
        measure_pages(url, args.runs)
        return 0
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def fill(url: str, jobs: int, failed: int) -> None:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        chunk = 250_000
        for start in range(1, jobs + 1, chunk):
            stop = min(start + chunk - 1, jobs)
            conn.execute(
                _FILL_JOBS, {"start": start, "stop": stop, "first_running": jobs - RUNNING}
            )
        for start in range(0, failed, chunk):
            conn.execute(
                _FILL_FAILED, {"traceback": _TRACEBACK, "count": min(chunk, failed - start)}
            )
        conn.execute(
            "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, jobs_completed) "
            "SELECT 'worker-' || n, 'host-' || n, 1000 + n, '{default,emails,images,small}', 100, "
            "n * 1000 FROM generate_series(0, 19) AS n"
        )
        conn.execute(
            "INSERT INTO pgqueue.queue_throughput (queue, minute, completed, failed) "
            "SELECT q, date_trunc('minute', now()) - m * interval '1 minute', 500 + m, m % 3 "
            "FROM generate_series(0, 1439) AS m, "
            "unnest(ARRAY['default', 'emails', 'images', 'small']) AS q"
        )
        conn.execute(
            "INSERT INTO pgqueue.schedules (name, expression, timezone, job_type, queue, "
            "defined_by) SELECT 'every-' || n, '*/5 * * * *', 'UTC', 'app.jobs.Type1', 'default', "
            "'app.jobs' FROM generate_series(1, 10) AS n"
        )
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        sizes = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('pgqueue.jobs')), "
            "pg_size_pretty(pg_total_relation_size('pgqueue.failed_jobs'))"
        ).fetchone()
    assert sizes is not None
    print(
        f"filled jobs with {jobs:,} rows ({sizes[0]} with indexes) and failed_jobs with "
        f"{failed:,} ({sizes[1]}) in {time.monotonic() - started:.1f} s"
    )


def page_statements(conn: psycopg.Connection[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(page, statement, parameters) as each page sends them."""
    now = conn.execute("SELECT now()").fetchone()
    assert now is not None
    failed_cursor = conn.execute(
        "SELECT failed_at, id FROM pgqueue.failed_jobs ORDER BY failed_at DESC, id DESC "
        "OFFSET 5000 LIMIT 1"
    ).fetchone()
    assert failed_cursor is not None
    job_id = conn.execute("SELECT max(id) FROM pgqueue.jobs").fetchone()
    failed_id = conn.execute("SELECT max(id) FROM pgqueue.failed_jobs").fetchone()
    assert job_id is not None
    assert failed_id is not None
    stats = [
        ("worker_counters", {"at": None}),
        ("queue_stats", {"at": now[0]}),
        ("oldest_xmin_holder", {}),
    ]
    counts = {"queue": None, "cap": MAX_COUNT, "max_lanes": MAX_LANES}
    waiting = {"queue": "default", "job_type": None, "offset": 0, "limit": 50, "scan": 10_000}
    failed = {
        "queue": None,
        "job_type": None,
        "since_seconds": None,
        "before_at": None,
        "before_id": None,
        "limit": 50,
    }
    rows: list[tuple[str, str, dict[str, Any]]] = []
    rows += [("pgqueue stats (not a page)", name, params) for name, params in stats]
    rows += [
        ("queues", "dashboard_queues", counts),
        ("queues", "oldest_xmin_holder", {}),
        ("queues", "dashboard_throughput", {"queue": None, "minutes": 60}),
        ("queue", "dashboard_queues", {**counts, "queue": "default"}),
        ("queue: small queue", "dashboard_queues", {**counts, "queue": "small"}),
        ("queue", "dashboard_running_jobs", {"queue": "default", "limit": 200}),
        ("queue", "dashboard_waiting_jobs", waiting),
        ("queue: last page (200)", "dashboard_waiting_jobs", {**waiting, "offset": 9_950}),
        ("queue: rare type", "dashboard_waiting_jobs", {**waiting, "job_type": RARE_TYPE}),
        ("queue: small queue", "dashboard_waiting_jobs", {**waiting, "queue": "small"}),
        ("queue", "dashboard_throughput", {"queue": "default", "minutes": 60}),
        ("job (queued)", "job_status", {"id": job_id[0], "cancelled_class": CANCELLED_CLASS}),
        ("job (queued)", "dashboard_job_details", {"id": job_id[0]}),
        ("job (failed)", "job_status", {"id": failed_id[0], "cancelled_class": CANCELLED_CLASS}),
        ("job (failed)", "dashboard_job_details", {"id": failed_id[0]}),
        ("failed", "dashboard_failed_jobs", failed),
        ("failed: queue", "dashboard_failed_jobs", {**failed, "queue": "images"}),
        ("failed: rare type", "dashboard_failed_jobs", {**failed, "job_type": RARE_TYPE}),
        ("failed: last hour", "dashboard_failed_jobs", {**failed, "since_seconds": 3600.0}),
        (
            "failed: page 101 (keyset)",
            "dashboard_failed_jobs",
            {**failed, "before_at": failed_cursor[0], "before_id": failed_cursor[1]},
        ),
    ]
    rows += [("failed", "dashboard_failed_queues", {"limit": 1000})]
    rows += [("workers", "dashboard_workers", {"limit": 500})]
    rows += [("schedules", "list_schedules", {"defined_within": DEFINED_WITHIN_SECONDS})]
    rows += [
        ("health", "doctor_schema", {"schema": SCHEMA}),
        ("health", "doctor_schema_version", {}),
        ("health", "doctor_jobs_table", {"schema": SCHEMA}),
        ("health", "oldest_xmin_holder", {}),
        ("health", "doctor_expired_leases", {"grace_seconds": EXPIRED_LEASE_GRACE_SECONDS}),
        ("health", "doctor_workers", {}),
        ("health", "doctor_ready_queues", {}),
        ("health", "doctor_paused_queues", {}),
        ("health", "doctor_notify_queue", {}),
    ]
    return rows


def measure_statements(url: str, runs: int) -> None:
    queries = queries_for(SCHEMA)
    print()
    print(f"{'page':<28}{'statement':<26}{'median ms':>10}{'exec ms':>10}{'buffers':>10}  rows")
    with psycopg.connect(url, autocommit=True) as conn:
        for page, name, params in page_statements(conn):
            query = queries[name]
            # Never prepared, as in the app: it runs each statement once per connection, so each
            # gets a plan for its parameters (a generic plan of a statement with an optional
            # filter, `%(queue)s IS NULL OR ...`, would serve every value alike, and badly).
            conn.execute(query, params, prepare=False).fetchall()  # warm-up
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                rows = conn.execute(query, params, prepare=False).fetchall()
                times.append((time.perf_counter() - started) * 1000)
            explained = conn.execute(b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params)
            plan = _plan(explained.fetchone())
            top = plan["Plan"]
            buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
            print(
                f"{page:<28}{name:<26}{statistics.median(times):>10.2f}"
                f"{plan['Execution Time']:>10.2f}{buffers:>10,}  {len(rows):,}"
            )


def _plan(row: tuple[Any, ...] | None) -> dict[str, Any]:
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    plan: dict[str, Any] = document[0]
    return plan


def measure_pages(url: str, runs: int) -> None:
    from starlette.testclient import TestClient

    from pgqueue.dashboard import create_app

    with psycopg.connect(url, autocommit=True) as conn:
        job = conn.execute("SELECT max(id) FROM pgqueue.jobs").fetchone()
        failed = conn.execute("SELECT max(id) FROM pgqueue.failed_jobs").fetchone()
    assert job is not None
    assert failed is not None
    app = create_app(Settings(database_url=url, db_schema=SCHEMA))
    pages = [
        "/",
        "/queue?name=default",
        "/queue?name=default&page=200",
        f"/queue?name=default&type={RARE_TYPE}",
        f"/job?id={job[0]}",
        f"/job?id={failed[0]}",
        "/failed",
        "/failed?queue=images&since=1h",
        "/workers",
        "/schedules",
        "/health",
    ]
    print()
    print(f"{'page (whole request)':<44}{'median ms':>10}{'max ms':>10}{'bytes':>10}")
    with TestClient(app) as client:
        for path in pages:
            answer = client.get(path)  # warm-up
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
            print(
                f"{path:<44}{statistics.median(times):>10.1f}{max(times):>10.1f}"
                f"{len(answer.content):>10,}"
            )


if __name__ == "__main__":
    sys.exit(main())
