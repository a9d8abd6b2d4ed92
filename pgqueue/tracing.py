"""OpenTelemetry tracing: a producer span at dispatch, a consumer span around every attempt.

Tracing is on whenever `opentelemetry-api` is installed (`pip install 'pgqueue[otel]'`) and the
application configured a tracer provider (the SDK's, or a distro's). This is the only module that
knows OpenTelemetry, and it imports OpenTelemetry only once the application has: a provider is
configured through `opentelemetry.trace`, so while that module is not in `sys.modules` no
provider can be, and each check is one dictionary lookup. With the API imported and no provider
set (its default proxy provider, or the no-op one), the check adds one call and an isinstance.
It runs once per dispatch or bulk, and once per worker round trip: never once per job.

At dispatch, a PRODUCER span `send <queue>` wraps the write, and its context, as the
application's propagators write it (by default the W3C `traceparent` and `tracestate`), is stored
in `jobs.trace_context` as a JSON object, apart from the payload. A bulk is one span, and each of
its rows gets that span's context. Each attempt then runs in a CONSUMER span `process <queue>`,
the current span while the middleware and the handler run, which links to the stored context:
a link and not a parent, so each attempt is a trace of its own. A job may run hours after the
request that dispatched it, and again at each retry: as children, those attempts would hold the
request's trace open for as long, and a sampler following the parent would keep or drop them all
with it. Span names and attributes follow OpenTelemetry's messaging conventions
(docs/tracing.md).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from pgqueue import __version__
from pgqueue.outcome import Cancelled, Completed, Failed, Lost, Outcome, Released, Retry, Snoozed

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanContext
    from opentelemetry.trace import Tracer as Tracer  # the worker holds one

T = TypeVar("T")

# OpenTelemetry registers no messaging.system value for pgqueue; this is the name it goes by.
SYSTEM = "pgqueue"
_SYSTEM = "messaging.system"
_OPERATION_TYPE = "messaging.operation.type"
_OPERATION_NAME = "messaging.operation.name"
_DESTINATION = "messaging.destination.name"
_MESSAGE_ID = "messaging.message.id"
_BATCH_COUNT = "messaging.batch.message_count"
# No messaging attribute says which try of a message this is (only Pub/Sub's own), so these
# are pgqueue's.
JOB_TYPE = "pgqueue.job.type"
ATTEMPT = "pgqueue.job.attempt"
OUTCOME = "pgqueue.job.outcome"

_OUTCOMES: dict[type[Any], str] = {
    Completed: "completed",
    Retry: "retry",
    Snoozed: "snoozed",
    Failed: "failed",
    Cancelled: "cancelled",
    Released: "released",
    Lost: "lost",
}
# Stored contexts read back, by their text: a bulk's rows share one, and so do a job's attempts.
_CONTEXTS_KEPT = 1024

# The provider last seen and its tracer (None for the API's no-op and proxy providers), so a
# check finds its answer by identity.
_seen: tuple[object, Tracer | None] = (None, None)


def tracer() -> Tracer | None:
    """pgqueue's tracer from the application's tracer provider; None while none is configured."""
    otel_trace = sys.modules.get("opentelemetry.trace")
    if otel_trace is None:  # never imported, so never configured (or blocked: None)
        return None
    provider = otel_trace.get_tracer_provider()
    seen_provider, seen_tracer = _seen
    if provider is seen_provider:
        return seen_tracer
    return _tracer_of(provider)


def _tracer_of(provider: Any) -> Tracer | None:
    global _seen
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider

    found = None
    if not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        found = provider.get_tracer("pgqueue", __version__)
        _api()  # imported now, with the provider: not inside the first dispatch's span
    _seen = (provider, found)
    return found


class _Api:
    """The parts of the OpenTelemetry API used per span, imported once, when the first tracer
    is made: an import statement in each call would cost more than some of the calls."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace

        self.attach = context.attach
        self.detach = context.detach
        self.Context = context.Context
        self.inject = propagate.inject
        self.extract = propagate.extract
        self.set_span_in_context = trace.set_span_in_context
        self.get_current_span = trace.get_current_span
        self.Link = trace.Link
        self.PRODUCER = trace.SpanKind.PRODUCER
        self.CONSUMER = trace.SpanKind.CONSUMER
        self.ERROR = trace.StatusCode.ERROR


@functools.cache
def _api() -> _Api:
    return _Api()


class Sending:
    """The producer span of one dispatch or bulk, and the context to store with its jobs."""

    def __init__(self, span: Span, trace_context: str | None) -> None:
        self.span = span
        self.trace_context = trace_context

    def sent(self, job_id: int) -> None:
        """Name the job written (a single dispatch), once its id is known."""
        self.span.set_attribute(_MESSAGE_ID, str(job_id))


