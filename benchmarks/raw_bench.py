"""What plain SQL does on pgqueue's own `jobs` table: the ceilings pgqueue is compared with.

All three use one psycopg connection in autocommit mode, and rows with the same columns and
values that `Queue.bulk` writes for a no-op job.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import harness
import pgqueue_bench

COLUMNS = "queue, job_type, payload, priority, max_tries"
INSERT = f"INSERT INTO pgqueue.jobs ({COLUMNS}) VALUES (%s, %s, %s::jsonb, %s, %s) RETURNING id"
COPY = f"COPY pgqueue.jobs ({COLUMNS}) FROM STDIN"
PLAIN_TABLE = """
CREATE TABLE IF NOT EXISTS plain_jobs (
    queue text, job_type text, payload jsonb, priority integer, max_tries integer
)
"""
COPY_PLAIN = f"COPY plain_jobs ({COLUMNS}) FROM STDIN"
# Claim and finish in one statement: lock up to 100 ready rows in claim order, delete them.
CLAIM_DELETE = """
DELETE FROM pgqueue.jobs
WHERE id = ANY(ARRAY(
    SELECT id FROM pgqueue.jobs
    WHERE queue = 'default' AND lease_token IS NULL AND run_at <= now()
    ORDER BY priority, run_at, id
    LIMIT 100
    FOR UPDATE SKIP LOCKED
))
"""


def _row(n: int) -> tuple[Any, ...]:
    return ("default", pgqueue_bench.NOOP, f'{{"n":{n}}}', 0, 3)


def claim_delete(pgqueue: pgqueue_bench.PgQueue, jobs: int) -> float:
    """Seconds to empty a queue of `jobs` rows, 100 rows per transaction."""
    pgqueue.seed(jobs)
    with harness.connect(pgqueue.url) as conn:
        started = time.perf_counter()
        while conn.execute(CLAIM_DELETE).rowcount > 0:
            pass
        return time.perf_counter() - started


def copy(pgqueue: pgqueue_bench.PgQueue, jobs: int, batch: int, *, plain: bool = False) -> float:
    """Seconds to COPY `jobs` prepared rows in, one COPY (one transaction) per `batch` rows: into
    pgqueue.jobs, or with `plain` into a table of the same columns with no key, index or trigger
    (what the database does for the rows alone)."""
    batches = [
        [_row(n) for n in range(start, min(start + batch, jobs))] for start in range(0, jobs, batch)
    ]
    pgqueue.reset()
    with harness.connect(pgqueue.url) as conn:
        conn.execute(PLAIN_TABLE)
        conn.execute("TRUNCATE plain_jobs")
    harness.settle(pgqueue.url)
    with harness.connect(pgqueue.url) as conn:
        cursor = conn.cursor()
        started = time.perf_counter()
        for rows in batches:
            with cursor.copy(COPY_PLAIN if plain else COPY) as stream:
                for row in rows:
                    stream.write_row(row)
        return time.perf_counter() - started


def insert_loop(pgqueue: pgqueue_bench.PgQueue, jobs: int) -> float:
    """Seconds for `jobs` one-row `INSERT ... RETURNING id` statements, each committed."""
    rows = [_row(n) for n in range(jobs)]
    pgqueue.reset()
    harness.settle(pgqueue.url)
    with harness.connect(pgqueue.url) as conn:
        started = time.perf_counter()
        for row in rows:
            conn.execute(INSERT, row).fetchone()
        return time.perf_counter() - started


# What an at-least-once queue must write per job, in plain SQL: lease up to 100 ready rows (the
# claim's UPDATE, which moves each row out of the claim index) and, in the same statement, delete
# the rows leased by the previous one (the acknowledgement, compare-and-set on its token). Two
# writes per row where CLAIM_DELETE makes one: the ceiling for any worker that acknowledges a job
# only after it ran.
LEASE_ACK = """
WITH acked AS (
    DELETE FROM pgqueue.jobs WHERE id = ANY(%(done)s::bigint[]) AND lease_token = %(done_token)s
), picked AS MATERIALIZED (
    SELECT id FROM pgqueue.jobs
    WHERE queue = 'default' AND lease_token IS NULL AND run_at <= now()
    ORDER BY priority, run_at, id
    LIMIT 100
    FOR UPDATE SKIP LOCKED
)
UPDATE pgqueue.jobs AS j
SET lease_token = %(token)s, lease_expires_at = now() + interval '30 seconds',
    attempts = j.attempts + 1, claimed_at = now()
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id
"""


def lease_ack(pgqueue: pgqueue_bench.PgQueue, jobs: int) -> float:
    """Seconds to lease and then acknowledge `jobs` rows, 100 per statement (LEASE_ACK)."""
    pgqueue.seed(jobs)
    with harness.connect(pgqueue.url) as conn:
        started = time.perf_counter()
        done: list[int] = []
        done_token = uuid.uuid4()
        while True:
            token = uuid.uuid4()
            params = {"done": done, "done_token": done_token, "token": token}
            leased = [row[0] for row in conn.execute(LEASE_ACK, params)]
            if not leased and not done:
                return time.perf_counter() - started
            done, done_token = leased, token
