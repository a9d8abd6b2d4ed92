"""Job types for the results acceptance tests (`--app tests.acceptance.results_jobs`): kept
results from `def handle` (run in the worker's child processes) and `async def handle`, progress
reported from a child process, and a result that cannot be kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pgqueue import Job


class Thumbnail(Job):
    """A blocking job whose return value is kept."""

    job_name = "results.Thumbnail"
    queue = "results"
    keep_result = "1h"

    width: int

    def handle(self) -> dict[str, object]:
        return {"width": self.width, "height": self.width // 2, "pid_side": "child"}


class Summarise(Job):
    """An async job whose return value is kept."""

    job_name = "results.Summarise"
    queue = "results"
    keep_result = 600

    words: list[str]

    async def handle(self) -> dict[str, int]:
        await asyncio.sleep(0)
        return {word: len(word) for word in self.words}


class Crunch(Job):
    """A blocking job that reports its progress, then waits for `release` to exist."""

    job_name = "results.Crunch"
    queue = "results"
    keep_result = "10m"
    timeout = 120

    release: str

    def handle(self) -> str:
        for done in range(1, 61):
            self.progress(done / 100, f"{done} of 100 chunks")
        while not Path(self.release).exists():
            time.sleep(0.05)
        self.progress(1.0, "100 of 100 chunks")
        return "crunched"


class ReturnsASet(Job):
    """A blocking job whose value JSON has no room for: it fails at once, on its first try."""

    job_name = "results.ReturnsASet"
    queue = "results"
    keep_result = "1h"
    max_tries = 3

    def handle(self) -> object:
        return {object()}
