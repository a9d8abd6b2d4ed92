"""Pausing and resuming a queue (SPEC section 10): enforced inside the claim, within one round trip,
across worker restarts, other queues flowing; `pgqueue queues`, stats and doctor show it."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any, ClassVar

import psycopg
import pytest

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.doctor import Thresholds, Verdict, diagnose
from pgqueue.errors import InvalidQueueNameError
from pgqueue.sql import queries_for
from pgqueue.stats import read_stats
from pgqueue.worker import Worker, WorkerOptions
from tests.cli_runner import run_pgqueue


class NotesItsClaim(Job):
    """Records its queue and the claimed_at of its own row, so a test sees every claim made."""

    job_name = "pause.NotesItsClaim"
    queue = "emails"
    seen: ClassVar[list[tuple[str, datetime]]] = []

    url: str
    seconds: float = 0.02

    async def handle(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT queue, claimed_at FROM pgqueue.jobs WHERE id = %s", (self.job_id,)
            )
            row = await cursor.fetchone()
        assert row is not None
        NotesItsClaim.seen.append((row[0], row[1]))
        await asyncio.sleep(self.seconds)


def _options(**overrides: Any) -> WorkerOptions:
    defaults: dict[str, Any] = {
        "queues": ("emails", "other"),
        "concurrency": 2,
        "sleep": 0.05,
        "stop_when_empty": True,
        "grace": 5,
        "blocking_in_threads": True,
    }
    return WorkerOptions(**{**defaults, **overrides})


def _waiting(conn: psycopg.Connection[Any], queue: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pgqueue.jobs WHERE queue = %s AND lease_token IS NULL", (queue,)
    ).fetchone()
    assert row is not None
    return int(row[0])


async def _until(predicate: Any, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_the_claim_checks_the_pause_once_per_statement_not_per_row(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("SET plan_cache_mode = force_custom_plan")
    query = queries_for("pgqueue")["claim_jobs"]
    params = {
        "synchronous_commit": "off",
        "done_tokens": [],
        "done_ids": [],
        "queue": "emails",
        "limit": 10,
        "token": "00000000-0000-0000-0000-000000000000",
        "lease_seconds": 30,
        "worker_id": "explain",
    }
    lines = [row[0] for row in conn.execute(b"EXPLAIN (COSTS OFF) " + query, params)]
    plan = "\n".join(lines)
    # An uncorrelated sub-select: an InitPlan, run once, whose result ($n) is a one-time filter.
    pause = next(i for i, line in enumerate(lines) if "paused_at IS NOT NULL" in line)
    initplan = next(line for line in reversed(lines[:pause]) if "InitPlan" in line)
    result = re.search(r"returns (\$\d+)", initplan)
    assert result is not None, plan
    one_time = [line for line in lines if "One-Time Filter" in line]
    assert any(f"NOT {result.group(1)})" in line for line in one_time), plan


async def test_a_pause_stops_claims_from_its_queue_within_one_round_trip_while_others_flow(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    NotesItsClaim.seen = []
    async with AsyncQueue(settings) as queue:
        await queue.bulk([NotesItsClaim(url=database_url) for _ in range(200)])
        worker = Worker(settings, _options(stop_when_empty=False))
        running = asyncio.create_task(worker.run())
        try:
            await _until(lambda: len(NotesItsClaim.seen) >= 5)
            assert await queue.pause("emails", reason="provider outage") is True
            # Any claim whose snapshot could miss the pause started before this moment.
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            paused_after = row[0]
            for _ in range(5):
                await queue.dispatch(NotesItsClaim(url=database_url), queue="other")
            await _until(lambda: sum(q == "other" for q, _ in NotesItsClaim.seen) == 5)
            await asyncio.sleep(0.5)
            waiting = _waiting(conn, "emails")
        finally:
            worker.request_stop()
            summary = await asyncio.wait_for(running, 20)
    emails = [claimed_at for q, claimed_at in NotesItsClaim.seen if q == "emails"]
    assert emails and all(claimed_at <= paused_after for claimed_at in emails)
    assert waiting == 200 - len(emails) > 100  # the rest never left the queue
    assert summary.completed == len(NotesItsClaim.seen)  # jobs already running finished
    assert _waiting(conn, "other") == 0


async def test_a_pause_holds_across_worker_restarts_until_resume(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    NotesItsClaim.seen = []
    async with AsyncQueue(settings) as queue:
        # A queue with no jobs yet can be paused: the row is created.
        assert await queue.pause("emails") is True
        assert await queue.pause("emails") is False
        await queue.bulk([NotesItsClaim(url=database_url) for _ in range(3)])
        await queue.dispatch(NotesItsClaim(url=database_url), queue="other")
        for _ in range(2):  # a worker, then its replacement
            summary = await Worker(settings, _options()).run()
            assert summary.completed in (0, 1)
            assert _waiting(conn, "emails") == 3
        assert [q for q, _ in NotesItsClaim.seen] == ["other"]
        assert await queue.resume("emails") is True
        assert await queue.resume("emails") is False
        summary = await Worker(settings, _options()).run()
    assert summary.completed == 3
    assert _waiting(conn, "emails") == 0


async def test_resume_wakes_an_idle_worker_at_once(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    NotesItsClaim.seen = []
    async with AsyncQueue(settings) as queue:
        await queue.pause("emails")
        await queue.dispatch(NotesItsClaim(url=database_url))
        # Polls only once a minute: only the resume's NOTIFY can start the job soon.
        worker = Worker(settings, _options(stop_when_empty=False, sleep=60))
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(0.5)
            assert NotesItsClaim.seen == []
            await queue.resume("emails")
            await _until(lambda: len(NotesItsClaim.seen) == 1, timeout=5)
        finally:
            worker.request_stop()
            await asyncio.wait_for(running, 20)


def test_pause_and_resume_validate_the_queue_name_and_write_in_the_callers_transaction(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        with pytest.raises(InvalidQueueNameError):
            queue.pause("")
        with pytest.raises(InvalidQueueNameError):
            queue.resume("bad\nname")
        with psycopg.connect(database_url) as own:
            assert queue.pause("emails", conn=own, reason="deploy") is True
            own.rollback()
        assert conn.execute("SELECT count(*) FROM pgqueue.queues").fetchone() == (0,)
        with psycopg.connect(database_url) as own:
            queue.pause("emails", conn=own, reason="deploy")
        row = conn.execute("SELECT paused_reason FROM pgqueue.queues").fetchone()
        assert row == ("deploy",)
        # Pausing again keeps the first time and takes a new reason when one is given.
        first = conn.execute("SELECT paused_at FROM pgqueue.queues").fetchone()
        assert queue.pause("emails") is False
        assert queue.pause("emails", reason="still down") is False
        again = conn.execute("SELECT paused_at, paused_reason FROM pgqueue.queues").fetchone()
        assert again is not None and first is not None
        assert again == (first[0], "still down")


def test_pgqueue_queues_lists_paused_and_running_queues_with_reason_and_since(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    env = {"PGQUEUE_DATABASE_URL": database_url}
    with Queue(settings) as queue:
        queue.bulk([NotesItsClaim(url="unused") for _ in range(3)])
        queue.dispatch(NotesItsClaim(url="unused"), queue="other")
    paused = run_pgqueue("queues", "pause", "emails", "--reason", "provider outage", env=env)
    assert paused.exit_code == 0, paused.stderr
    assert "paused queue 'emails'" in paused.stdout
    assert run_pgqueue("queues", "pause", "fresh", env=env).exit_code == 0
    again = run_pgqueue("queues", "pause", "emails", env=env)
    assert "already paused" in again.stdout

    listing = run_pgqueue("queues", env=env)
    assert listing.exit_code == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == [
        "queue", "state", "since", "ready", "held", "running", "failed", "limits", "reason"
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"emails", "fresh", "other"}
    assert rows["emails"].split()[1] == "paused"
    assert rows["emails"].endswith("provider outage")
    assert "s ago)" in rows["emails"]
    assert rows["other"].split()[1:3] == ["running", "-"]
    assert run_pgqueue("queues", "list", env=env).stdout == listing.stdout

    documents = run_pgqueue("queues", "--json", env=env)
    assert documents.exit_code == 0, documents.stderr
    by_name = {doc["queue"]: doc for doc in map(json.loads, documents.stdout.splitlines())}
    assert by_name["emails"]["paused"] is True
    assert by_name["emails"]["paused_reason"] == "provider outage"
    assert datetime.fromisoformat(by_name["emails"]["paused_at"]).tzinfo is not None
    assert (by_name["emails"]["ready"], by_name["fresh"]["ready"]) == (3, 0)
    assert by_name["other"]["paused"] is False and by_name["other"]["paused_at"] is None

    resumed = run_pgqueue("queues", "resume", "emails", env=env)
    assert resumed.exit_code == 0 and "resumed queue 'emails'" in resumed.stdout
    not_paused = run_pgqueue("queues", "resume", "other", env=env)
    assert not_paused.exit_code == 0 and "was not paused" in not_paused.stdout
    documents = run_pgqueue("queues", "--json", env=env)
    by_name = {doc["queue"]: doc for doc in map(json.loads, documents.stdout.splitlines())}
    assert (by_name["emails"]["paused"], by_name["emails"]["paused_reason"]) == (False, None)


def test_pgqueue_queues_refuses_a_bad_queue_name(database_url: str) -> None:
    env = {"PGQUEUE_DATABASE_URL": database_url}
    for args in (("queues", "pause", ""), ("queues", "resume", "a" * 64)):
        run = run_pgqueue(*args, env=env)
        assert run.exit_code == 2
        assert "queue" in run.stderr.lower()


def test_stats_show_a_paused_queue(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with Queue(settings) as queue:
        queue.pause("emails", reason="deploy")
    [emails] = read_stats(conn).queues
    assert (emails.queue, emails.paused, emails.paused_reason, emails.ready) == (
        "emails",
        True,
        "deploy",
        0,
    )
    shown = run_pgqueue("stats", env={"PGQUEUE_DATABASE_URL": database_url})
    assert shown.exit_code == 0, shown.stderr
    assert "paused (no new claims): emails" in shown.stdout


def test_doctor_warns_about_a_queue_paused_for_long(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    def paused_check() -> Any:
        [check] = [c for c in diagnose(conn) if c.name == "paused queues"]
        return check

    assert (paused_check().verdict, paused_check().detail) == (Verdict.OK, "none")
    with Queue(settings) as queue:
        queue.pause("emails", reason="provider outage")
    fresh = paused_check()
    assert fresh.verdict is Verdict.OK and "'emails'" in fresh.detail
    conn.execute("UPDATE pgqueue.queues SET paused_at = now() - interval '61 minutes'")
    old = paused_check()
    assert old.verdict is Verdict.WARN
    assert "'emails' for 1h 01m" in old.detail and "provider outage" in old.detail
    assert "pgqueue queues resume" in old.detail
    # The threshold is doctor's, and a caller may pass another.
    [strict] = [
        c for c in diagnose(conn, thresholds=Thresholds(paused_warn_seconds=7200))
        if c.name == "paused queues"
    ]  # fmt: skip
    assert strict.verdict is Verdict.OK
