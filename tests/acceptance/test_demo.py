"""`pgqueue demo`, the README's first command, runs end to end on a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psycopg

from tests.acceptance.conftest import REPO


def test_demo_works_its_sample_jobs_and_reports_failures(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env["PGQUEUE_DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue", "demo", "--jobs", "600"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "failed_jobs" in result.stdout
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM pgqueue_demo.jobs), "
        "(SELECT count(*) FROM pgqueue_demo.failed_jobs)"
    ).fetchone()
    assert counts is not None
    left, failed = counts
    assert left == 0
    assert failed > 0  # some sample jobs always fail or time out, by design
