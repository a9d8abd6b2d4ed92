"""The CLI's habits against a real PostgreSQL: `pgqueue dispatch` and `pgqueue clear`, what
`failed flush` and `clear` do without a terminal to ask on (and with one), and `failed list` at
80 columns and piped."""

from __future__ import annotations

import os
import pty
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue.cli import _print_failed_table
from tests.cli_runner import REPO, one_error, run_pgqueue
from tests.integration.failed_rows import cli_env, ids_in, insert_failed

APP = """
from pathlib import Path

from pgqueue import Job


class WriteNote(Job):
    job_name = "notes.write"
    queue = "notes"

    path: str
    text: str

    async def handle(self) -> None:
        Path(self.path).write_text(self.text)
"""


@pytest.fixture
def app_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "notes_app.py").write_text(textwrap.dedent(APP))
    return {
        "PGQUEUE_DATABASE_URL": database_url,
        "PGQUEUE_IMPORTS": "notes_app",
        "PYTHONPATH": str(tmp_path),
    }


def _waiting(conn: psycopg.Connection[Any], queue: str) -> int:
    row = conn.execute("SELECT count(*) FROM pgqueue.jobs WHERE queue = %s", (queue,)).fetchone()
    assert row is not None
    return int(row[0])


def _run_on_a_terminal(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run `pgqueue ARGS` with a pseudo-terminal as stdin, type `answer`; exit code and output."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.Popen(
            [sys.executable, "-m", "pgqueue", *args],
            cwd=REPO,
            env=env,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.write(leader, f"{answer}\n".encode())
        output, _ = done.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    return done.returncode, output


# ---- pgqueue dispatch ----------------------------------------------------------------------


def test_a_dispatched_job_is_run_by_pgqueue_work(
    app_env: dict[str, str], conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    payload = f'{{"path": "{note}", "text": "hello from the shell"}}'
    dispatched = run_pgqueue(
        "dispatch", "notes.write", "--payload", payload, env=app_env, process=True
    )
    assert dispatched.exit_code == 0, dispatched.stderr
    job_id = int(dispatched.stdout.strip())
    assert conn.execute("SELECT queue FROM pgqueue.jobs WHERE id = %s", (job_id,)).fetchone() == (
        "notes",
    )
    worked = run_pgqueue("work", "--queue", "notes", "--stop-when-empty", env=app_env, process=True)
    assert worked.exit_code == 0, worked.stderr
    assert note.read_text() == "hello from the shell"
    assert _waiting(conn, "notes") == 0


def test_dispatch_takes_a_queue_and_a_delay(
    app_env: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    payload = '{"path": "/dev/null", "text": "later"}'
    args = ["dispatch", "notes.write", "--payload", payload, "--queue", "later", "--delay", "600"]
    result = run_pgqueue(*args, env=app_env, process=True)
    assert result.exit_code == 0, result.stderr
    row = conn.execute(
        "SELECT queue, run_at > now() + interval '590 seconds' FROM pgqueue.jobs WHERE id = %s",
        (int(result.stdout),),
    ).fetchone()
    assert row == ("later", True)


def test_dispatch_refuses_an_invalid_payload_in_one_line_and_writes_nothing(
    app_env: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    result = run_pgqueue(
        "dispatch", "notes.write", "--payload", '{"path": 1}', env=app_env, process=True
    )
    line = one_error(result, 2)
    assert "--payload for notes.write: 2 validation errors for WriteNote" in line
    assert "path: Input should be a valid string" in line
    assert "text: Field required" in line
    assert _waiting(conn, "notes") == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [("{nope", "--payload is not JSON"), ("[1, 2]", "--payload must be a JSON object")],
)
def test_dispatch_refuses_a_payload_that_is_not_a_json_object(
    app_env: dict[str, str], payload: str, message: str
) -> None:
    result = run_pgqueue("dispatch", "notes.write", "--payload", payload, env=app_env, process=True)
    assert message in one_error(result, 2)


def test_dispatch_of_an_unknown_type_suggests_the_close_one(app_env: dict[str, str]) -> None:
    result = run_pgqueue("dispatch", "notes.wrte", env=app_env, process=True)
    line = one_error(result, 2)
    assert "no job type named 'notes.wrte' in notes_app; did you mean 'notes.write'?" in line


# ---- pgqueue clear -------------------------------------------------------------------------


def _fill(conn: psycopg.Connection[Any], queue: str, waiting: int, leased: int = 0) -> None:
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, run_at)"
        " SELECT %s, 'notes.write', '{}', now() + (i %% 2) * interval '1 hour'"
        " FROM generate_series(1, %s) AS i",
        (queue, waiting),
    )
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, lease_token, lease_expires_at)"
        " SELECT %s, 'notes.write', '{}', gen_random_uuid(), now() + interval '30 seconds'"
        " FROM generate_series(1, %s)",
        (queue, leased),
    )


