"""OpenTelemetry tracing (SPEC 12, docs/tracing.md) with the SDK's TracerProvider and in-memory
exporter, on a real database: the producer span's context stored at dispatch and bulk, each
attempt in a consumer span linked to it (errors, retries, failed-job retries, middleware inside
it), and pgqueue with OpenTelemetry missing or not configured, in processes of their own.

The global tracer provider can be set once per process: the module fixture sets it, and puts the
API's globals back as they were afterwards (as opentelemetry-test-utils does), so the tests after
these run untraced, as they expect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from pgqueue import AsyncQueue, FailedJobs, Job, Queue, Settings
from pgqueue.errors import DatabaseError
from pgqueue.worker import Worker, WorkerOptions

QUEUE = "tracing"
CallNext = Callable[[], Awaitable[None]]


class Traced(Job):
    queue = QUEUE
    job_name = "tests.tracing.Traced"

    n: int = 0

    async def handle(self) -> None:
        pass


class FailsOnce(Job):
    queue = QUEUE
    job_name = "tests.tracing.FailsOnce"
    max_tries = 2
    retry_after = 0
    tried: ClassVar[list[int]] = []

    async def handle(self) -> None:
        FailsOnce.tried.append(self.attempts)
        if self.attempts == 1:
            raise ValueError("the first try fails")


class AlwaysFails(Job):
    queue = QUEUE
    job_name = "tests.tracing.AlwaysFails"
    max_tries = 1

    async def handle(self) -> None:
        raise RuntimeError("no luck")


class Blocking(Job):
    queue = QUEUE
    job_name = "tests.tracing.Blocking"

    def handle(self) -> None:
        pass


class Unique(Job):
    queue = QUEUE
    job_name = "tests.tracing.Unique"
    unique = ("key",)

    key: str
    n: int = 0

    async def handle(self) -> None:
        pass


class Elsewhere(Job):
    queue = "tracing-other"
    job_name = "tests.tracing.Elsewhere"

    async def handle(self) -> None:
        pass


def _reset_trace_globals() -> None:
    # What opentelemetry-test-utils' reset_trace_globals does: the API has no public way.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture(scope="module")
def provider() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_trace_globals()
    trace.set_tracer_provider(tracer_provider)
    yield exporter
    tracer_provider.shutdown()
    _reset_trace_globals()


@pytest.fixture
def spans(provider: InMemorySpanExporter) -> InMemorySpanExporter:
    provider.clear()
    return provider


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def _one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = _named(exporter, name)
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def _stored(conn: psycopg.Connection[Any], job_id: int, table: str = "jobs") -> Any:
    row = conn.execute(
        f"SELECT trace_context FROM pgqueue.{table} WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return row[0]


def _traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def _drain(settings: Settings, middleware: tuple[Any, ...] = ()) -> Worker:
    options = WorkerOptions(
        queues=(QUEUE,),
        sleep=0.05,
        stop_when_empty=True,
        grace=0,
        middleware=middleware,
        imports=(__name__,),  # for Blocking, run in a child process
    )
    worker = Worker(settings, options)
    await worker.run()
    return worker


def _linked_to(span: ReadableSpan, producer: ReadableSpan) -> bool:
    """Whether `span`'s one link is to `producer` (read back from the row, so it is remote)."""
    sent = producer.get_span_context()
    return [
        (link.context.trace_id, link.context.span_id, link.context.is_remote) for link in span.links
    ] == [(sent.trace_id, sent.span_id, True)]


