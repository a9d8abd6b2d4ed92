"""bulk() writes COPY text itself and reserves its ids in one statement: what that must keep."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.sql import queries_for


class Note(Job):
    job_name = "tests.integration.bulk.Note"

    text: Any = None

    def handle(self) -> None:
        return None


class Odd(Job):
    # COPY's text format gives backslash a meaning (`\N` is NULL, `\t` a tab): names may hold one.
    queue = "back\\slash \\N queue"
    job_name = "tests.integration.bulk.Odd\\N"
    priority = -7
    max_tries = 9

    text: str = ""

    def handle(self) -> None:
        return None


# Every character COPY's text format treats specially, inside JSON strings and in a key.
AWKWARD = [
    "C:\\Users\\x",
    "\\N",
    "\\.",
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    'quote " and \\" both',
    "\u2028 é ☃ 🐍",
    "",
]


@pytest.fixture
def queue(settings: Settings) -> Any:
    with Queue(settings) as q:
        yield q


def _stored(conn: psycopg.Connection[Any], ids: list[int]) -> list[tuple[Any, ...]]:
    rows = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT id, queue, job_type, payload, priority, max_tries FROM pgqueue.jobs"
        )
    }
    return [rows[job_id] for job_id in ids]


def test_bulk_stores_awkward_text_as_dispatch_does(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    texts: list[Any] = [*AWKWARD, *({text: [text]} for text in AWKWARD), *AWKWARD]
    jobs: list[Job] = [Note(text=text) for text in texts[: -len(AWKWARD)]]
    jobs += [Odd(text=text) for text in AWKWARD]
    ids = queue.bulk(jobs)
    one_by_one = [queue.dispatch(job.model_copy()) for job in jobs]
    stored = _stored(conn, ids)
    assert stored == _stored(conn, one_by_one)
    assert [row[2]["text"] for row in stored] == texts
    assert stored[-1] == (Odd.queue, Odd.job_name, {"text": ""}, -7, 9)


def test_bulk_ids_ascend_in_the_order_of_the_jobs(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    jobs = [Note(text=i) for i in range(2_500)]  # three COPY pieces
    ids = queue.bulk(jobs)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert [row[2]["text"] for row in _stored(conn, ids)] == list(range(2_500))


def test_bulk_writes_in_the_callers_client_encoding(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(database_url) as caller:
        caller.execute("SET client_encoding TO 'LATIN1'")
        ids = queue.bulk([Note(text="café à la crème")], conn=caller)
        caller.commit()
    assert _stored(conn, ids)[0][2] == {"text": "café à la crème"}


def test_bulk_through_a_connection_with_another_row_factory(
    queue: Queue, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(database_url, row_factory=dict_row) as caller:
        ids = queue.bulk([Note(text=1), Note(text=2)], conn=caller)
        caller.commit()
    assert [row[2]["text"] for row in _stored(conn, ids)] == [1, 2]


async def test_async_bulk_stores_awkward_text_in_the_callers_transaction(
    settings: Settings, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    jobs: list[Job] = [Note(text=text) for text in AWKWARD]
    jobs += [Odd(text=text) for text in AWKWARD]
    async with (
        AsyncQueue(settings) as queue,
        await psycopg.AsyncConnection.connect(database_url) as caller,
    ):
        ids = await queue.bulk(jobs, conn=caller)
        assert caller.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        await caller.commit()
    assert [row[2]["text"] for row in _stored(conn, ids)] == AWKWARD * 2
    assert [job.job_id for job in jobs] == ids


def test_reserving_ids_looks_the_sequence_up_once(conn: psycopg.Connection[Any]) -> None:
    query = queries_for("pgqueue")["reserve_job_ids"]
    plan = "\n".join(
        row[0] for row in conn.execute(b"EXPLAIN (VERBOSE, COSTS OFF) " + query, {"count": 1000})
    )
    # The lookup runs in the CTE's one-row Result; nextval, run per id, only reads its output.
    assert "nextval(sequence.name)" in plan
    assert plan.count("pg_get_serial_sequence") == 1
    assert "nextval((pg_get_serial_sequence" not in plan
