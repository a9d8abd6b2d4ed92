"""Unique jobs (SPEC section 9, docs/unique-jobs.md) on a real database: the unique index settles
races between transactions, replace debounces, bulk honours keys, and the worker's claim, retry
and failure keep one holder per key."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.failed import FailedJobs
from pgqueue.worker import Worker, WorkerOptions
from tests.integration.failed_rows import pgqueue

# What jobs saw while they ran, filled by handle() and read by the tests.
_seen: list[tuple[str, int | None, int | None]] = []


class SyncCustomer(Job):
    job_name = "unique.SyncCustomer"
    unique = ("customer_id",)

    customer_id: int
    note: str = ""

    def handle(self) -> None:
        pass


class SyncSupplier(Job):
    """The same fields as SyncCustomer: keys are scoped per job type, so they never meet."""

    job_name = "unique.SyncSupplier"
    unique = ("customer_id",)

    customer_id: int

    def handle(self) -> None:
        pass


class WholePayload(Job):
    job_name = "unique.WholePayload"
    unique = True

    a: int
    b: dict[str, int] = {}

    def handle(self) -> None:
        pass


class Plain(Job):
    job_name = "unique.Plain"

    n: int = 0

    def handle(self) -> None:
        pass


class ActiveReport(Job):
    job_name = "unique.ActiveReport"
    unique = ("day",)
    unique_while = "active"

    day: str

    def handle(self) -> None:
        pass


def _redispatches(name: str, unique_while: str, fails: bool) -> type[Job]:
    """A job that, while it runs, dispatches a duplicate of itself (due in an hour, so the worker
    does not run it) and records the id it got; with `fails`, its first attempt then fails."""

    class Redispatches(Job, abstract=True):
        customer_id: int
        url: str

        async def handle(self) -> None:
            settings = Settings(database_url=self.url)
            async with AsyncQueue(settings) as queue:
                twin = await queue.dispatch(
                    type(self)(customer_id=self.customer_id, url=self.url), delay=3600
                )
            _seen.append((name, self.job_id, twin))
            if fails and self.attempts == 1:
                raise RuntimeError("first attempt fails")

    return type(
        name,
        (Redispatches,),
        {
            "job_name": f"unique.{name}",
            "unique": ("customer_id",),
            "unique_while": unique_while,
            "max_tries": 1 if fails and unique_while == "active" else 2,
            "retry_after": 3600,
        },
    )


RedispatchQueued = _redispatches("RedispatchQueued", "queued", fails=False)
RedispatchActive = _redispatches("RedispatchActive", "active", fails=False)
RetriesQueued = _redispatches("RetriesQueued", "queued", fails=True)


class FailsQueuedNoTwin(Job):
    """Fails its first attempt without dispatching anything: its retry keeps the key."""

    job_name = "unique.FailsQueuedNoTwin"
    unique = ("customer_id",)
    retry_after = 3600

    customer_id: int

    def handle(self) -> None:
        raise RuntimeError("first attempt fails")


class FailsForGood(Job):
    job_name = "unique.FailsForGood"
    unique = ("customer_id",)
    max_tries = 1

    customer_id: int

    def handle(self) -> None:
        raise RuntimeError("always fails")


def _options(**overrides: Any) -> WorkerOptions:
    defaults: dict[str, Any] = {
        "sleep": 0.05,
        "stop_when_empty": True,
        "grace": 0,
        "blocking_in_threads": True,
    }
    return WorkerOptions(**{**defaults, **overrides})


@pytest.fixture
def queue(settings: Settings) -> Iterator[Queue]:
    with Queue(settings) as queue:
        yield queue


def _rows(conn: psycopg.Connection[Any], job_type: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, payload, unique_key IS NOT NULL, unique_while FROM pgqueue.jobs"
        " WHERE job_type = %s ORDER BY id",
        (job_type,),
    ).fetchall()


def _claim_by_hand(conn: psycopg.Connection[Any], job_id: int) -> None:
    """Mark a row as a worker's claim does (lease, claimed_at, a try spent)."""
    conn.execute(
        "UPDATE pgqueue.jobs SET lease_token = gen_random_uuid(), attempts = attempts + 1,"
        " lease_expires_at = now() + interval '1 minute', claimed_at = now() WHERE id = %s",
        (job_id,),
    )