def test_dispatch_inside_a_span_stores_the_producer_span_context_in_its_trace(
    settings: Settings, conn: psycopg.Connection[Any], spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("tests")
    with Queue(settings) as queue, tracer.start_as_current_span("request") as request:
        job_id = queue.dispatch(Traced(n=1))
        payload = conn.execute("SELECT payload FROM pgqueue.jobs WHERE id = %s", (job_id,))
        assert payload.fetchone() == ({"n": 1},)  # the payload stays the user's
    producer = _one(spans, f"send {QUEUE}")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.parent is not None
    assert producer.parent.span_id == request.get_span_context().span_id
    assert producer.context.trace_id == request.get_span_context().trace_id
    assert _stored(conn, job_id) == {"traceparent": _traceparent(producer)}
    assert dict(producer.attributes or {}) == {
        "messaging.system": "pgqueue",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": QUEUE,
        "messaging.message.id": str(job_id),
        "pgqueue.job.type": "tests.tracing.Traced",
    }


async def test_async_dispatch_stores_the_producer_span_context(
    settings: Settings, conn: psycopg.Connection[Any], spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("tests").start_as_current_span("request") as request:
        async with AsyncQueue(settings) as queue:
            job_id = await queue.dispatch(Traced(), queue="tracing-elsewhere")
    producer = _one(spans, "send tracing-elsewhere")
    assert producer.context.trace_id == request.get_span_context().trace_id
    assert _stored(conn, job_id) == {"traceparent": _traceparent(producer)}


def test_dispatch_with_no_current_span_starts_a_trace_at_its_producer_span(
    settings: Settings, conn: psycopg.Connection[Any], spans: InMemorySpanExporter
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(Traced())
    producer = _one(spans, f"send {QUEUE}")
    assert producer.parent is None
    assert _stored(conn, job_id) == {"traceparent": _traceparent(producer)}


def test_a_dispatch_that_fails_records_the_error_on_its_producer_span(
    database_url: str, settings: Settings, spans: InMemorySpanExporter
) -> None:
    with psycopg.connect(database_url) as aborted:
        with pytest.raises(psycopg.errors.DivisionByZero):
            aborted.execute("SELECT 1 / 0")
        with pytest.raises(DatabaseError):
            Queue(settings).dispatch(Traced(), aborted)
    producer = _one(spans, f"send {QUEUE}")
    assert producer.status.status_code is StatusCode.ERROR
    assert [event.name for event in producer.events] == ["exception"]


@pytest.mark.parametrize("kind", ["copy", "unique"])
def test_every_row_of_a_bulk_carries_the_context_of_its_one_producer_span(
    settings: Settings, conn: psycopg.Connection[Any], spans: InMemorySpanExporter, kind: str
) -> None:
    jobs: list[Job] = [Traced(n=n) for n in range(5)]
    if kind == "unique":  # a batch holding a unique job is one INSERT, not COPY
        jobs.append(Unique(key="a"))
    with Queue(settings) as queue:
        ids = queue.bulk(jobs)
    producer = _one(spans, f"send {QUEUE}")
    assert producer.kind is SpanKind.PRODUCER
    assert (producer.attributes or {})["messaging.batch.message_count"] == len(jobs)
    stored = conn.execute(
        "SELECT trace_context FROM pgqueue.jobs WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    assert stored == [({"traceparent": _traceparent(producer)},)] * len(jobs)


async def test_a_bulk_to_several_queues_is_one_span_named_without_a_queue(
    settings: Settings, conn: psycopg.Connection[Any], spans: InMemorySpanExporter
) -> None:
    async with AsyncQueue(settings) as queue:
        ids = await queue.bulk([Traced(), Elsewhere()])
    producer = _one(spans, "send")
    assert "messaging.destination.name" not in (producer.attributes or {})
    assert [_stored(conn, job_id) for job_id in ids] == [
        {"traceparent": _traceparent(producer)}
    ] * 2


def test_a_replacing_dispatch_gives_the_job_its_own_context(
    settings: Settings, conn: psycopg.Connection[Any], spans: InMemorySpanExporter
) -> None:
    with Queue(settings) as queue:
        first = queue.dispatch(Unique(key="k", n=1))
        assert _stored(conn, first) == {"traceparent": _traceparent(_one(spans, f"send {QUEUE}"))}
        skipped = queue.dispatch(Unique(key="k", n=2))  # the job keeps the first context
        assert _stored(conn, first) == {
            "traceparent": _traceparent(_named(spans, f"send {QUEUE}")[0])
        }
        replaced = queue.dispatch(Unique(key="k", n=3), on_conflict="replace")
    assert first == skipped == replaced
    senders = _named(spans, f"send {QUEUE}")
    assert [(span.attributes or {})["messaging.message.id"] for span in senders] == [str(first)] * 3
    assert _stored(conn, first) == {"traceparent": _traceparent(senders[2])}


async def test_each_attempt_runs_in_a_consumer_span_linked_to_the_dispatch(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("tests").start_as_current_span("request"):
        async with AsyncQueue(settings) as queue:
            job_id = await queue.dispatch(Traced())
    await _drain(settings)
    producer = _one(spans, f"send {QUEUE}")
    process = _one(spans, f"process {QUEUE}")
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is None  # linked, not a child: see pgqueue/tracing.py
    assert _linked_to(process, producer)
    assert process.links[0].context.trace_id == producer.context.trace_id
    assert dict(process.attributes or {}) == {
        "messaging.system": "pgqueue",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": QUEUE,
        "messaging.message.id": str(job_id),
        "pgqueue.job.type": "tests.tracing.Traced",
        "pgqueue.job.attempt": 1,
        "pgqueue.job.outcome": "completed",
    }
    assert process.status.status_code is StatusCode.UNSET
    assert process.events == ()


async def test_a_failed_attempt_has_error_status_and_its_retry_a_new_span_linked_the_same_way(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    FailsOnce.tried.clear()
    async with AsyncQueue(settings) as queue:
        await queue.dispatch(FailsOnce())
    await _drain(settings)
    assert FailsOnce.tried == [1, 2]
    producer = _one(spans, f"send {QUEUE}")
    first, second = sorted(
        _named(spans, f"process {QUEUE}"),
        key=lambda span: (span.attributes or {})["pgqueue.job.attempt"],
    )
    assert first.context.trace_id != second.context.trace_id  # a trace of its own each
    assert _linked_to(first, producer) and _linked_to(second, producer)
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "builtins.ValueError: the first try fails"
    assert (first.attributes or {})["pgqueue.job.outcome"] == "retry"
    assert (first.attributes or {})["error.type"] == "builtins.ValueError"
    [event] = first.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "builtins.ValueError"
    assert attributes["exception.message"] == "the first try fails"
    assert "raise ValueError" in str(attributes["exception.stacktrace"])
    assert second.status.status_code is StatusCode.UNSET
    assert (second.attributes or {})["pgqueue.job.outcome"] == "completed"


async def test_a_job_retried_from_failed_jobs_keeps_its_link(
    settings: Settings, conn: psycopg.Connection[Any], spans: InMemorySpanExporter
) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(AlwaysFails())
    stored = _stored(conn, job_id)
    await _drain(settings)
    assert _stored(conn, job_id, "failed_jobs") == stored
    assert FailedJobs(settings).retry([job_id]) == [job_id]
    assert _stored(conn, job_id) == stored
    await _drain(settings)
    producer = _one(spans, f"send {QUEUE}")
    attempts = _named(spans, f"process {QUEUE}")
    assert len(attempts) == 2
    assert all(_linked_to(span, producer) for span in attempts)
    assert all(span.status.status_code is StatusCode.ERROR for span in attempts)
    assert {(span.attributes or {})["pgqueue.job.outcome"] for span in attempts} == {"failed"}
    assert _stored(conn, job_id, "failed_jobs") == stored


@pytest.mark.parametrize(
    "stored", [None, '"not an object"', '{"traceparent": 5}', '{"traceparent": "00-junk"}']
)
async def test_a_job_without_a_readable_context_runs_in_a_span_with_no_link(
    settings: Settings, conn: psycopg.Connection[Any], spans: InMemorySpanExporter, stored: Any
) -> None:
    async with AsyncQueue(settings) as queue:
        job_id = await queue.dispatch(Traced())
    # As a job dispatched untraced (or anything else written into the column) finds it.
    conn.execute(
        "UPDATE pgqueue.jobs SET trace_context = %s::jsonb WHERE id = %s", (stored, job_id)
    )
    worker = await _drain(settings)
    assert worker.summary.completed == 1
    process = _one(spans, f"process {QUEUE}")
    assert process.links == ()
    assert (process.attributes or {})["messaging.message.id"] == str(job_id)


async def test_middleware_runs_inside_the_consumer_span(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    seen: list[tuple[int, str]] = []

    async def reads_the_current_span(job: Job, call_next: CallNext) -> None:
        context = trace.get_current_span().get_span_context()
        seen.append((context.span_id, type(job).__name__))
        await call_next()

    async with AsyncQueue(settings) as queue:
        await queue.dispatch(Traced())
    await _drain(settings, middleware=(reads_the_current_span,))
    process = _one(spans, f"process {QUEUE}")
    assert seen == [(process.context.span_id, "Traced")]
    assert trace.get_current_span().get_span_context().is_valid is False  # not left behind


async def test_a_blocking_job_runs_in_a_span_in_the_worker(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    async with AsyncQueue(settings) as queue:
        await queue.dispatch(Blocking())
    await _drain(settings)
    process = _one(spans, f"process {QUEUE}")
    assert _linked_to(process, _one(spans, f"send {QUEUE}"))
    assert (process.attributes or {})["pgqueue.job.outcome"] == "completed"


# Dispatches and runs one job through the in-process Worker, then prints what it stored and which
# OpenTelemetry modules the process imported. BLOCK, when set, makes opentelemetry unimportable.
_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys
    if os.environ.get("BLOCK"):
        sys.modules["opentelemetry"] = None
    import psycopg
    import pgqueue

    class Plain(pgqueue.Job):
        queue = "untraced"
        job_name = "tests.tracing.Plain"
        async def handle(self) -> None:
            pass

    async def main() -> None:
        job_id = pgqueue.Queue().dispatch(Plain())
        [bulk_id] = pgqueue.Queue().bulk([Plain()])
        with psycopg.connect(os.environ["PGQUEUE_DATABASE_URL"]) as conn:
            stored = conn.execute(
                "SELECT trace_context FROM pgqueue.jobs WHERE id = ANY(%s)", ([job_id, bulk_id],)
            ).fetchall()
        async with pgqueue.Worker(queues=("untraced",)) as worker:
            for _ in range(500):
                if worker.summary.completed == 2:
                    break
                await asyncio.sleep(0.02)
        print(json.dumps({
            "stored": [row[0] for row in stored],
            "completed": worker.summary.completed,
            "imported": sorted(name for name, module in sys.modules.items()
                               if name.startswith("opentelemetry") and module is not None),
        }))

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("blocked", [True, False], ids=["not-importable", "not-configured"])
def test_pgqueue_works_without_opentelemetry_and_imports_none_of_it(
    database_url: str, blocked: bool
) -> None:
    env = {**os.environ, "PGQUEUE_DATABASE_URL": database_url, "PGQUEUE_SCHEMA": "pgqueue"}
    env.pop("BLOCK", None)
    if blocked:
        env["BLOCK"] = "1"
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"stored": [None, None], "completed": 2, "imported": []}
