"""The PgQueuer factory for the benchmark (`pgq run pgqueuer_app:main`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
import probe
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """One asyncpg connection, as PgQueuer's quick start does, and two entrypoints."""
    connection = await asyncpg.connect(os.environ["BENCH_DATABASE_URL"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        """Nothing to do."""

    @pgq.entrypoint("ping")
    async def ping(job: Job) -> None:
        probe.report(int(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await connection.close()