# ---- dispatch ------------------------------------------------------------------------------


def test_a_duplicate_dispatch_returns_the_queued_jobs_id_and_adds_no_row(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    first = SyncCustomer(customer_id=7, note="first")
    first_id = queue.dispatch(first)
    duplicate = SyncCustomer(customer_id=7, note="second")
    assert queue.dispatch(duplicate) == first_id
    assert duplicate.job_id == first_id
    other = queue.dispatch(SyncCustomer(customer_id=8))
    assert other != first_id
    rows = _rows(conn, "unique.SyncCustomer")
    assert [(row[0], row[1]["note"]) for row in rows] == [(first_id, "first"), (other, "")]


def test_keys_are_scoped_per_job_type(queue: Queue) -> None:
    assert queue.dispatch(SyncCustomer(customer_id=1)) != queue.dispatch(
        SyncSupplier(customer_id=1)
    )


def test_unique_true_keys_on_the_whole_payload_whatever_the_dict_order(queue: Queue) -> None:
    first = queue.dispatch(WholePayload(a=1, b={"x": 1, "y": 2}))
    assert queue.dispatch(WholePayload(a=1, b={"y": 2, "x": 1})) == first
    assert queue.dispatch(WholePayload(a=1, b={"x": 1})) != first


def test_an_explicit_unique_key_works_on_any_class_and_replaces_the_derived_key(
    queue: Queue,
) -> None:
    first = queue.dispatch(Plain(n=1), unique_key="invoice-42")
    assert queue.dispatch(Plain(n=2), unique_key="invoice-42") == first
    assert queue.dispatch(Plain(n=1)) != first  # no key: an ordinary job
    customer = queue.dispatch(SyncCustomer(customer_id=5), unique_key="batch-1")
    assert queue.dispatch(SyncCustomer(customer_id=6), unique_key="batch-1") == customer
    assert queue.dispatch(SyncCustomer(customer_id=5)) != customer


def test_a_duplicate_leaves_the_callers_transaction_usable(queue: Queue, database_url: str) -> None:
    with psycopg.connect(database_url) as caller:
        with caller.transaction():
            first = queue.dispatch(SyncCustomer(customer_id=3), conn=caller)
            assert queue.dispatch(SyncCustomer(customer_id=3), conn=caller) == first
            assert caller.execute("SELECT 1").fetchone() == (1,)
        assert caller.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (1,)


@pytest.mark.parametrize("first_commits", [True, False], ids=["commit", "rollback"])
def test_a_concurrent_dispatch_waits_for_the_first_transaction(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any], first_commits: bool
) -> None:
    """The second dispatch blocks until the first transaction ends; it returns the first's id
    if that committed, else inserts its own job."""
    result: dict[str, Any] = {}
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        first_tx = first.transaction()
        first_tx.__enter__()
        first_id = queue.dispatch(SyncCustomer(customer_id=9, note="first"), conn=first)

        def dispatch_second() -> None:
            with second.transaction():
                result["id"] = queue.dispatch(SyncCustomer(customer_id=9, note="2nd"), conn=second)
                assert second.execute("SELECT 1").fetchone() == (1,)

        thread = threading.Thread(target=dispatch_second)
        thread.start()
        _wait_for_lock_wait(conn)
        assert thread.is_alive() and "id" not in result  # blocked on the first transaction
        if first_commits:
            first_tx.__exit__(None, None, None)
        else:
            first_tx.__exit__(RuntimeError, RuntimeError("roll back"), None)
        thread.join(timeout=10)
        assert not thread.is_alive()
    rows = _rows(conn, "unique.SyncCustomer")
    if first_commits:
        assert result["id"] == first_id
        assert [(row[0], row[1]["note"]) for row in rows] == [(first_id, "first")]
    else:
        assert result["id"] != first_id
        assert [(row[0], row[1]["note"]) for row in rows] == [(result["id"], "2nd")]


