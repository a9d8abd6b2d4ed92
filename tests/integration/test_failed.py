"""The failed_jobs interface: FailedJobs/AsyncFailedJobs and `pgqueue failed ...`, on real PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import FailedJobs, Settings
from pgqueue.errors import ConfigurationError, FailedJobNotFoundError, UnsupportedConnectionError
from pgqueue.failed import AsyncFailedJobs
from tests.integration.failed_rows import REPO, cli_env, ids_in, insert_failed, pgqueue

HOUR = 3600.0


@pytest.fixture
def failed(settings: Settings) -> FailedJobs:
    return FailedJobs(settings)


def _race(
    database_url: str, count: int, action: Callable[[int, psycopg.Connection[Any]], Any]
) -> list[Any]:
    """Run `action(index, conn)` in `count` threads, each on an autocommit connection opened
    beforehand, all released at the same instant; their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as own:
            barrier.wait()
            results[index] = action(index, own)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# ---- list and show ------------------------------------------------------------------------


def test_list_returns_newest_first(failed: FailedJobs, conn: psycopg.Connection[Any]) -> None:
    old = insert_failed(conn, failed_ago=300)
    new = insert_failed(conn, failed_ago=10)
    middle = insert_failed(conn, failed_ago=100)
    assert [job.id for job in failed.list()] == new + middle + old


def test_list_filters_by_queue_and_type(failed: FailedJobs, conn: psycopg.Connection[Any]) -> None:
    emails = insert_failed(conn, queue="emails", job_type="app.Send")
    insert_failed(conn, queue="emails", job_type="app.Other")
    insert_failed(conn, queue="reports", job_type="app.Send")
    assert [job.id for job in failed.list(queue="emails", job_type="app.Send")] == emails
    assert len(failed.list(queue="emails")) == 2
    assert len(failed.list(job_type="app.Send")) == 2


