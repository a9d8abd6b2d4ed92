"""`pgqueue work --metrics-port`: Prometheus metrics scraped from a real worker during a run."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from typing import Any

import psycopg

from pgqueue import Queue, Settings
from tests.acceptance import jobs
from tests.acceptance.helpers import count, wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_outcomes_durations_claims_depth_and_slots(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.Record() for _ in range(20)])
        queue.dispatch(jobs.FailedRaises())
        queue.bulk([jobs.Record(seconds=30) for _ in range(2)])
    port = _free_port()
    worker = start_worker("--metrics-port", str(port), "--lease", "0.6", "--concurrency", "4")
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 20)
    wait_for(lambda: count(ledger, "SELECT count(*) FROM pgqueue.failed_jobs") == 1)
    # A heartbeat (every lease/3 s) refreshes the queue depth after the queue drained.
    wait_for(lambda: _scrape(port).get('pgqueue_queue_depth{queue="default"}') == 0.0)
    samples = _scrape(port)
    worker.send_signal(signal.SIGINT)
    time.sleep(0.5)  # two signals sent at once may arrive as one
    worker.send_signal(signal.SIGINT)
    worker.communicate(timeout=30)

    # The exposition format sorts labels by name.
    record = 'job_type="acceptance.Record"'
    assert samples[f'pgqueue_jobs_total{{{record},outcome="completed",queue="default"}}'] == 20
    failed = 'job_type="acceptance.FailedRaises",outcome="failed",queue="default"'
    assert samples[f"pgqueue_jobs_total{{{failed}}}"] == 1
    assert samples[f'pgqueue_job_duration_seconds_count{{{record},queue="default"}}'] == 20
    assert samples["pgqueue_claim_latency_seconds_count"] >= 1
    assert samples["pgqueue_worker_slots"] == 4
    assert samples["pgqueue_worker_slots_busy"] == 2  # the two 30-second jobs