def _wait_for_lock_wait(conn: psycopg.Connection[Any]) -> None:
    """Until some backend waits on another transaction (the second dispatch on the first)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ).fetchone()
        if waiting and waiting[0]:
            return
        time.sleep(0.02)
    raise AssertionError("the second dispatch never waited for the first")


# ---- replace (debounce) --------------------------------------------------------------------


def test_replace_gives_the_queued_job_the_new_payload_and_run_at(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    first = queue.dispatch(SyncCustomer(customer_id=4, note="old"), delay=3600)
    later = datetime.now(UTC) + timedelta(days=2)
    replaced = SyncCustomer(customer_id=4, note="new")
    assert queue.dispatch(replaced, run_at=later, on_conflict="replace") == first
    assert replaced.job_id == first
    row = conn.execute(
        "SELECT payload, run_at FROM pgqueue.jobs WHERE job_type = 'unique.SyncCustomer'"
    ).fetchall()
    assert row == [({"customer_id": 4, "note": "new"}, later)]
    # skip (the default) leaves it as it is
    assert queue.dispatch(SyncCustomer(customer_id=4, note="skipped"), delay=0) == first
    assert _rows(conn, "unique.SyncCustomer")[0][1]["note"] == "new"


def test_replace_never_touches_a_running_active_job(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    running = queue.dispatch(ActiveReport(day="mon"))
    _claim_by_hand(conn, running)
    assert queue.dispatch(ActiveReport(day="mon"), delay=60, on_conflict="replace") == running
    assert conn.execute(
        "SELECT count(*), min(run_at) <= now() FROM pgqueue.jobs"
        " WHERE job_type = 'unique.ActiveReport'"
    ).fetchone() == (1, True)


def test_a_claimed_queued_job_lets_the_key_go_and_replace_queues_a_new_one(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    running = queue.dispatch(SyncCustomer(customer_id=2, note="running"))
    _claim_by_hand(conn, running)
    fresh = queue.dispatch(SyncCustomer(customer_id=2, note="fresh"), on_conflict="replace")
    assert fresh != running
    again = SyncCustomer(customer_id=2, note="debounced")
    assert queue.dispatch(again, on_conflict="replace") == fresh
    notes = [row[1]["note"] for row in _rows(conn, "unique.SyncCustomer")]
    assert notes == ["running", "debounced"]


# ---- bulk ----------------------------------------------------------------------------------


def test_bulk_honours_keys_in_the_batch_and_in_the_table_in_one_round_trip(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    existing = queue.dispatch(SyncCustomer(customer_id=1, note="existing"))
    batch = [
        SyncCustomer(customer_id=2, note="a"),
        Plain(n=1),
        SyncCustomer(customer_id=1, note="dup of existing"),
        SyncCustomer(customer_id=2, note="dup in batch"),
        Plain(n=1),
        SyncCustomer(customer_id=3, note="c"),
    ]
    statements: list[bytes] = []
    with psycopg.connect(database_url) as caller:
        real_execute = caller.execute

        def counting(query: Any, params: Any = None, **kwargs: Any) -> Any:
            statements.append(query)
            return real_execute(query, params, **kwargs)

        caller.execute = counting  # type: ignore[method-assign]
        with caller.transaction():
            ids = queue.bulk(batch, conn=caller)
    assert len(statements) == 1
    assert ids[2] == existing and ids[3] == ids[0]
    assert len(set(ids)) == 5 and ids[1] != ids[4]
    assert [job.job_id for job in batch] == ids
    fresh = list(dict.fromkeys(i for i in ids if i != existing))
    assert fresh == sorted(fresh)  # new ids in batch order, as COPY gives them
    notes = [row[1].get("note") for row in _rows(conn, "unique.SyncCustomer")]
    assert notes == ["existing", "a", "c"]
    assert len(_rows(conn, "unique.Plain")) == 2


def test_bulk_without_unique_jobs_keeps_the_copy_path(queue: Queue) -> None:
    from pgqueue.queue import _BulkPlan, _UniqueBulkPlan

    assert isinstance(queue._bulk([Plain(n=1), Plain(n=2)]), _BulkPlan)
    assert isinstance(queue._bulk([Plain(n=1), SyncCustomer(customer_id=1)]), _UniqueBulkPlan)


async def test_async_queue_dispatch_and_bulk_honour_keys(settings: Settings) -> None:
    async with AsyncQueue(settings) as aqueue:
        first = await aqueue.dispatch(SyncCustomer(customer_id=11))
        assert await aqueue.dispatch(SyncCustomer(customer_id=11)) == first
        ids = await aqueue.bulk([SyncCustomer(customer_id=11), SyncCustomer(customer_id=12)])
        assert ids[0] == first and ids[1] != first


def test_sqlalchemy_sessions_dispatch_and_bulk_unique_jobs(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(database_url))
    try:
        with Session(engine) as session, session.begin():
            first = queue.dispatch(SyncCustomer(customer_id=21), conn=session)
            assert queue.dispatch(SyncCustomer(customer_id=21), conn=session) == first
            ids = queue.bulk([SyncCustomer(customer_id=21), SyncCustomer(customer_id=22)], session)
            assert ids[0] == first
    finally:
        engine.dispose()
    assert len(_rows(conn, "unique.SyncCustomer")) == 2


# ---- with a worker -------------------------------------------------------------------------


async def test_a_queued_key_is_released_when_the_job_starts(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _seen.clear()
    async with AsyncQueue(settings) as aqueue:
        first = await aqueue.dispatch(RedispatchQueued(customer_id=1, url=database_url))
    await Worker(settings, _options()).run()
    ((name, job_id, twin),) = _seen
    assert (name, job_id) == ("RedispatchQueued", first) and twin not in (None, first)
    assert [row[0] for row in _rows(conn, "unique.RedispatchQueued")] == [twin]


async def test_an_active_key_is_held_until_the_job_ends(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _seen.clear()
    async with AsyncQueue(settings) as aqueue:
        first = await aqueue.dispatch(RedispatchActive(customer_id=1, url=database_url))
    summary = await Worker(settings, _options()).run()
    assert _seen == [("RedispatchActive", first, first)]
    assert summary.completed == 1
    assert _rows(conn, "unique.RedispatchActive") == []
    async with AsyncQueue(settings) as aqueue:  # ended: the key is free again
        assert await aqueue.dispatch(RedispatchActive(customer_id=1, url="x")) != first


async def test_a_retry_keeps_its_queued_key_when_no_other_job_took_it(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as aqueue:
        first = await aqueue.dispatch(FailsQueuedNoTwin(customer_id=1))
        await Worker(settings, _options()).run()  # attempt 1 fails; the retry waits an hour
        assert conn.execute(
            "SELECT attempts, lease_token IS NULL, unique_key IS NOT NULL FROM pgqueue.jobs"
        ).fetchall() == [(1, True, True)]
        # A job waiting for its retry is still queued: a duplicate gets its id.
        assert await aqueue.dispatch(FailsQueuedNoTwin(customer_id=1)) == first
        assert len(_rows(conn, "unique.FailsQueuedNoTwin")) == 1


async def test_a_retry_whose_key_another_job_took_goes_back_without_it(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    """Attempt 1 lets the key go (unique_while="queued"), a twin takes it, attempt 1 fails: the
    retry waits without the key, so one queued job holds it and duplicates get the twin's id."""
    _seen.clear()
    async with AsyncQueue(settings) as aqueue:
        first = await aqueue.dispatch(RetriesQueued(customer_id=1, url=database_url))
        await Worker(settings, _options()).run()
        ((name, job_id, twin),) = _seen
        assert (name, job_id) == ("RetriesQueued", first) and twin not in (None, first)
        rows = conn.execute(
            "SELECT id, attempts, lease_token IS NULL, unique_key IS NOT NULL FROM pgqueue.jobs"
            " ORDER BY id"
        ).fetchall()
        assert rows == [(first, 1, True, False), (twin, 0, True, True)]
        assert await aqueue.dispatch(RetriesQueued(customer_id=1, url=database_url)) == twin


