"""The procrastinate app for the benchmark (`procrastinate --app procrastinate_app.app worker`)."""

from __future__ import annotations

import os

import probe
import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_DATABASE_URL", ""))
)


@app.task(name="noop")
async def noop(n: int = 0) -> None:
    """Does nothing."""


@app.task(name="ping")
async def ping(seq: int) -> None:
    """Reports when it started, for the wake-up latency."""
    probe.report(seq)
