"""Kept results past their time, and the commands around results (SPEC 11), on real PostgreSQL:
`prune_job_results` at the keep_until boundary (rows on both sides), `pgqueue cleanup` and a
worker's periodic cleanup, `pgqueue status`, progress in `pgqueue stats`, and the worker role's
privileges for what the worker writes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import Job, Queue, Settings
from pgqueue.maintenance import prune_job_results, prune_job_results_async
from pgqueue.results import results_channel
from pgqueue.roles import roles_sql
from pgqueue.sql import queries_for
from pgqueue.stats import PROGRESS_LISTED, read_stats
from pgqueue.worker import Worker, WorkerOptions
from tests.cli_runner import one_error, run_pgqueue

QUERIES = queries_for("pgqueue")


class Thumbnail(Job):
    queue = "upkeep"
    job_name = "tests.results_upkeep.Thumbnail"
    keep_result = "1d"

    n: int = 0

    async def handle(self) -> dict[str, int]:
        return {"n": self.n}


def _insert_results(conn: psycopg.Connection[Any], *keep_until: str) -> list[int]:
    """job_results rows whose keep_until is each SQL expression (evaluated in conn's transaction)."""
    ids = []
    for number, expression in enumerate(keep_until, start=1):
        conn.execute(
            sql.SQL(
                "INSERT INTO pgqueue.job_results (id, queue, job_type, attempts, result,"
                " enqueued_at, keep_until) VALUES (%s, 'upkeep', 't', 1, '1', now(), {})"
            ).format(sql.SQL(expression)),  # the test's own literal expressions
            (number,),
        )
        ids.append(number)
    return ids


def _kept_ids(conn: psycopg.Connection[Any]) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM pgqueue.job_results ORDER BY id")]


def test_prune_takes_rows_past_keep_until_and_leaves_the_rest(database_url: str) -> None:
    # One transaction, so now() is one instant for the inserts and the prune alike.
    with psycopg.connect(database_url) as conn, conn.transaction():
        _insert_results(
            conn,
            "now() - interval '1 microsecond'",
            "now()",
            "now() + interval '1 microsecond'",
            "now() - interval '30 days'",
        )
        assert prune_job_results(conn) == 2
        assert _kept_ids(conn) == [2, 3]


def test_prune_goes_in_batches_until_one_comes_back_short(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.job_results (id, queue, job_type, attempts, result, enqueued_at,"
        " keep_until) SELECT n, 'upkeep', 't', 1, 'null', now(), now() - interval '1 hour'"
        " FROM generate_series(1, 25) AS n"
    )
    assert prune_job_results(conn, batch_size=10, rest=0) == 25
    assert prune_job_results(conn, batch_size=10, rest=0) == 0


async def test_async_prune_is_the_same(database_url: str, conn: psycopg.Connection[Any]) -> None:
    _insert_results(conn, "now() - interval '1 second'", "now() + interval '1 hour'")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as own:
        assert await prune_job_results_async(own) == 1
    assert _kept_ids(conn) == [2]


def test_cli_cleanup_prunes_kept_results_too_and_says_how_many(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _insert_results(conn, "now() - interval '1 second'", "now() + interval '1 hour'")
    run = run_pgqueue("cleanup", env={"PGQUEUE_DATABASE_URL": database_url})
    assert run.exit_code == 0, run.stderr
    assert run.stdout == (
        "pruned 0 failed jobs that failed over 30d ago\npruned 1 kept result past their keep_result\n"
    )
    assert _kept_ids(conn) == [2]


async def test_a_worker_s_periodic_cleanup_prunes_kept_results(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    _insert_results(conn, "now() - interval '1 second'", "now() + interval '1 hour'")
    options = WorkerOptions(queues=("upkeep",), sleep=0.05, grace=0, cleanup_interval=0.01)
    worker = Worker(settings, options)
    async with worker:
        for _ in range(200):
            if _kept_ids(conn) == [2]:
                break
            await asyncio.sleep(0.05)
    assert _kept_ids(conn) == [2]


# ---- pgqueue status --------------------------------------------------------------------------


def _claim(conn: psycopg.Connection[Any], queue: str = "upkeep") -> uuid.UUID:
    token = uuid.uuid4()
    conn.execute(
        QUERIES["claim_jobs"],
        {
            "done_tokens": [],
            "done_ids": [],
            "synchronous_commit": "off",
            "queue": queue,
            "limit": 100,
            "token": token,
            "lease_seconds": 30,
            "worker_id": "test-worker",
        },
    )
    return token


def _report(conn: psycopg.Connection[Any], token: uuid.UUID, ids: list[int], done: float) -> None:
    conn.execute(
        QUERIES["renew_leases"],
        {
            "tokens": [str(token)],
            "ids": ["{" + ",".join(map(str, ids)) + "}"],
            "lease_seconds": 30,
            "progress_ids": ids,
            "progress": [done] * len(ids),
            "progress_messages": [f"{round(done * 100)} of 100 done"] * len(ids),
        },
    )


def test_pgqueue_status_shows_a_completed_job_and_its_result(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Thumbnail(n=4))
    token = _claim(conn)
    conn.execute(
        QUERIES["complete_kept_jobs"],
        {
            "ids": f"{{{job_id}}}",
            "tokens": f"{{{token}}}",
            "results": '[{"width": 100}]',
            "keep_seconds": "{60}",
            "results_channel": results_channel("pgqueue"),
        },
    )
    run = run_pgqueue("status", str(job_id), env={"PGQUEUE_DATABASE_URL": database_url})
    assert run.exit_code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"job {job_id}: completed"
    assert "  queue        upkeep" in lines
    assert "  type         tests.results_upkeep.Thumbnail" in lines
    assert "  attempts     1" in lines
    assert any(line.startswith("  finished at  ") for line in lines)
    assert run.stdout.endswith('result:\n{\n  "width": 100\n}\n')


def test_pgqueue_status_json_shows_a_running_job_s_progress(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Thumbnail())
    _report(conn, _claim(conn), [job_id], 0.4)
    run = run_pgqueue("status", str(job_id), "--json", env={"PGQUEUE_DATABASE_URL": database_url})
    assert run.exit_code == 0, run.stderr
    document = json.loads(run.stdout)
    assert (document["state"], document["progress_message"]) == ("running", "40 of 100 done")
    assert document["progress"] == pytest.approx(0.4)
    text = run_pgqueue("status", str(job_id), env={"PGQUEUE_DATABASE_URL": database_url})
    assert "  progress     40% 40 of 100 done" in text.stdout.splitlines()


def test_pgqueue_status_of_an_unknown_id_is_one_error_line(database_url: str) -> None:
    run = run_pgqueue("status", "99999", env={"PGQUEUE_DATABASE_URL": database_url})
    assert "no job 99999 is known" in one_error(run, 1)


# ---- progress in pgqueue stats ---------------------------------------------------------------


def test_stats_list_running_jobs_that_report_progress(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        ids = queue.bulk([Thumbnail(n=n) for n in range(PROGRESS_LISTED + 3)])
        silent = queue.dispatch(Thumbnail(n=99))
    token = _claim(conn)
    _report(conn, token, ids, 0.25)
    stats = read_stats(conn)
    assert [job.id for job in stats.progress] == ids[:PROGRESS_LISTED]
    assert stats.progress_total == len(ids)
    assert silent not in {job.id for job in stats.progress}
    first = stats.progress[0]
    assert (first.queue, first.job_type, first.message) == (
        "upkeep",
        "tests.results_upkeep.Thumbnail",
        "25 of 100 done",
    )
    assert first.progress == pytest.approx(0.25) and first.running_seconds >= 0
    assert stats.to_json()["progress_total"] == len(ids)
    run = run_pgqueue("stats", env={"PGQUEUE_DATABASE_URL": database_url})
    assert run.exit_code == 0, run.stderr
    assert "running jobs reporting progress" in run.stdout
    assert "25%" in run.stdout and "25 of 100 done" in run.stdout
    assert "and 3 more (oldest claims shown)" in run.stdout


def test_stats_without_progress_show_no_progress_table(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(Thumbnail())
    _claim(conn)
    assert read_stats(conn).progress == ()
    run = run_pgqueue("stats", env={"PGQUEUE_DATABASE_URL": database_url})
    assert run.exit_code == 0 and "reporting progress" not in run.stdout


# ---- the worker role -------------------------------------------------------------------------


@pytest.fixture
def worker_role(conn: psycopg.Connection[Any]) -> Iterator[str]:
    suffix = uuid.uuid4().hex[:10]
    worker, dispatch = f"pgq_worker_{suffix}", f"pgq_dispatch_{suffix}"
    conn.execute(roles_sql("pgqueue", worker, dispatch).encode())
    yield worker
    for role in (worker, dispatch):
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_worker_role_writes_progress_keeps_results_prunes_them_and_reads_status(
    worker_role: str, settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        first, second = queue.dispatch(Thumbnail(n=1)), queue.dispatch(Thumbnail(n=2))
    with psycopg.connect(database_url, autocommit=True) as as_worker:
        as_worker.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(worker_role)))
        token = _claim(as_worker)
        _report(as_worker, token, [first, second], 0.5)
        for job_id in (first, second):  # the second completes a job kept before: an upsert
            rows = as_worker.execute(
                QUERIES["complete_kept_jobs"],
                {
                    "ids": f"{{{job_id}}}",
                    "tokens": f"{{{token}}}",
                    "results": "[[1]]",
                    "keep_seconds": "{-1}",
                    "results_channel": results_channel("pgqueue"),
                },
            ).fetchall()
            assert [row[0] for row in rows] == [job_id]
        conn.execute(
            "INSERT INTO pgqueue.jobs (id, queue, job_type, payload) VALUES"
            " (%s, 'upkeep', 'tests.results_upkeep.Thumbnail', '{}')",
            (first,),
        )
        token = _claim(as_worker)
        as_worker.execute(
            QUERIES["complete_kept_jobs"],
            {
                "ids": f"{{{first}}}",
                "tokens": f"{{{token}}}",
                "results": "[[2]]",
                "keep_seconds": "{-1}",
                "results_channel": results_channel("pgqueue"),
            },
        )
        status = as_worker.execute(
            QUERIES["job_status"], {"id": first, "cancelled_class": "x"}
        ).fetchone()
        assert status is not None and status[1] == "completed" and status[7] == "[2]"
        assert prune_job_results(as_worker) == 2