# ---- failed jobs ---------------------------------------------------------------------------


async def test_failed_jobs_keep_the_key_and_a_retry_waits_while_another_job_holds_it(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    async with AsyncQueue(settings) as aqueue:
        failed_id = await aqueue.dispatch(FailsForGood(customer_id=1))
        await Worker(settings, _options()).run()
        assert conn.execute(
            "SELECT id, unique_key IS NOT NULL, unique_while FROM pgqueue.failed_jobs"
        ).fetchall() == [(failed_id, True, "queued")]
        holder = await aqueue.dispatch(FailsForGood(customer_id=1))
    failed = FailedJobs(settings)
    retried = failed.retry([failed_id])
    assert retried == [] and retried.held == {failed_id: holder}
    assert conn.execute("SELECT id FROM pgqueue.failed_jobs").fetchall() == [(failed_id,)]
    assert failed.retry_all() == 0
    result = pgqueue(database_url, "failed", "retry", str(failed_id))
    assert result.returncode == 1
    assert f"job {failed_id} not retried: its unique key is held by job {holder}" in result.stderr
    conn.execute("DELETE FROM pgqueue.jobs WHERE id = %s", (holder,))  # the holder ended
    retried = failed.retry([failed_id])
    assert retried == [failed_id] and retried.held == {}
    assert conn.execute("SELECT id, unique_key IS NOT NULL FROM pgqueue.jobs").fetchall() == [
        (failed_id, True)
    ]
    async with AsyncQueue(settings) as aqueue:  # the retried job holds its key again
        assert await aqueue.dispatch(FailsForGood(customer_id=1)) == failed_id


# ---- least-privilege roles -----------------------------------------------------------------


def test_the_dispatch_role_dispatches_unique_jobs_but_cannot_replace(
    queue: Queue, conn: psycopg.Connection[Any], database_url: str
) -> None:
    import uuid

    from psycopg import sql

    from pgqueue.errors import DatabaseError
    from pgqueue.roles import roles_sql

    suffix = uuid.uuid4().hex[:10]
    worker, dispatch = f"pgq_worker_{suffix}", f"pgq_dispatch_{suffix}"
    conn.execute(roles_sql("pgqueue", worker, dispatch).encode())
    try:
        with psycopg.connect(database_url, autocommit=True) as as_app:
            as_app.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(dispatch)))
            first = queue.dispatch(SyncCustomer(customer_id=1), conn=as_app)
            assert queue.dispatch(SyncCustomer(customer_id=1), conn=as_app) == first
            ids = queue.bulk([SyncCustomer(customer_id=1), Plain()], conn=as_app)
            assert ids[0] == first
            with pytest.raises(DatabaseError, match="permission denied"):
                queue.dispatch(SyncCustomer(customer_id=1), conn=as_app, on_conflict="replace")
    finally:
        for role in (worker, dispatch):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("statement", ["release_jobs", "rescue_expired_leases"])
