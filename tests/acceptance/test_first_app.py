"""A newcomer's first hour: an app in a fresh directory, run the way its README says.

The worker is the installed `pgqueue` console script, started in the app's directory with no
PYTHONPATH and no --queue: `--app myapp.jobs` is imported from the current directory (as `python -m`
would), and the queues its job types declare are served.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.acceptance.helpers import count
from tests.cli_runner import one_error, run_pgqueue

JOBS = """\
import os

from pgqueue import Job


class SendWelcome(Job):
    queue = "emails"

    user_id: int

    async def handle(self) -> None:
        with open("outbox.txt", "a") as out:
            out.write(f"welcome {self.user_id} {os.getpid()}\\n")


class RenderReport(Job):
    queue = "reports"

    report_id: int

    def handle(self) -> None:  # blocking: runs in a process of its own
        with open("outbox.txt", "a") as out:
            out.write(f"report {self.report_id} {os.getpid()}\\n")
"""

DISPATCH = """\
import sys

from pgqueue import Queue

from myapp.jobs import RenderReport, SendWelcome

with Queue() as queue:
    queue.bulk([SendWelcome(user_id=n) for n in range(int(sys.argv[1]))])
    queue.bulk([RenderReport(report_id=n) for n in range(int(sys.argv[2]))])
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh directory holding `myapp/` and a dispatch script, and no PYTHONPATH anywhere."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    root = tmp_path / "first-app"
    (root / "myapp").mkdir(parents=True)
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "jobs.py").write_text(JOBS)
    (root / "dispatch.py").write_text(DISPATCH)
    return root


def _dispatch(app: Path, database_url: str, welcomes: int, reports: int = 0) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    environment["PGQUEUE_DATABASE_URL"] = database_url
    subprocess.run(
        [sys.executable, "dispatch.py", str(welcomes), str(reports)],
        cwd=app,
        env=environment,
        check=True,
        timeout=60,
    )


def _outbox(app: Path) -> list[tuple[str, int, int]]:
    """(kind, id, pid) of each job that ran."""
    lines = (app / "outbox.txt").read_text().splitlines()
    return [(kind, int(n), int(pid)) for kind, n, pid in (line.split() for line in lines)]


