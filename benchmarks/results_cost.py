"""What keep_result and progress cost per job: an in-process drain of no-op jobs of a plain type,
of the same type calling `self.progress()`, and of a type with `keep_result`, side by side on one
PostgreSQL cluster (fsync and synchronous_commit on, as the main benchmark).

- `plain`: `async def handle` that returns None: acknowledged by the claims (`claim_jobs`);
- `progress`: the same, calling `self.progress(0.5, "half")` once (written by the next heartbeat,
  if the job is still running then; a no-op job rarely is, so this is the call's own cost);
- `kept`: `keep_result = "1h"`, returning a small dict: encoded as JSON in the attempt, completed
  by `complete_kept_jobs` (moved to job_results, one statement per round trip's batch, a NOTIFY
  per job) instead of by the claim.

Each measurement runs in a process of its own: `--jobs` jobs enqueued with `Queue.bulk`, then
drained by an in-process `pgqueue.Worker` (concurrency 50), timed from the start of `Worker.run`
to its return on the empty queue. The modes are interleaved round by round; the median of
`--rounds` is printed, with the cost per job against `plain`.

    python benchmarks/results_cost.py                    # 20,000 jobs, 3 rounds
    python benchmarks/results_cost.py --jobs 5000 --rounds 1
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

MODES = ("plain", "progress", "kept")
BULK_BATCH = 10_000


def _child(mode: str, url: str, jobs: int) -> dict[str, float]:
    """One drain in this process, in `mode`; returns its timing."""
    from pydantic import SecretStr

    from pgqueue import Job, Queue, Settings
    from pgqueue.worker import Worker, WorkerOptions

    # Only the class measured is defined, so `plain` also runs against a pgqueue without results.
    job_class: type[Job]
    if mode == "plain":

        class Plain(Job):
            job_name = "bench.results.plain"
            n: int = 0

            async def handle(self) -> None:
                """Nothing to do: what is measured is the queue."""

        job_class = Plain
    elif mode == "progress":

        class Progress(Job):
            job_name = "bench.results.progress"
            n: int = 0

            async def handle(self) -> None:
                self.progress(0.5, "half")

        job_class = Progress
    else:

        class Kept(Job):
            job_name = "bench.results.kept"
            keep_result = "1h"
            n: int = 0

            async def handle(self) -> dict[str, int]:
                return {"n": self.n}

        job_class = Kept
    settings = Settings(database_url=SecretStr(url))
    with Queue(settings) as queue:
        for start in range(0, jobs, BULK_BATCH):
            queue.bulk([job_class(n=n) for n in range(start, min(start + BULK_BATCH, jobs))])
    options = WorkerOptions(queues=("default",), stop_when_empty=True, sleep=0.05, grace=0)
    worker = Worker(settings, options)
    started = time.perf_counter()
    asyncio.run(worker.run())
    seconds = time.perf_counter() - started
    if worker.summary.completed != jobs:
        raise SystemExit(f"{mode}: {worker.summary.completed} of {jobs} jobs completed")
    return {"per_second": jobs / seconds, "us_per_job": seconds / jobs * 1e6}


def _measure(mode: str, url: str, jobs: int) -> dict[str, float]:
    """`_child` in a fresh process (after emptying and settling the database)."""
    import harness

    tables = ("jobs", "job_results", "workers")
    return harness.measure_in_child(__file__, mode, url, tables, ["--jobs", str(jobs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode (median)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.url, args.jobs)))
        return

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness

    cluster = harness.Cluster.start()
    try:
        url = cluster.create_database("bench_results")
        subprocess.run(
            [str(harness.BIN_DIR / "pgqueue"), "migrate"],
            env=harness.worker_env(url),
            check=True,
            capture_output=True,
        )
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for round_number in range(1, args.rounds + 1):
            for mode in MODES:
                result = _measure(mode, url, args.jobs)
                runs[mode].append(result)
                print(f"round {round_number} {mode}: {json.dumps(result)}", file=sys.stderr)
    finally:
        cluster.stop()
    median = {
        mode: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for mode, results in runs.items()
    }
    plain = median["plain"]
    print(f"results cost: {args.jobs:,} no-op jobs drained in process, median of {args.rounds}")
    print(f"{'mode':<9} {'jobs/s':>9} {'µs/job':>8} {'+µs':>7} {'of plain':>9}")
    for mode, value in median.items():
        print(
            f"{mode:<9} {value['per_second']:>9,.0f} {value['us_per_job']:>8.1f}"
            f" {value['us_per_job'] - plain['us_per_job']:>+7.1f}"
            f" {value['per_second'] / plain['per_second']:>9.0%}"
        )


if __name__ == "__main__":
    main()