def test_a_released_or_rescued_job_whose_queued_key_was_taken_comes_back_without_it(
    queue: Queue, conn: psycopg.Connection[Any], statement: str
) -> None:
    from pgqueue.sql import queries_for

    held = queue.dispatch(SyncCustomer(customer_id=1, note="held"))
    taken = queue.dispatch(SyncCustomer(customer_id=2, note="taken"))
    active = queue.dispatch(ActiveReport(day="tue"))
    token = "00000000-0000-0000-0000-000000000001"
    conn.execute(
        "UPDATE pgqueue.jobs SET lease_token = %s, attempts = 1, claimed_at = now(),"
        " lease_expires_at = now() - interval '1 second'",
        (token,),
    )
    newcomer = queue.dispatch(SyncCustomer(customer_id=2, note="newcomer"))
    params: dict[str, Any] = {"channel": "pgqueue", "limit": 100}
    if statement == "release_jobs":
        params = {"channel": "pgqueue", "tokens": [token], "ids": [f"{{{held},{taken},{active}}}"]}
    conn.execute(queries_for("pgqueue")[statement], params)
    keys = dict(conn.execute("SELECT id, unique_key IS NOT NULL FROM pgqueue.jobs").fetchall())
    assert keys == {held: True, taken: False, active: True, newcomer: True}
    assert queue.dispatch(SyncCustomer(customer_id=2)) == newcomer
    assert queue.dispatch(SyncCustomer(customer_id=1)) == held
    assert queue.dispatch(ActiveReport(day="tue")) == active