def _left(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    return (
        count(conn, "SELECT count(*) FROM pgqueue.jobs"),
        count(conn, "SELECT count(*) FROM pgqueue.failed_jobs"),
    )


@pytest.mark.parametrize("given", ["--app", "PGQUEUE_IMPORTS"])
def test_an_app_beside_the_worker_runs_without_pythonpath_or_queue(
    app: Path, database_url: str, conn: psycopg.Connection[Any], given: str
) -> None:
    _dispatch(app, database_url, welcomes=3)
    env = {"PGQUEUE_DATABASE_URL": database_url}
    flags = ["--app", "myapp.jobs"] if given == "--app" else []
    if given == "PGQUEUE_IMPORTS":
        env["PGQUEUE_IMPORTS"] = "myapp.jobs"
    run = run_pgqueue("work", *flags, "--stop-when-empty", env=env, script=True, cwd=app)
    assert run.exit_code == 0, run.stderr
    assert sorted(n for kind, n, _ in _outbox(app) if kind == "welcome") == [0, 1, 2]
    assert _left(conn) == (0, 0)


def test_a_blocking_job_of_such_an_app_runs_in_its_own_process(
    app: Path, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _dispatch(app, database_url, welcomes=1, reports=2)
    run = run_pgqueue(
        "work",
        "--app",
        "myapp.jobs",
        "--stop-when-empty",
        env={"PGQUEUE_DATABASE_URL": database_url},
        script=True,
        cwd=app,
    )
    assert run.exit_code == 0, run.stderr
    ran = _outbox(app)
    reports = [pid for kind, _, pid in ran if kind == "report"]
    (worker_pid,) = {pid for kind, _, pid in ran if kind == "welcome"}
    assert len(reports) == 2
    assert worker_pid not in reports  # a spawned child imported myapp.jobs from the directory too
    assert _left(conn) == (0, 0)


def test_processes_children_import_the_app_from_the_same_directory(
    app: Path, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _dispatch(app, database_url, welcomes=8, reports=2)
    run = run_pgqueue(
        "work",
        "--app",
        "myapp.jobs",
        "--stop-when-empty",
        "--processes",
        "2",
        env={"PGQUEUE_DATABASE_URL": database_url},
        script=True,
        cwd=app,
        timeout=120,
    )
    assert run.exit_code == 0, run.stderr
    ran = _outbox(app)
    assert sorted(n for kind, n, _ in ran if kind == "welcome") == list(range(8))
    assert sorted(n for kind, n, _ in ran if kind == "report") == [0, 1]
    assert run.stderr.count("worker started") == 2  # one line per child
    assert _left(conn) == (0, 0)


def test_the_start_line_names_the_queues_the_job_types_and_the_masked_database(
    app: Path, database_url: str
) -> None:
    params = conninfo_to_dict(database_url)
    params.setdefault("password", "first-app-s3cret")  # the test cluster trusts local logins
    url = make_conninfo(**params)
    run = run_pgqueue(
        "work",
        "--app",
        "myapp.jobs",
        "--stop-when-empty",
        "--log-format",
        "json",
        env={"PGQUEUE_DATABASE_URL": url},
        script=True,
        cwd=app,
    )
    assert run.exit_code == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    (started,) = [line for line in lines if line["message"] == "worker started"]
    assert started["queues"] == "emails,reports,default"  # as declared, then default
    assert started["job_types"] == "myapp.jobs.SendWelcome,myapp.jobs.RenderReport"
    assert started["schema"] == "pgqueue"
    assert "***" in started["database"]
    assert str(params["password"]) not in run.stderr


def test_an_explicit_queue_wins_over_the_declared_queues(
    app: Path, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _dispatch(app, database_url, welcomes=2, reports=1)
    run = run_pgqueue(
        "work",
        "--app",
        "myapp.jobs",
        "--queue",
        "reports",
        "--stop-when-empty",
        env={"PGQUEUE_DATABASE_URL": database_url},
        script=True,
        cwd=app,
    )
    assert run.exit_code == 0, run.stderr
    assert [kind for kind, _, _ in _outbox(app)] == ["report"]
    assert _left(conn) == (2, 0)  # the welcomes wait on "emails" for a worker that serves it


@pytest.mark.parametrize(
    ("module", "says"),
    [
        (
            "myapp.jobs",
            "No module named 'myapp' in the current directory ({cwd}) or on sys.path: "
            "run pgqueue from the directory that holds myapp/",
        ),
        ("myapp/jobs.py", "give a module name, not a file: 'myapp.jobs'"),
    ],
    ids=["no-such-package", "a-file-path"],
)
def test_a_module_that_is_not_there_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, says: str
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    run = run_pgqueue(
        "work",
        "--app",
        module,
        env={"PGQUEUE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        script=True,
        cwd=tmp_path,
    )
    line = one_error(run, 1)
    assert line.startswith(f"error: cannot import --app module {module!r}: ")
    assert says.format(cwd=tmp_path) in line


def test_a_misspelt_module_of_a_package_found_here_names_the_package(app: Path) -> None:
    run = run_pgqueue(
        "work",
        "--app",
        "myapp.job",
        env={"PGQUEUE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        script=True,
        cwd=app,
    )
    line = one_error(run, 1)
    assert f"package 'myapp' ({app / 'myapp'}) has no module 'job': check the name" in line


def test_work_without_an_app_is_a_usage_error_saying_how_to_give_one(tmp_path: Path) -> None:
    run = run_pgqueue("work", env={}, script=True, cwd=tmp_path)
    line = one_error(run, 2)
    assert "pass --app myapp.jobs" in line
    assert "PGQUEUE_IMPORTS" in line