def test_clear_with_yes_deletes_waiting_jobs_and_leaves_running_ones(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _fill(conn, "emails", waiting=3, leased=1)  # ready and scheduled, and one running
    _fill(conn, "reports", waiting=2)
    result = run_pgqueue("clear", "emails", "--yes", env={"PGQUEUE_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "cleared 3 jobs from queue 'emails'; jobs running now were left to finish\n"
    )
    assert _waiting(conn, "emails") == 1
    assert _waiting(conn, "reports") == 2


def test_clear_without_yes_and_without_a_terminal_refuses_and_deletes_nothing(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    _fill(conn, "emails", waiting=2)
    result = run_pgqueue("clear", "emails", env={"PGQUEUE_DATABASE_URL": database_url})
    line = one_error(result, 2)
    assert "Delete the 2 jobs waiting in queue 'emails'? Not without --yes" in line
    assert _waiting(conn, "emails") == 2


@pytest.mark.parametrize(("answer", "left"), [("y", 0), ("n", 2)])
def test_clear_on_a_terminal_asks_first(
    database_url: str, conn: psycopg.Connection[Any], answer: str, left: int
) -> None:
    _fill(conn, "emails", waiting=2)
    code, output = _run_on_a_terminal(["clear", "emails"], cli_env(database_url), answer)
    assert "Delete the 2 jobs waiting in queue 'emails'? [y/N]" in output
    assert code == (0 if answer == "y" else 1), output
    assert _waiting(conn, "emails") == left


# ---- pgqueue failed flush ------------------------------------------------------------------


def test_flush_without_a_filter_refuses_without_yes_when_nobody_can_answer(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    kept = insert_failed(conn, count=2)
    result = run_pgqueue("failed", "flush", env={"PGQUEUE_DATABASE_URL": database_url})
    assert "Delete every failed job? Not without --yes" in one_error(result, 2)
    assert ids_in(conn, "failed_jobs") == kept
    result = run_pgqueue("failed", "flush", "--yes", env={"PGQUEUE_DATABASE_URL": database_url})
    assert (result.exit_code, result.stdout) == (0, "flushed 2 failed jobs\n"), result.stderr
    assert ids_in(conn, "failed_jobs") == []


def test_flush_on_a_terminal_asks_and_a_no_keeps_everything(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    kept = insert_failed(conn, count=2)
    code, output = _run_on_a_terminal(["failed", "flush"], cli_env(database_url), "n")
    assert "Delete every failed job? [y/N]" in output
    assert code == 1
    assert "nothing deleted" in output
    assert ids_in(conn, "failed_jobs") == kept


# ---- pgqueue failed list -------------------------------------------------------------------

LONG_TYPE = "mycompany.billing.jobs.invoices.GenerateMonthlyInvoicePdfAndEmailIt"
LONG_CLASS = "mycompany.billing.errors.InvoiceRendererTemporarilyUnavailableError"


def _failed_with_long_names(conn: psycopg.Connection[Any]) -> list[int]:
    ids = insert_failed(conn, job_type=LONG_TYPE, message="renderer said: " + "busy " * 40)
    conn.execute("UPDATE pgqueue.failed_jobs SET exception_class = %s", (LONG_CLASS,))
    return ids


def test_failed_list_piped_shows_whole_type_and_error_class(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    (job_id,) = _failed_with_long_names(conn)
    env = {k: v for k, v in cli_env(database_url).items() if k != "COLUMNS"}
    result = subprocess.run(  # stdout is a pipe, as in `pgqueue failed list | grep ...`
        [sys.executable, "-m", "pgqueue", "failed", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["id", "failed", "queue", "tries", "type", "error"]
    cells = row.split()
    assert cells[0] == str(job_id)
    assert cells[3:6] == ["default", "3/3", LONG_TYPE]
    assert row.endswith(f"  {LONG_CLASS}")  # no room left for the message: the class stays
    assert "\x1b" not in result.stdout  # no colours or boxes in a pipe


def test_failed_list_at_80_columns_cuts_only_the_message(
    conn: psycopg.Connection[Any], settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from pgqueue.failed import FailedJobs

    _failed_with_long_names(conn)
    insert_failed(conn, job_type="app.Short", message="smtp [421] try later")
    monkeypatch.setenv("COLUMNS", "80")
    _print_failed_table(FailedJobs(settings).list(), limit=50)
    lines = capsys.readouterr().out.splitlines()
    short = next(line for line in lines if "app.Short" in line)
    assert "  ValueError: smtp [421]" in short  # the class whole, the message cut to fit
    assert short.endswith("...")
    assert len(short) == 79
    long = next(line for line in lines if LONG_TYPE in line)
    assert LONG_CLASS in long  # kept whole, however wide the line gets
    assert "renderer said" not in long or long.endswith("...")


# ---- the worker's log: the start line's metrics URL, one line per outcome ------------------

STRICT_APP = """
import pydantic

from pgqueue import Job


class Reading(pydantic.BaseModel):
    celsius: float
    sensor: str


class CheckReading(Job):
    job_name = "readings.check"
    max_tries = 1

    async def handle(self) -> None:
        Reading.model_validate({"celsius": "warm"})
"""


def test_a_validation_error_outcome_is_one_log_line_and_the_start_line_names_the_metrics_url(
    database_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "readings_app.py").write_text(textwrap.dedent(STRICT_APP))
    env = {"PGQUEUE_DATABASE_URL": database_url, "PYTHONPATH": str(tmp_path)}
    dispatched = run_pgqueue(
        "dispatch", "readings.check", "--app", "readings_app", env=env, process=True
    )
    assert dispatched.exit_code == 0, dispatched.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["work", "--app", "readings_app", "--stop-when-empty", "--metrics-port", str(port)]
    result = run_pgqueue(*args, env=env, process=True)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    (started,) = [line for line in lines if " worker started " in line]
    assert f"metrics=http://127.0.0.1:{port}/metrics" in started
    (failed,) = [line for line in lines if " failed " in line and "readings.check" in line]
    assert (
        "error=pydantic_core._pydantic_core.ValidationError: 2 validation errors for Reading; "
        "celsius: Input should be a valid number, unable to parse string as a number; "
        "sensor: Field required" in failed
    )
    assert not any(line.lstrip().startswith(("celsius", "For further")) for line in lines)
    stored = conn.execute("SELECT exception_message FROM pgqueue.failed_jobs").fetchone()
    assert stored is not None
    assert "For further information visit" in stored[0]  # the full text is kept
