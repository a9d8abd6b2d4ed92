"""queue_throughput: what workers finished per queue and minute (the dashboard's chart), added by
each heartbeat and by the last one at shutdown, on a real database."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

import pgqueue
from pgqueue import AsyncQueue, Job, Settings
from pgqueue.maintenance import cleanup
from pgqueue.sql import queries_for

QUERIES = queries_for("pgqueue")


class Counted(Job):
    queue = "tp-ok"
    job_name = "tests.throughput.Counted"

    async def handle(self) -> None:
        pass


class Breaks(Job):
    queue = "tp-bad"
    job_name = "tests.throughput.Breaks"
    max_tries = 1

    async def handle(self) -> None:
        raise ValueError("broken on purpose")


async def _until(predicate: Any, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_a_worker_counts_what_each_queue_finished_this_minute(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        await queue.bulk([Counted() for _ in range(7)])
        await queue.bulk([Breaks() for _ in range(3)])
    async with pgqueue.Worker(settings, queues=("tp-ok", "tp-bad")) as worker:
        await _until(lambda: worker.summary.completed == 7 and worker.summary.failed == 3)
    rows = conn.execute(
        "SELECT queue, completed, failed, minute = date_trunc('minute', minute)"
        " FROM pgqueue.queue_throughput ORDER BY queue"
    ).fetchall()
    assert rows == [("tp-bad", 0, 3, True), ("tp-ok", 7, 0, True)]


def test_heartbeats_in_the_same_minute_add_up_per_queue(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency)"
        " VALUES ('w', 'h', 1, '{a,b}', 1)"
    )
    with conn.transaction():  # one transaction: now(), so the minute, is the same for both
        conn.execute(
            QUERIES["worker_heartbeat"],
            {"id": "w", "queues": ["a", "b"], "completed": [2, 5], "failed": [1, 0]},
        )
        conn.execute(
            QUERIES["worker_heartbeat"],
            {"id": "w", "queues": ["a"], "completed": [3], "failed": [4]},
        )
    assert conn.execute(
        "SELECT queue, completed, failed FROM pgqueue.queue_throughput ORDER BY queue"
    ).fetchall() == [("a", 5, 5), ("b", 5, 0)]
    assert conn.execute(
        "SELECT jobs_completed, jobs_failed FROM pgqueue.workers WHERE id = 'w'"
    ).fetchone() == (10, 5)


def test_a_heartbeat_with_nothing_finished_writes_no_throughput_row(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency)"
        " VALUES ('w', 'h', 1, '{a}', 1)"
    )
    conn.execute(
        QUERIES["worker_heartbeat"], {"id": "w", "queues": [], "completed": [], "failed": []}
    )
    assert conn.execute("SELECT count(*) FROM pgqueue.queue_throughput").fetchone() == (0,)
    assert conn.execute(
        "SELECT jobs_completed, jobs_failed FROM pgqueue.workers WHERE id = 'w'"
    ).fetchone() == (0, 0)


def test_cleanup_prunes_throughput_minutes_older_than_a_day(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.queue_throughput (queue, minute, completed)"
        " SELECT 'a', date_trunc('minute', now()) - make_interval(secs => s), 1"
        " FROM unnest(ARRAY[86400 + 60, 86400 - 60, 60]) AS s"
    )
    pruned = cleanup(settings)
    assert pruned.throughput_minutes == 1
    assert [
        row[0]
        for row in conn.execute(
            "SELECT round(extract(epoch FROM date_trunc('minute', now()) - minute))"
            " FROM pgqueue.queue_throughput ORDER BY minute"
        )
    ] == [86400 - 60, 60]
