"""The benchmark's no-op job type with a class concurrency limit that never holds a job back
(`pgqueue work --app pgqueue_limited_jobs`): what the limited claim costs by itself."""

from __future__ import annotations

from pgqueue import Job


class LimitedNoop(Job):
    """Does nothing, under a limit of 10,000 running at once across all workers."""

    job_name = "bench.noop"  # the rows the benchmark seeds
    concurrency = 10_000

    n: int = 0

    async def handle(self) -> None:
        """Nothing to do."""