def test_list_since_keeps_rows_inside_the_window_and_drops_rows_outside(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    inside = insert_failed(conn, failed_ago=HOUR - 60)
    insert_failed(conn, failed_ago=HOUR + 60)
    assert [job.id for job in failed.list(since=HOUR)] == inside
    assert [job.id for job in failed.list(since=timedelta(hours=1))] == inside


def test_list_stops_at_the_limit(failed: FailedJobs, conn: psycopg.Connection[Any]) -> None:
    ids = insert_failed(conn, count=5)
    assert {job.id for job in failed.list(limit=3)} <= set(ids)
    assert len(failed.list(limit=3)) == 3


def test_show_returns_every_column(failed: FailedJobs, conn: psycopg.Connection[Any]) -> None:
    (job_id,) = insert_failed(
        conn, queue="emails", payload={"user_id": 7}, attempts=2, message="no such user"
    )
    job = failed.show(job_id)
    assert (job.id, job.queue, job.job_type, job.payload) == (
        job_id,
        "emails",
        "app.jobs.SendEmail",
        {"user_id": 7},
    )
    assert (job.attempts, job.max_tries, job.exception_class, job.exception_message) == (
        2,
        3,
        "builtins.ValueError",
        "no such user",
    )
    assert job.traceback.startswith("Traceback")
    assert job.worker_id == "host:1:abc"
    assert job.enqueued_at < job.failed_at
    assert json.loads(json.dumps(job.to_json()))["failed_at"] == job.failed_at.isoformat()


def test_show_of_an_unknown_id_raises_not_found(failed: FailedJobs) -> None:
    with pytest.raises(FailedJobNotFoundError, match="no failed job with id 12345"):
        failed.show(12345)


def test_bad_arguments_are_refused_before_connecting(settings: Settings) -> None:
    failed = FailedJobs(settings.model_copy(update={"database_url": None}))
    with pytest.raises(ConfigurationError, match="limit"):
        failed.list(limit=0)
    with pytest.raises(ConfigurationError, match="since"):
        failed.list(since=-1)
    with pytest.raises(ConfigurationError, match="job ids are integers"):
        failed.retry(["7"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="batch_size"):
        failed.retry_all(batch_size=0)


# ---- retry ----------------------------------------------------------------------------------


def test_retry_moves_the_job_back_with_its_id_and_fresh_tries(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    (job_id,) = insert_failed(conn, queue="emails", payload={"user_id": 7}, attempts=3)
    enqueued_at = failed.show(job_id).enqueued_at
    assert failed.retry([job_id]) == [job_id]
    row = conn.execute(
        "SELECT queue, job_type, payload, attempts, max_tries, lease_token, run_at <= now(), "
        "enqueued_at, last_error FROM pgqueue.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (
        "emails",
        "app.jobs.SendEmail",
        {"user_id": 7},
        0,
        3,
        None,
        True,
        enqueued_at,
        None,
    )
    assert ids_in(conn, "failed_jobs") == []


def test_retry_returns_only_the_ids_that_were_failed(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_failed(conn, count=2)
    assert failed.retry([*ids, 999_999, ids[0]]) == ids
    assert failed.retry(ids) == []


def test_retry_wakes_listening_workers(
    failed: FailedJobs, conn: psycopg.Connection[Any], database_url: str
) -> None:
    (job_id,) = insert_failed(conn, queue="emails")
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN pgqueue")
        failed.retry([job_id])
        notices = list(listener.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notices] == [("pgqueue", "emails")]


def test_retry_all_picks_by_queue_and_type(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    wanted = insert_failed(conn, count=3, queue="emails", job_type="app.Send")
    others = insert_failed(conn, queue="emails", job_type="app.Other")
    others += insert_failed(conn, queue="reports", job_type="app.Send")
    assert failed.retry_all(queue="emails", job_type="app.Send") == 3
    assert ids_in(conn, "jobs") == wanted
    assert ids_in(conn, "failed_jobs") == others


def test_retry_all_in_small_batches_moves_every_job(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_failed(conn, count=50)
    assert failed.retry_all(batch_size=7) == 50
    assert ids_in(conn, "jobs") == ids
    assert ids_in(conn, "failed_jobs") == []


def test_retry_in_the_callers_transaction_rolls_back_with_it(
    failed: FailedJobs, conn: psycopg.Connection[Any], database_url: str
) -> None:
    (job_id,) = insert_failed(conn)
    with psycopg.connect(database_url) as caller:
        assert failed.retry([job_id], conn=caller) == [job_id]
        caller.rollback()
    assert ids_in(conn, "failed_jobs") == [job_id]
    assert ids_in(conn, "jobs") == []


def test_concurrent_retries_of_the_same_ids_move_each_job_exactly_once(
    failed: FailedJobs, conn: psycopg.Connection[Any], database_url: str
) -> None:
    for _ in range(5):
        ids = insert_failed(conn, count=300)
        # Two threads retry the same ids in batches of different sizes, so the batches overlap.
        results = _race(
            database_url,
            2,
            lambda index, own, ids=ids: failed.retry(ids, batch_size=(100, 37)[index], conn=own),
        )
        assert sorted(results[0] + results[1]) == ids
        assert ids_in(conn, "failed_jobs") == []
        assert ids_in(conn, "jobs") == ids
        conn.execute("DELETE FROM pgqueue.jobs")


def test_concurrent_retry_alls_move_each_job_exactly_once(
    failed: FailedJobs, conn: psycopg.Connection[Any], database_url: str
) -> None:
    ids = insert_failed(conn, count=2000)
    results = _race(database_url, 3, lambda _, own: failed.retry_all(batch_size=50, conn=own))
    assert sum(results) == 2000
    assert ids_in(conn, "jobs") == ids
    assert ids_in(conn, "failed_jobs") == []


# ---- forget and flush ---------------------------------------------------------------------


def test_forget_deletes_only_the_given_ids(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_failed(conn, count=3)
    assert failed.forget([ids[0], ids[2], 999_999]) == [ids[0], ids[2]]
    assert ids_in(conn, "failed_jobs") == [ids[1]]
    assert ids_in(conn, "jobs") == []


def test_flush_older_than_deletes_rows_past_the_cutoff_and_keeps_newer_ones(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    insert_failed(conn, count=3, failed_ago=7 * 86400 + 60)
    newer = insert_failed(conn, count=2, failed_ago=7 * 86400 - 60)
    assert failed.flush(older_than=timedelta(days=7)) == 3
    assert ids_in(conn, "failed_jobs") == newer


def test_flush_of_one_queue_keeps_the_others(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    insert_failed(conn, count=4, queue="emails")
    reports = insert_failed(conn, count=2, queue="reports")
    assert failed.flush(queue="emails", batch_size=3) == 4
    assert ids_in(conn, "failed_jobs") == reports


def test_flush_without_filters_deletes_everything_in_batches(
    failed: FailedJobs, conn: psycopg.Connection[Any]
) -> None:
    insert_failed(conn, count=25)
    assert failed.flush(batch_size=10) == 25
    assert ids_in(conn, "failed_jobs") == []


# ---- async ----------------------------------------------------------------------------------


async def test_async_failed_jobs_list_retry_forget_and_flush(
    settings: Settings, conn: psycopg.Connection[Any], database_url: str
) -> None:
    failed = AsyncFailedJobs(settings)
    first, second, third = insert_failed(conn, count=3)
    old = insert_failed(conn, failed_ago=2 * HOUR)
    assert [job.id for job in await failed.list(since=HOUR)] == [third, second, first]
    assert (await failed.show(first)).id == first
    assert await failed.retry([first]) == [first]
    assert await failed.forget([second]) == [second]
    assert await failed.flush(older_than=HOUR) == 1
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as own:
        assert await failed.retry_all(conn=own) == 1
    assert ids_in(conn, "jobs") == [first, third]
    assert old[0] not in ids_in(conn, "failed_jobs")


async def test_async_failed_jobs_refuses_a_blocking_connection(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(UnsupportedConnectionError, match="AsyncConnection"):
        await AsyncFailedJobs(settings).list(conn=conn)  # type: ignore[arg-type]


# ---- the CLI --------------------------------------------------------------------------------


def test_cli_list_json_applies_since_on_both_sides_of_the_cutoff(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    inside = insert_failed(conn, failed_ago=HOUR - 60, queue="emails")
    insert_failed(conn, failed_ago=HOUR + 60, queue="emails")
    insert_failed(conn, failed_ago=10, queue="reports")
    result = pgqueue(database_url, "failed", "list", "--since", "1h", "--queue", "emails", "--json")
    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["id"] for d in documents] == inside
    assert documents[0]["exception_class"] == "builtins.ValueError"


def test_cli_list_prints_a_table_for_people(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    (job_id,) = insert_failed(conn, queue="emails", message="smtp [421] try later")
    result = pgqueue(database_url, "failed", "list", COLUMNS="160")
    assert result.returncode == 0, result.stderr
    assert str(job_id) in result.stdout
    assert "emails" in result.stdout
    assert "smtp [421] try later" in result.stdout


def test_cli_show_prints_payload_exception_and_full_traceback(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    trace = "Traceback (most recent call last):\n" + "".join(
        f'  File "app.py", line {n}, in f{n}\n' for n in range(40)
    )
    (job_id,) = insert_failed(conn, payload={"user_id": 7}, traceback=trace + "ValueError: boom")
    result = pgqueue(database_url, "failed", "show", str(job_id))
    assert result.returncode == 0, result.stderr
    assert f"failed job {job_id}" in result.stdout
    assert '"user_id": 7' in result.stdout
    assert "builtins.ValueError: boom" in result.stdout
    assert trace + "ValueError: boom" in result.stdout
    assert "host:1:abc" in result.stdout
    as_json = pgqueue(database_url, "failed", "show", str(job_id), "--json")
    assert json.loads(as_json.stdout)["traceback"] == trace + "ValueError: boom"


def test_cli_show_of_an_unknown_id_is_a_one_line_error(database_url: str) -> None:
    result = pgqueue(database_url, "failed", "show", "424242")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no failed job with id 424242: it never failed, or was already retried, "
        "forgotten or pruned (see `pgqueue failed list`)"
    ]


def test_cli_retry_ids_and_retry_all_with_filters(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    one, two = insert_failed(conn, count=2, queue="emails")
    reports = insert_failed(conn, count=3, queue="reports")
    result = pgqueue(database_url, "failed", "retry", str(one), str(two))
    assert (result.returncode, result.stdout) == (0, "retried 2 failed jobs\n"), result.stderr
    result = pgqueue(database_url, "failed", "retry", "--all", "--queue", "reports")
    assert (result.returncode, result.stdout) == (0, "retried 3 failed jobs\n"), result.stderr
    assert ids_in(conn, "jobs") == [one, two, *reports]


def test_cli_retry_of_an_unknown_id_retries_the_rest_and_names_it(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    (job_id,) = insert_failed(conn)
    result = pgqueue(database_url, "failed", "retry", str(job_id), "999999")
    assert result.returncode == 1
    assert result.stderr.startswith("error: retried 1 failed job; no failed job with id 999999")
    assert ids_in(conn, "jobs") == [job_id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give the ids of the jobs to retry, or --all"),
        (("--all", "7"), "give the ids of the jobs to retry, or --all"),
        (("7", "--queue", "emails"), "--queue and --type go with --all"),
    ],
)
def test_cli_retry_needs_ids_or_all(database_url: str, args: tuple[str, ...], message: str) -> None:
    result = pgqueue(database_url, "failed", "retry", *args)
    assert result.returncode == 2  # a usage error
    assert message in result.stderr


def test_cli_forget_and_flush(database_url: str, conn: psycopg.Connection[Any]) -> None:
    forgotten = insert_failed(conn, count=2)
    insert_failed(conn, count=3, failed_ago=7 * 86400 + 60)
    kept = insert_failed(conn, failed_ago=7 * 86400 - 60)
    result = pgqueue(database_url, "failed", "forget", *map(str, forgotten))
    assert (result.returncode, result.stdout) == (0, "forgot 2 failed jobs\n"), result.stderr
    result = pgqueue(database_url, "failed", "flush", "--older-than", "7d")
    assert (result.returncode, result.stdout) == (0, "flushed 3 failed jobs\n"), result.stderr
    assert ids_in(conn, "failed_jobs") == kept


def test_cli_refuses_a_bad_duration_clearly(database_url: str) -> None:
    result = pgqueue(database_url, "failed", "list", "--since", "yesterday")
    assert result.returncode == 2  # a usage error
    assert result.stderr.strip() == (
        "error: --since: 'yesterday' is not a duration: use seconds or a number with a unit "
        "s, m, h, d or w (e.g. 90, 30s, 15m, 1h, 7d)"
    )


def test_operations_doc_python_example_runs(
    database_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    section = doc.split("\n## Failed jobs\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks
    (job_id,) = insert_failed(conn, queue="emails", traceback="Traceback: the doc's example")
    script = tmp_path / "operations_example.py"
    script.write_text("\n\n".join(blocks))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback: the doc's example" in result.stdout
    assert ids_in(conn, "jobs") == [job_id]
