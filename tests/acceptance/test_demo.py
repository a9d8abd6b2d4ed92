"""`pgqueue demo`, the README's first command, runs end to end on a real PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import psycopg

from tests.acceptance.conftest import REPO
from tests.cli_runner import run_pgqueue


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


def test_a_small_demo_run_twice_reports_its_own_jobs_and_no_log_line_in_the_progress(
    database_url: str,
) -> None:
    for _ in range(2):  # the second run finds the first one's failed jobs in the schema
        run = run_pgqueue(
            "demo", "--jobs", "10", env={"PGQUEUE_DATABASE_URL": database_url}, process=True
        )
        assert run.exit_code == 0, run.stderr
        assert run.stderr == ""  # no log line anywhere, the worker's failures included
        lines = run.stdout.splitlines()
        dispatched = next(i for i, line in enumerate(lines) if line.startswith("dispatched"))
        assert lines[dispatched].startswith("dispatched 10 jobs")
        # Between the dispatch line and the results: the two progress bars, nothing else.
        results = next(i for i, line in enumerate(lines) if "Per queue" in line)
        progress = lines[dispatched + 1 : results]
        assert [line.split()[0] for line in progress] == ["images", "emails"], progress
        rows = [
            [int(cell) for cell in re.findall(r"\d+", line)]
            for line in lines
            if line.startswith(("│ images", "│ emails"))
        ]
        assert sum(row[0] for row in rows) == 10  # dispatched
        assert sum(row[1] + row[2] + row[3] for row in rows) == 10  # completed, failed, left
        summary = re.search(r": (\d+) completed, \d+ retried, (\d+) failed", run.stdout)
        assert summary is not None, run.stdout
        completed, failed = int(summary.group(1)), int(summary.group(2))
        assert completed + failed == 10
        assert failed > 0  # even a run this small shows a failure
        assert "pgqueue failed list --schema pgqueue_demo" in run.stdout
        assert 'psql "$PGQUEUE_DATABASE_URL"' in run.stdout
