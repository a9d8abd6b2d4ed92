"""Prometheus metrics for `pgqueue work --metrics-port PORT`.

Each worker process serves its own registry over HTTP. With `--processes N`, child i listens on
PORT + i, so each can be scraped as its own target. prometheus_client (and the http.server it
brings) is imported only when a WorkerMetrics is made: a worker without --metrics-port never pays
for it at start-up.
"""

from __future__ import annotations

from pgqueue.errors import MetricsServerError

# Job durations from a millisecond to ten minutes; claims from 0.1 ms to a second.
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600)
_CLAIM_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class WorkerMetrics:
    """The metrics one worker process exports, in a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ("queue", "job_type")
        self.jobs = Counter(
            "pgqueue_jobs",
            "Job attempts finished, by outcome (completed, retried, snoozed, failed)",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.rescued = Counter(
            "pgqueue_jobs_rescued",
            "Jobs whose expired lease this worker returned to the queue",
            ("queue",),
            registry=self.registry,
        )
        self.duration = Histogram(
            "pgqueue_job_duration_seconds",
            "Time from claim to outcome of one attempt",
            labels,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.claim_latency = Histogram(
            "pgqueue_claim_latency_seconds",
            "Round trip of one claim statement (acknowledgements included)",
            buckets=_CLAIM_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "pgqueue_queue_depth",
            "Jobs ready to run now, per queue this worker serves (refreshed each heartbeat)",
            ("queue",),
            registry=self.registry,
        )
        self.queue_paused = Gauge(
            "pgqueue_queue_paused",
            "1 while a queue this worker serves is paused (pgqueue queues pause), else 0 "
            "(refreshed each heartbeat)",
            ("queue",),
            registry=self.registry,
        )
        self.queue_held = Gauge(
            "pgqueue_queue_held_by_limits",
            "Ready jobs a concurrency or rate limit holds back now, per queue this worker serves "
            "(refreshed each heartbeat, counted only by workers whose job types or queues are "
            "limited; else 0)",
            ("queue",),
            registry=self.registry,
        )
        self.slots_busy = Gauge(
            "pgqueue_worker_slots_busy", "Jobs running in this worker now", registry=self.registry
        )
        self.slots_total = Gauge(
            "pgqueue_worker_slots", "This worker's concurrency", registry=self.registry
        )

    def serve(self, port: int, address: str) -> None:
        """Serve /metrics on `address`:`port` (1 to 65535) from a background thread.

        `address` is `Settings.metrics_host` (`--metrics-host`), 127.0.0.1 unless set: metrics
        name queues and job types, which a host need not show every network it is on.

        Raises MetricsServerError, naming the port, when it cannot listen there: out of range, in
        use by another process, or below 1024 without the privilege.
        """
        if not 1 <= port <= 65535:
            raise MetricsServerError(f"metrics port {port} is out of range: use 1 to 65535")
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=address, registry=self.registry)
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise MetricsServerError(
                f"cannot serve metrics on {address}:{port}: {reason.lower()}"
            ) from exc


def metrics_url(address: str, port: int) -> str:
    """Where a scraper reads the metrics served on `address`:`port`; an IPv6 address is
    bracketed (`http://[::1]:9100/metrics`)."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/metrics"
