"""Every invalid value is refused before any SQL, against real PostgreSQL, sync and async.

Each case is dispatched (and, where the value lives in the job rather than in `dispatch()`'s
arguments, bulk-dispatched behind a valid job) inside the caller's transaction, after a business
INSERT. The test checks the DispatchError subclass, that no job was written, and that the caller's
transaction is still usable: a second INSERT after the refusal and the commit both succeed, which
they would not had a failed statement aborted the transaction. The values just inside each limit
are checked to be stored exactly and to load back as a worker loads them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.errors import (
    DispatchError,
    InvalidJobNameError,
    InvalidJobSettingError,
    InvalidPriorityError,
    InvalidQueueNameError,
    InvalidScheduleError,
    PayloadTooDeepError,
    PayloadTooLargeError,
    UnserializablePayloadError,
)
from pgqueue.job import INT4_MAX, INT4_MIN, MAX_DURATION_SECONDS, MAX_PAYLOAD_INT_DIGITS
from pgqueue.settings import DEFAULT_SCHEMA


class Anything(Job):
    job_name = "tests.integration.refusals.Anything"
    value: Any = None

    def handle(self) -> None:
        pass


class Blob(Job):
    job_name = "tests.integration.refusals.Blob"
    data: bytes = b""

    def handle(self) -> None:
        pass


class Count(Job):
    job_name = "tests.integration.refusals.Count"
    number: int = 0

    def handle(self) -> None:
        pass


class Reassigned(Job):
    """Its class attributes are reassigned after definition by the cases that need it."""

    job_name = "tests.integration.refusals.Reassigned"

    def handle(self) -> None:
        pass


def _nested(depth: int) -> list[Any]:
    """A list nested `depth` levels deep: `_nested(1)` is `[]`."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _cycle() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def _shared(levels: int) -> list[Any]:
    """Small in memory, 2**levels lists once written out: each level holds the one below twice."""
    value: list[Any] = []
    for _ in range(levels):
        value = [value, value]
    return value


@dataclass(frozen=True)
class Case:
    id: str
    error: type[DispatchError]
    job: Callable[[], Job] = Reassigned
    arguments: dict[str, Any] = field(default_factory=dict)  # for dispatch() only
    reassign: dict[str, Any] = field(
        default_factory=dict
    )  # Reassigned's attributes, after definition


# Values passed to dispatch() itself; bulk() takes none of them.
ARGUMENT_CASES = [
    Case("priority-2**31", InvalidPriorityError, arguments={"priority": 2**31}),
    Case("priority-2**63", InvalidPriorityError, arguments={"priority": 2**63}),
    Case("priority-below-int4", InvalidPriorityError, arguments={"priority": INT4_MIN - 1}),
    Case("priority-bool", InvalidPriorityError, arguments={"priority": True}),
    Case("priority-float", InvalidPriorityError, arguments={"priority": 1.0}),
    Case("delay-999999999-days", InvalidScheduleError, arguments={"delay": timedelta(999999999)}),
    Case("delay-huge-float", InvalidScheduleError, arguments={"delay": 1e300}),
    Case("delay-huge-int", InvalidScheduleError, arguments={"delay": 10**400}),
    Case(
        "delay-just-over-100-years",
        InvalidScheduleError,
        arguments={"delay": MAX_DURATION_SECONDS + 1},
    ),
    Case("delay-infinite", InvalidScheduleError, arguments={"delay": float("inf")}),
    Case("delay-nan", InvalidScheduleError, arguments={"delay": float("nan")}),
    Case("delay-negative", InvalidScheduleError, arguments={"delay": -1}),
    Case(
        "delay-negative-timedelta", InvalidScheduleError, arguments={"delay": timedelta(seconds=-1)}
    ),
    Case("delay-bool", InvalidScheduleError, arguments={"delay": True}),
    Case("delay-str", InvalidScheduleError, arguments={"delay": "60"}),
    Case("run-at-str", InvalidScheduleError, arguments={"run_at": "2030-01-01T00:00:00Z"}),
    Case("run-at-naive", InvalidScheduleError, arguments={"run_at": datetime(2030, 1, 1)}),
    Case(
        "run-at-year-9999-end",
        InvalidScheduleError,
        arguments={"run_at": datetime.max.replace(tzinfo=UTC)},
    ),
    Case(
        "run-at-past-year-9999-in-utc",
        InvalidScheduleError,
        arguments={"run_at": datetime.max.replace(tzinfo=timezone(timedelta(hours=-14)))},
    ),
    Case(
        "run-at-before-year-1-in-utc",
        InvalidScheduleError,
        arguments={"run_at": datetime.min.replace(tzinfo=timezone(timedelta(hours=14)))},
    ),
    Case(
        "delay-and-run-at",
        InvalidScheduleError,
        arguments={"delay": 5, "run_at": datetime(2030, 1, 1, tzinfo=UTC)},
    ),
]

