"""pgqueue job types for the benchmark (`pgqueue work --app pgqueue_jobs`)."""

from __future__ import annotations

import probe

from pgqueue import Job


class Noop(Job):
    """Does nothing: what is measured is the queue, not the work."""

    job_name = "bench.noop"

    n: int = 0

    async def handle(self) -> None:
        """Nothing to do."""


class Ping(Job):
    """Reports when it started, for the wake-up latency."""

    job_name = "bench.ping"

    seq: int

    async def handle(self) -> None:
        probe.report(self.seq)
