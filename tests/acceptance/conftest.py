"""Fixtures for acceptance tests: a ledger table and real `pgqueue work` subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute(
        "CREATE TABLE ledger (job_id bigint, attempt int, event text, pid int, "
        "at timestamptz DEFAULT clock_timestamp())"
    )
    return conn


class WorkerProcess(subprocess.Popen[str]):
    """A `pgqueue work` subprocess whose output goes to files, so a chatty worker never blocks on
    a full pipe; `communicate()` returns what it wrote."""

    def __init__(self, args: list[str], log_dir: Path, **kwargs: Any) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self._out_path = log_dir / f"worker-{len(list(log_dir.iterdir()))}.out"
        self._err_path = self._out_path.with_suffix(".err")
        with open(self._out_path, "w") as out, open(self._err_path, "w") as err:
            super().__init__(args, stdout=out, stderr=err, text=True, **kwargs)

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str, str]:
        self.wait(timeout=timeout)
        return self._out_path.read_text(), self._err_path.read_text()


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(*flags: str, env: dict[str, str] | None = None, **popen: Any) -> WorkerProcess:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
        environment.update({"PGQUEUE_DATABASE_URL": database_url, **(env or {})})
        process = WorkerProcess(
            [sys.executable, "-m", "pgqueue", "work", "--app", "tests.acceptance.jobs", *flags],
            tmp_path / "workers",
            cwd=REPO,
            env=environment,
            **popen,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