# Values carried by the job (its class attributes or its payload): dispatch and bulk alike.
JOB_CASES = [
    Case("class-max-tries-2**31", InvalidJobSettingError, reassign={"max_tries": 2**31}),
    Case("class-max-tries-0", InvalidJobSettingError, reassign={"max_tries": 0}),
    Case("class-max-tries-bool", InvalidJobSettingError, reassign={"max_tries": True}),
    Case("class-priority-2**31", InvalidJobSettingError, reassign={"priority": 2**31}),
    Case("class-priority-below-int4", InvalidJobSettingError, reassign={"priority": INT4_MIN - 1}),
    Case("class-priority-float", InvalidJobSettingError, reassign={"priority": 0.5}),
    Case("job-name-none", InvalidJobNameError, reassign={"job_name": None}),
    Case("job-name-empty", InvalidJobNameError, reassign={"job_name": ""}),
    Case("job-name-whitespace", InvalidJobNameError, reassign={"job_name": " \t "}),
    Case("job-name-numeric", InvalidJobNameError, reassign={"job_name": "12345"}),
    Case("job-name-not-str", InvalidJobNameError, reassign={"job_name": 12345}),
    Case("job-name-control-character", InvalidJobNameError, reassign={"job_name": "a\x00b"}),
    Case("job-name-over-255-bytes", InvalidJobNameError, reassign={"job_name": "é" * 128}),
    Case("job-name-lone-surrogate", InvalidJobNameError, reassign={"job_name": "jobs.\ud800"}),
    Case("queue-lone-surrogate", InvalidQueueNameError, reassign={"queue": "q\udc80"}),
    Case("lone-surrogate-value", UnserializablePayloadError, lambda: Anything(value="a\ud800")),
    Case("lone-surrogate-key", UnserializablePayloadError, lambda: Anything(value={"\udfff": 1})),
    Case("bytes-not-utf8", UnserializablePayloadError, lambda: Blob(data=b"\xff\xfe")),
    Case("unserialisable-object", UnserializablePayloadError, lambda: Anything(value=object())),
    Case("nested-10000-deep", PayloadTooDeepError, lambda: Anything(value=_nested(10_000))),
    Case("nested-101-deep", PayloadTooDeepError, lambda: Anything(value=_nested(100))),
    Case("cycle", PayloadTooDeepError, lambda: Anything(value=_cycle())),
    Case("shared-2**40-times", PayloadTooLargeError, lambda: Anything(value=_shared(40))),
    Case("nul-in-key", UnserializablePayloadError, lambda: Anything(value={"a\x00": 1})),
    Case("nul-in-value", UnserializablePayloadError, lambda: Anything(value=["a\x00"])),
    Case("int-of-5000-digits", UnserializablePayloadError, lambda: Count(number=10**4999)),
    Case(
        "int-of-4301-digits-in-any",
        UnserializablePayloadError,
        lambda: Anything(value={"n": -(10**MAX_PAYLOAD_INT_DIGITS)}),
    ),
]

CALLS = [
    *[pytest.param(case, "dispatch", id=f"dispatch-{case.id}") for case in ARGUMENT_CASES],
    *[pytest.param(case, "dispatch", id=f"dispatch-{case.id}") for case in JOB_CASES],
    *[pytest.param(case, "bulk", id=f"bulk-{case.id}") for case in JOB_CASES],
]


