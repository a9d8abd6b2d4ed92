"""Dispatch inside the caller's transaction, on its own, and in bulk, against real PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.errors import PayloadTooLargeError, SecretInPayloadError


class SendWelcomeEmail(Job):
    queue = "emails"
    job_name = "tests.integration.SendWelcomeEmail"

    user_id: int

    def handle(self) -> None:
        return None


class Ping(Job):
    job_name = "tests.integration.Ping"
    priority = 5

    note: Any = None

    def handle(self) -> None:
        pass


def _job_ids(conn: psycopg.Connection[Any]) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM pgqueue.jobs ORDER BY id")]


@pytest.fixture
def queue(settings: Settings) -> Any:
    with Queue(settings) as q:
        yield q


def test_dispatch_in_a_committed_transaction_creates_the_job(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(database_url) as caller, caller.transaction():
        job_id = queue.dispatch(SendWelcomeEmail(user_id=42), conn=caller)
    row = conn.execute(
        "SELECT queue, job_type, payload, attempts, max_tries, lease_token FROM pgqueue.jobs "
        "WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == ("emails", "tests.integration.SendWelcomeEmail", {"user_id": 42}, 0, 3, None)


def test_dispatch_in_a_rolled_back_transaction_leaves_no_job(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(database_url) as caller:
        with caller.transaction():
            caller.execute("CREATE TEMP TABLE users (id int)")
            queue.dispatch(SendWelcomeEmail(user_id=1), conn=caller)
            caller.execute("INSERT INTO users VALUES (1)")
            raise_rollback(caller)
        assert caller.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (0,)
    assert _job_ids(conn) == []


def raise_rollback(caller: psycopg.Connection[Any]) -> None:
    raise psycopg.Rollback()


def test_dispatch_never_commits_the_handed_connection(queue: Queue, database_url: str) -> None:
    with psycopg.connect(database_url) as caller:
        queue.dispatch(SendWelcomeEmail(user_id=3), conn=caller)
        assert caller.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        caller.rollback()
        assert caller.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (0,)
        assert not caller.closed


def test_dispatch_without_a_connection_commits_at_once(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    job = SendWelcomeEmail(user_id=7)
    job_id = queue.dispatch(job)
    assert job.job_id == job_id
    assert _job_ids(conn) == [job_id]


def test_refused_dispatch_leaves_the_callers_transaction_usable(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(database_url) as caller, caller.transaction():
        with pytest.raises(PayloadTooLargeError):
            queue.dispatch(Ping(note="x" * 70_000), conn=caller)
        with pytest.raises(SecretInPayloadError):
            queue.dispatch(Ping(note=SecretStr("hunter2")), conn=caller)
        queue.dispatch(Ping(note="fine"), conn=caller)
    assert len(_job_ids(conn)) == 1


def test_delay_schedules_in_database_time(queue: Queue, conn: psycopg.Connection[Any]) -> None:
    job_id = queue.dispatch(Ping(), delay=300)
    offset = conn.execute(
        "SELECT extract(epoch FROM run_at - enqueued_at) FROM pgqueue.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert offset is not None and float(offset[0]) == pytest.approx(300, abs=0.01)


def test_run_at_and_priority_override_are_stored(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    job_id = queue.dispatch(Ping(), run_at=when, priority=-3)
    row = conn.execute(
        "SELECT run_at, priority FROM pgqueue.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == (when, -3)


def test_class_priority_is_the_default(queue: Queue, conn: psycopg.Connection[Any]) -> None:
    job_id = queue.dispatch(Ping())
    assert conn.execute(
        "SELECT priority FROM pgqueue.jobs WHERE id = %s", (job_id,)
    ).fetchone() == (5,)


def test_size_counts_waiting_jobs_of_one_queue(queue: Queue, conn: psycopg.Connection[Any]) -> None:
    queue.bulk([SendWelcomeEmail(user_id=i) for i in range(3)])
    queue.dispatch(SendWelcomeEmail(user_id=9), delay=3600)
    running = queue.dispatch(SendWelcomeEmail(user_id=10))
    queue.dispatch(Ping())
    conn.execute(
        "UPDATE pgqueue.jobs SET lease_token = gen_random_uuid(), "
        "lease_expires_at = now() + interval '1 minute' WHERE id = %s",
        (running,),
    )
    assert queue.size("emails") == 4
    assert queue.size("default") == 1
    assert queue.size("nothing-here") == 0


def test_bulk_inserts_ten_thousand_jobs_in_order(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    jobs = [SendWelcomeEmail(user_id=i) for i in range(10_000)]
    started = time.perf_counter()
    ids = queue.bulk(jobs)
    elapsed = time.perf_counter() - started
    print(f"bulk of 10,000 jobs took {elapsed * 1000:.0f} ms")
    assert len(ids) == 10_000
    stored = dict(conn.execute("SELECT id, (payload->>'user_id')::int FROM pgqueue.jobs"))
    assert [stored[job_id] for job_id in ids] == list(range(10_000))
    assert [job.job_id for job in jobs] == ids


def test_bulk_is_all_or_nothing_when_one_job_is_refused(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    jobs = [Ping(note=i) for i in range(100)]
    jobs[57] = Ping(note=float("nan"))
    with pytest.raises(Exception, match="item 57"):
        queue.bulk(jobs)
    assert _job_ids(conn) == []


def test_bulk_in_a_rolled_back_transaction_leaves_no_job(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(database_url) as caller:
        queue.bulk([Ping(note=i) for i in range(500)], conn=caller)
        caller.rollback()
    assert _job_ids(conn) == []


def test_dispatch_wakes_listeners_only_when_the_transaction_commits(
    queue: Queue, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN pgqueue")
        with psycopg.connect(database_url) as caller:
            queue.dispatch(SendWelcomeEmail(user_id=1), conn=caller)
            caller.rollback()
            assert list(listener.notifies(timeout=0.3)) == []
            queue.bulk([SendWelcomeEmail(user_id=2), Ping()], conn=caller)
            queue.dispatch(Ping(), conn=caller, delay=60)
            assert list(listener.notifies(timeout=0.2)) == []
            caller.commit()
        received = sorted(n.payload for n in listener.notifies(timeout=1, stop_after=2))
        assert received == ["default", "emails"]


def test_delayed_dispatch_wakes_nobody(queue: Queue, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN pgqueue")
        queue.dispatch(Ping(), delay=60)
        assert list(listener.notifies(timeout=0.3)) == []


def test_missing_schema_is_a_clear_error(empty_database_url: str) -> None:
    from pgqueue.errors import DatabaseError

    with (
        Queue(Settings(database_url=empty_database_url)) as queue,
        pytest.raises(DatabaseError, match="pgqueue migrate"),
    ):
        queue.dispatch(Ping())


async def test_async_dispatch_through_psycopg_async_connection(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as queue:
        async with await psycopg.AsyncConnection.connect(database_url) as caller:
            async with caller.transaction():
                committed = await queue.dispatch(Ping(note="kept"), conn=caller)
            await queue.dispatch(Ping(note="dropped"), conn=caller)
            await caller.rollback()
        assert _job_ids(conn) == [committed]
        own = await queue.dispatch(Ping())
        ids = await queue.bulk([Ping(note=i) for i in range(10)])
        assert await queue.size() == 12
        assert _job_ids(conn) == [committed, own, *ids]


def test_sync_queue_refuses_an_async_connection(queue: Queue, database_url: str) -> None:
    from pgqueue.errors import UnsupportedConnectionError

    async def check() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as caller:
            with pytest.raises(UnsupportedConnectionError, match="AsyncQueue"):
                queue.dispatch(Ping(), conn=caller)

    import asyncio

    asyncio.run(check())


def test_run_at_in_the_past_is_ready_now(queue: Queue, conn: psycopg.Connection[Any]) -> None:
    queue.dispatch(Ping(), run_at=datetime.now(UTC) - timedelta(hours=1))
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs WHERE run_at <= now()").fetchone() == (
        1,
    )