@contextmanager
def send_span(
    tracer: Tracer, queue: str | None, job_type: str | None = None, count: int | None = None
) -> Iterator[Sending]:
    """A PRODUCER span `send <queue>` around a dispatch (or a bulk of `count` jobs, whose
    `queue` is None when they go to several), current while it runs, so its context is the one
    stored. An error raised inside is recorded on it and raised on."""
    api = _api()
    attributes: dict[str, str | int] = {
        _SYSTEM: SYSTEM,
        _OPERATION_TYPE: "send",
        _OPERATION_NAME: "send",
    }
    if queue is not None:
        attributes[_DESTINATION] = queue
    if job_type is not None:
        attributes[JOB_TYPE] = job_type
    if count is not None:
        attributes[_BATCH_COUNT] = count
    name = "send" if queue is None else f"send {queue}"
    with tracer.start_as_current_span(name, kind=api.PRODUCER, attributes=attributes) as span:
        carrier: dict[str, str] = {}
        api.inject(carrier)
        yield Sending(span, json.dumps(carrier, separators=(",", ":")) if carrier else None)


class Attempt:
    """The CONSUMER span of one attempt: `run` makes it current around the attempt, `end`
    records the outcome and ends it."""

    def __init__(self, span: Span, context: Context) -> None:
        self.span = span
        self._context = context

    async def run(self, attempt: Awaitable[T]) -> T:
        """Await `attempt` with this span current, so middleware and handler see it."""
        api = _api()
        token = api.attach(self._context)
        try:
            return await attempt
        finally:
            api.detach(token)

    def end(self, outcome: Outcome) -> None:
        """Record how the attempt ended: a handler's error as the span's ERROR status, an
        `exception` event (its text redacted and capped as in failed_jobs) and `error.type`; a
        lost lease as ERROR; every outcome as `pgqueue.job.outcome`."""
        span = self.span
        span.set_attribute(OUTCOME, _OUTCOMES.get(type(outcome), type(outcome).__name__.lower()))
        if isinstance(outcome, Retry | Failed):
            report = outcome.error
            span.set_attribute("error.type", report.class_name)
            span.add_event(
                "exception",
                {
                    "exception.type": report.class_name,
                    "exception.message": report.message,
                    "exception.stacktrace": report.traceback,
                },
            )
            span.set_status(_api().ERROR, report.description)
        elif isinstance(outcome, Lost):
            span.set_status(_api().ERROR, f"lease lost: {outcome.reason}")
        span.end()


def start_attempt(
    tracer: Tracer,
    queue: str,
    job_id: int,
    job_type: str,
    attempt: int,
    trace_context: str | None,
) -> Attempt:
    """Start the CONSUMER span `process <queue>` of one attempt, linked to the producer's
    context stored with the job (`trace_context`, the column's text; no link when it is NULL
    or cannot be read). The span is a root: see the module's docstring."""
    api = _api()
    producer, carried = (None, None) if trace_context is None else _read(trace_context)
    span = tracer.start_span(
        f"process {queue}",
        context=api.Context(),  # a root, whatever is current in the task that started this one
        kind=api.CONSUMER,
        attributes={
            _SYSTEM: SYSTEM,
            _OPERATION_TYPE: "process",
            _OPERATION_NAME: "process",
            _DESTINATION: queue,
            _MESSAGE_ID: str(job_id),
            JOB_TYPE: job_type,
            ATTEMPT: attempt,
        },
        links=None if producer is None else [api.Link(producer)],
    )
    # The producer's baggage, if its propagators carried any, is current around the attempt too.
    return Attempt(span, api.set_span_in_context(span, carried))


@functools.lru_cache(maxsize=_CONTEXTS_KEPT)
def _read(text: str) -> tuple[SpanContext | None, Context | None]:
    """The producer's span context in a stored `trace_context` (None when invalid), and the
    context extracted from it. A row's context that cannot be read costs its link, never its
    job: anyone who may write the column can write anything into it. Both are immutable, so
    the rows of a bulk, which share one text, share one answer."""
    api = _api()
    try:
        loaded = json.loads(text)
        carrier = {
            key: value
            for key, value in (loaded.items() if isinstance(loaded, dict) else ())
            if isinstance(key, str) and isinstance(value, str)
        }
        # Extracted into an empty context, never the current one, whose span it would return
        # when the carrier holds none.
        carried = api.extract(carrier, context=api.Context())
        span_context = api.get_current_span(carried).get_span_context()
    except Exception:
        return None, None
    return (span_context if span_context.is_valid else None), carried
