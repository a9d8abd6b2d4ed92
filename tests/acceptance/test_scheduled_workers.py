"""Periodic jobs in real `pgqueue work` processes: registered at start, and three workers that
find missed fire times enqueue one catch-up job between them, which runs like any other."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tests.acceptance.helpers import count, wait_for
from tests.cli_runner import REPO, run_pgqueue

APP = ("--app", "tests.acceptance.scheduled_jobs", "--queue", "scheduled")
NAME = "acceptance.NewYear"  # tests.acceptance.scheduled_jobs.NewYear, not imported here


def test_a_worker_registers_its_schedules_when_it_starts(
    database_url: str, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    worker = start_worker(*APP)
    wait_for(lambda: count(ledger, "SELECT count(*) FROM pgqueue.schedules") == 1)
    run = run_pgqueue("schedules", "--json", env={"PGQUEUE_DATABASE_URL": database_url})
    listed = json.loads(run.stdout)
    year = datetime.now(UTC).year
    assert listed["name"] == NAME
    assert listed["defined_by"] == "tests.acceptance.scheduled_jobs"
    assert (listed["last_fire_at"], listed["paused"], listed["defined"]) == (None, False, True)
    assert listed["next_fire_at"] == f"{year + 1}-01-01T00:00:00+00:00"
    worker.terminate()
    assert worker.wait(timeout=30) == 0
    assert count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0


def test_three_workers_catch_up_missed_fire_times_with_one_job(
    ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    # Registered three years ago by a worker that then stopped: three fire times were missed.
    ledger.execute(
        "INSERT INTO pgqueue.schedules (name, expression, timezone, job_type, queue, defined_by,"
        " next_fire_at) VALUES (%s, '0 0 1 1 *', 'UTC', %s, 'scheduled',"
        " 'tests.acceptance.scheduled_jobs', date_trunc('year', now()) - interval '2 years')",
        (NAME, NAME),
    )
    workers = [start_worker(*APP) for _ in range(3)]
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") >= 1)
    # Every worker registered the schedule, and checked it again after the fire.
    wait_for(lambda: all("schedules registered" in _stderr(worker) for worker in workers))
    checked = "SELECT count(*) FROM pgqueue.schedules WHERE seen_at > last_fire_at + interval '1 s'"
    wait_for(lambda: count(ledger, checked) == 1)
    for worker in workers:
        worker.terminate()
    logs = [worker.communicate(timeout=30)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0]
    assert count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 1
    assert sum(log.count("schedule fired") for log in logs) == 1, logs
    assert sum(log.count("schedules registered") for log in logs) == 3, logs
    last, upcoming, this_year = ledger.execute(
        "SELECT last_fire_at, next_fire_at, date_trunc('year', now()) FROM pgqueue.schedules"
    ).fetchone() or (None, None, None)
    assert last == this_year  # the latest missed fire time, once
    assert upcoming == this_year.replace(year=this_year.year + 1)


def test_an_invalid_schedule_stops_the_worker_at_import_naming_it(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "badschedule.py").write_text(
        "from pgqueue import Job\n\n\n"
        "class Report(Job):\n"
        "    job_name = 'reports.daily'\n"
        "    schedule = '0 25 * * *'\n\n"
        "    def handle(self) -> None:\n"
        "        pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue", "work", "--app", "badschedule"],
        cwd=tmp_path,
        env={
            "PGQUEUE_DATABASE_URL": database_url,
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "schedule 'reports.daily'" in lines[0]
    assert "invalid cron expression '0 25 * * *'" in lines[0]


def _stderr(worker: Any) -> str:
    """What a running worker has logged so far."""
    return Path(worker._err_path).read_text()
