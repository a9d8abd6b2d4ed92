"""What OpenTelemetry tracing costs per job: pgqueue untraced, with the API imported but no
tracer provider, and with the SDK's provider, side by side on one PostgreSQL cluster.

Each measurement runs in a process of its own, since a process sets its tracer provider once:

- `off`: nothing imports OpenTelemetry (pgqueue then imports none of it either);
- `api`: `opentelemetry.trace` imported, no provider configured (the API's proxy provider);
- `sdk`: the SDK's `TracerProvider` with a `BatchSpanProcessor` and an exporter that drops
  every span, so what is measured is pgqueue's spans, not an exporter's I/O.

Each process dispatches `--single` jobs one `Queue.dispatch` at a time (µs per job, one round
trip each), then `--jobs` no-op jobs with `Queue.bulk` in batches of 10,000 (jobs/s), and then
drains them with an in-process `pgqueue.Worker` (defaults: concurrency 50), timed from the start
of `Worker.run` to its return on the empty queue. The modes are interleaved round by round and
each one's median over `--rounds` is printed, with the cost per job against `off`.

    python benchmarks/tracing_cost.py                    # 20,000 jobs, 3 rounds
    python benchmarks/tracing_cost.py --jobs 5000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

MODES = ("off", "api", "sdk")
BULK_BATCH = 10_000


def _child(mode: str, url: str, jobs: int, single: int) -> dict[str, float]:
    """One measurement in this process, in `mode`; returns its timings."""
    if mode in ("api", "sdk"):
        from opentelemetry import trace

        if mode == "sdk":
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import (
                BatchSpanProcessor,
                SpanExporter,
                SpanExportResult,
            )

            class Drop(SpanExporter):
                def export(self, spans: Sequence[Any]) -> SpanExportResult:
                    return SpanExportResult.SUCCESS

            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(Drop()))
            trace.set_tracer_provider(provider)

    from pydantic import SecretStr

    from pgqueue import Job, Queue, Settings
    from pgqueue.worker import Worker, WorkerOptions

    class Noop(Job):
        job_name = "bench.tracing.noop"
        n: int = 0

        async def handle(self) -> None:
            """Nothing to do: what is measured is the queue and its spans."""

    settings = Settings(database_url=SecretStr(url))
    with Queue(settings) as queue:
        queue.size()  # the pool is open before anything is timed
        started = time.perf_counter()
        for n in range(single):
            queue.dispatch(Noop(n=n))
        dispatch_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for start in range(0, jobs, BULK_BATCH):
            queue.bulk([Noop(n=n) for n in range(start, min(start + BULK_BATCH, jobs))])
        bulk_seconds = time.perf_counter() - started
    options = WorkerOptions(queues=("default",), stop_when_empty=True, sleep=0.05, grace=0)
    worker = Worker(settings, options)
    started = time.perf_counter()
    asyncio.run(worker.run())
    drain_seconds = time.perf_counter() - started
    if worker.summary.completed != jobs + single:
        raise SystemExit(f"{mode}: {worker.summary.completed} of {jobs + single} jobs completed")
    imported = any(name.startswith("opentelemetry") for name in sys.modules)
    if mode == "off" and imported:
        raise SystemExit("off: something imported opentelemetry")
    return {
        "dispatch_us": dispatch_seconds / single * 1e6,
        "bulk_per_second": jobs / bulk_seconds,
        "drain_per_second": (jobs + single) / drain_seconds,
        "drain_us": drain_seconds / (jobs + single) * 1e6,
    }


def _measure(mode: str, url: str, jobs: int, single: int) -> dict[str, float]:
    """`_child` in a fresh process (after emptying and settling the database)."""
    import harness

    tables = ("jobs", "failed_jobs", "workers")
    return harness.measure_in_child(
        __file__, mode, url, tables, ["--jobs", str(jobs), "--single", str(single)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per bulk and drain")
    parser.add_argument("--single", type=int, default=2_000, help="jobs dispatched one by one")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode (median)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.url, args.jobs, args.single)))
        return

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness

    cluster = harness.Cluster.start()
    try:
        url = cluster.create_database("bench_tracing")
        subprocess.run(
            [str(harness.BIN_DIR / "pgqueue"), "migrate"],
            env=harness.worker_env(url),
            check=True,
            capture_output=True,
        )
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for round_number in range(1, args.rounds + 1):
            for mode in MODES:
                result = _measure(mode, url, args.jobs, args.single)
                runs[mode].append(result)
                print(f"round {round_number} {mode}: {json.dumps(result)}", file=sys.stderr)
    finally:
        cluster.stop()
    _report(runs, args.jobs, args.single, args.rounds)


def _report(runs: dict[str, list[dict[str, float]]], jobs: int, single: int, rounds: int) -> None:
    median = {
        mode: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for mode, results in runs.items()
    }
    off = median["off"]
    print(f"tracing cost: {jobs:,} no-op jobs, {single:,} single dispatches, median of {rounds}")
    print(
        f"{'mode':<5} {'drain jobs/s':>13} {'µs/job':>8} {'+µs':>7}"
        f" {'dispatch µs':>12} {'+µs':>7} {'bulk jobs/s':>12} {'+µs/job':>8}"
    )
    for mode, value in median.items():
        bulk_extra = (1 / value["bulk_per_second"] - 1 / off["bulk_per_second"]) * 1e6
        print(
            f"{mode:<5} {value['drain_per_second']:>13,.0f} {value['drain_us']:>8.1f}"
            f" {value['drain_us'] - off['drain_us']:>+7.1f}"
            f" {value['dispatch_us']:>12.1f} {value['dispatch_us'] - off['dispatch_us']:>+7.1f}"
            f" {value['bulk_per_second']:>12,.0f} {bulk_extra:>+8.2f}"
        )


if __name__ == "__main__":
    main()