@pytest.fixture(scope="module")
def shared_database_url(pgqueue_server_url: str, pgqueue_template_database: str) -> Iterator[str]:
    """One migrated database for the refusal matrix: a refusal writes nothing, so the ~160 cases
    need not pay for a database clone each; `empty_tables` still starts every case clean."""
    from pgqueue.testing.pytest_plugin import create_database, drop_database

    name = f"pgqueue_refusals_{uuid.uuid4().hex[:12]}"
    create_database(pgqueue_server_url, name, template=pgqueue_template_database)
    url = make_conninfo(pgqueue_server_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("CREATE TABLE business (note text NOT NULL)")
    yield url
    drop_database(pgqueue_server_url, name)


@pytest.fixture
def empty_tables(shared_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the shared database, whose jobs and business tables start empty."""
    with psycopg.connect(shared_database_url, autocommit=True) as connection:
        connection.execute("TRUNCATE pgqueue.jobs, business")
        yield connection


@pytest.fixture
def queue(settings: Settings) -> Iterator[Queue]:
    with Queue(settings) as q:
        yield q


def _reassign(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case.reassign.items():
        monkeypatch.setattr(Reassigned, name, value)


def _send(queue: Queue, call: str, case: Case, job: Job, conn: Any) -> None:
    if call == "dispatch":
        queue.dispatch(job, conn=conn, **case.arguments)
    else:
        queue.bulk([Anything(value="valid"), job], conn=conn)


async def _send_async(queue: AsyncQueue, call: str, case: Case, job: Job, conn: Any) -> None:
    if call == "dispatch":
        await queue.dispatch(job, conn=conn, **case.arguments)
    else:
        await queue.bulk([Anything(value="valid"), job], conn=conn)


def _check_refusal(caught: pytest.ExceptionInfo[DispatchError], call: str) -> None:
    assert isinstance(caught.value, ValueError)
    if call == "bulk":
        assert str(caught.value).startswith("bulk() item 1: ")


def _check_nothing_written_and_business_committed(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (0,)
    notes = [row[0] for row in conn.execute("SELECT note FROM business ORDER BY note")]
    assert notes == ["after the refusal", "before the refusal"]


@pytest.mark.parametrize(("case", "call"), CALLS)
def test_refused_in_the_callers_transaction_which_stays_usable(
    case: Case,
    call: str,
    shared_database_url: str,
    empty_tables: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(database_url=shared_database_url, db_schema=DEFAULT_SCHEMA)
    with (
        Queue(settings) as queue,
        psycopg.connect(shared_database_url) as caller,
        caller.transaction(),
    ):
        caller.execute("INSERT INTO business VALUES ('before the refusal')")
        job = case.job()
        _reassign(case, monkeypatch)
        with pytest.raises(case.error) as caught:
            _send(queue, call, case, job, caller)
        assert caller.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        caller.execute("INSERT INTO business VALUES ('after the refusal')")
    _check_refusal(caught, call)
    _check_nothing_written_and_business_committed(empty_tables)


@pytest.mark.parametrize(("case", "call"), CALLS)
async def test_async_refused_in_the_callers_transaction_which_stays_usable(
    case: Case,
    call: str,
    shared_database_url: str,
    empty_tables: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(database_url=shared_database_url, db_schema=DEFAULT_SCHEMA)
    async with (
        AsyncQueue(settings) as queue,
        await psycopg.AsyncConnection.connect(shared_database_url) as caller,
        caller.transaction(),
    ):
        await caller.execute("INSERT INTO business VALUES ('before the refusal')")
        job = case.job()
        _reassign(case, monkeypatch)
        with pytest.raises(case.error) as caught:
            await _send_async(queue, call, case, job, caller)
        assert caller.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        await caller.execute("INSERT INTO business VALUES ('after the refusal')")
    _check_refusal(caught, call)
    _check_nothing_written_and_business_committed(empty_tables)


@pytest.mark.parametrize(
    ("attribute", "value", "column"),
    [
        ("priority", INT4_MAX, "priority"),
        ("priority", INT4_MIN, "priority"),
        ("max_tries", INT4_MAX, "max_tries"),
    ],
)
@pytest.mark.parametrize("call", ["dispatch", "bulk"])
def test_class_settings_at_the_int4_limits_are_stored_exactly(
    attribute: str,
    value: int,
    column: str,
    call: str,
    queue: Queue,
    conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Reassigned, attribute, value)
    if call == "dispatch":
        queue.dispatch(Reassigned())
    else:
        queue.bulk([Reassigned()])
    assert conn.execute(f"SELECT {column} FROM pgqueue.jobs").fetchone() == (value,)


@pytest.mark.parametrize("priority", [INT4_MIN, INT4_MAX])
def test_priority_argument_at_the_int4_limits_is_stored_exactly(
    priority: int, queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    queue.dispatch(Anything(), priority=priority)
    assert conn.execute("SELECT priority FROM pgqueue.jobs").fetchone() == (priority,)


def test_delay_of_100_years_is_stored(queue: Queue, conn: psycopg.Connection[Any]) -> None:
    queue.dispatch(Anything(), delay=timedelta(seconds=MAX_DURATION_SECONDS))
    row = conn.execute("SELECT extract(epoch FROM run_at - enqueued_at) FROM pgqueue.jobs")
    offset = row.fetchone()
    assert offset is not None and float(offset[0]) == pytest.approx(MAX_DURATION_SECONDS, abs=1)


def test_latest_run_at_is_stored_and_loads_back(
    queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    latest = datetime(9999, 12, 30, tzinfo=UTC)
    queue.dispatch(Anything(), run_at=latest)
    assert conn.execute("SELECT run_at FROM pgqueue.jobs").fetchone() == (latest,)


@pytest.mark.parametrize(
    "job",
    [
        pytest.param(Anything(value=_nested(99)), id="nested-100-deep"),
        pytest.param(Count(number=-int("9" * MAX_PAYLOAD_INT_DIGITS)), id="int-of-4300-digits"),
        pytest.param(Anything(value="1" * 5000), id="str-of-5000-digits"),
        pytest.param(Anything(value={"[[[": "NaN Infinity \\u0000"}), id="tokens-inside-strings"),
    ],
)
def test_payload_at_the_limits_is_stored_and_loads_back_as_a_worker_reads_it(
    job: Job, queue: Queue, conn: psycopg.Connection[Any]
) -> None:
    queue.bulk([job])
    queue.dispatch(job)
    for (text,) in conn.execute("SELECT payload::text FROM pgqueue.jobs"):
        assert type(job).model_validate_json(text).model_dump() == job.model_dump()
        assert type(job).model_validate(json.loads(text)).model_dump() == job.model_dump()
