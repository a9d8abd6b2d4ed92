"""Every example under examples/ runs as its docstring says, against a real PostgreSQL: the example
itself (`python -m examples.NAME`, or FastAPI's test client), then a real `pgqueue work` process for
the jobs it dispatched, whose effect on the example's rows is checked.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]


def _environment(database_url: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    environment["PGQUEUE_DATABASE_URL"] = database_url
    return environment


def docstring_command(module: str, program: str) -> list[str]:
    """The arguments of the `PROGRAM ...` line in the example's docstring: how it says to run it."""
    source = (REPO / "examples" / f"{module}.py").read_text()
    docstring = ast.get_docstring(ast.parse(source)) or ""
    for line in docstring.splitlines():
        if line.split()[:1] == [program]:
            return shlex.split(line, comments=True)[1:]
    raise AssertionError(f"examples/{module}.py does not say how to run {program}")


def run_example(module: str, database_url: str) -> str:
    """The example's `python ...` line, from the repository root; returns what it printed."""
    arguments = docstring_command(module, "python")
    assert arguments == ["-m", f"examples.{module}"]
    result = subprocess.run(
        [sys.executable, *arguments],
        cwd=REPO,
        env=_environment(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def worker_queue(module: str) -> str:
    arguments = docstring_command(module, "pgqueue")
    return arguments[arguments.index("--queue") + 1]


def run_worker(module: str, database_url: str) -> None:
    """The example's `pgqueue work ...` line, which ends once no job is left."""
    arguments = docstring_command(module, "pgqueue")
    assert arguments[:3] == ["work", "--app", f"examples.{module}"]
    assert "--stop-when-empty" in arguments
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue", *arguments],
        cwd=REPO,
        env=_environment(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # A line per completed job is DEBUG; the stop line counts them.
    assert re.search(r"worker stopped .*completed=[1-9]", result.stderr), result.stderr


def _jobs(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT job_type, queue, payload FROM pgqueue.jobs ORDER BY id").fetchall()


def _failed(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgqueue.failed_jobs").fetchone()
    assert row is not None
    return int(row[0])


ORDER_EXAMPLES = ["psycopg_sync", "psycopg_async", "sqlalchemy_sync", "sqlalchemy_async"]


@pytest.mark.slow
@pytest.mark.parametrize("module", ORDER_EXAMPLES)
def test_order_example_commits_order_and_job_together_and_a_worker_sends_the_receipt(
    module: str, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    queue = worker_queue(module)
    output = run_example(module, database_url)

    orders = conn.execute("SELECT id, item, receipt_sent FROM orders ORDER BY id").fetchall()
    assert [(item, sent) for _, item, sent in orders] == [("book", False)]  # the lamp rolled back
    order_id = orders[0][0]
    assert _jobs(conn) == [(f"examples.{module}.SendReceipt", queue, {"order_id": order_id})]
    assert f"jobs waiting in {queue!r}: 1" in output

    run_worker(module, database_url)
    assert conn.execute("SELECT receipt_sent FROM orders").fetchall() == [(True,)]
    assert _jobs(conn) == []
    assert _failed(conn) == 0


@pytest.mark.slow
def test_django_example_dispatches_inside_atomic_and_a_worker_emails_the_invoice(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    queue = worker_queue("django_app")
    output = run_example("django_app", database_url)

    invoices = conn.execute("SELECT id, customer, emailed FROM billing_invoice").fetchall()
    assert [(customer, emailed) for _, customer, emailed in invoices] == [("Ada", False)]
    invoice_id = invoices[0][0]
    assert _jobs(conn) == [("examples.django_app.EmailInvoice", queue, {"invoice_id": invoice_id})]
    assert f"jobs waiting in {queue!r}: 1" in output

    run_worker("django_app", database_url)
    assert conn.execute("SELECT emailed FROM billing_invoice").fetchall() == [(True,)]
    assert _jobs(conn) == []
    assert _failed(conn) == 0


@pytest.fixture
def fastapi_client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example app behind FastAPI's test client, with its lifespan (pool, queue) running."""
    for name in list(os.environ):
        if name.startswith("PGQUEUE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PGQUEUE_DATABASE_URL", database_url)
    from examples.fastapi_app import app

    with TestClient(app) as client:
        yield client


@pytest.mark.slow
def test_fastapi_signup_writes_the_user_and_its_job_and_a_worker_welcomes_them(
    fastapi_client: TestClient, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    response = fastapi_client.post("/signups", json={"email": "ada@example.com"})

    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    assert conn.execute("SELECT id, welcomed FROM users").fetchall() == [(user_id, False)]
    assert _jobs(conn) == [
        ("examples.fastapi_app.SendWelcomeEmail", worker_queue("fastapi_app"), {"user_id": user_id})
    ]

    run_worker("fastapi_app", database_url)
    assert conn.execute("SELECT welcomed FROM users").fetchall() == [(True,)]
    assert _jobs(conn) == []
    assert _failed(conn) == 0


def test_fastapi_failed_signup_rolls_back_and_dispatches_nothing(
    fastapi_client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    assert fastapi_client.post("/signups", json={"email": "ada@example.com"}).status_code == 201

    response = fastapi_client.post("/signups", json={"email": "ada@example.com"})

    assert response.status_code == 409
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
    assert len(_jobs(conn)) == 1


@pytest.fixture
def fastapi_worker_client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The in-process worker example behind FastAPI's test client, its lifespan (and so its
    worker) running while the test does; the host's signal handlers must be as they were."""
    for name in list(os.environ):
        if name.startswith("PGQUEUE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PGQUEUE_DATABASE_URL", database_url)
    from examples.fastapi_worker import app

    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    with TestClient(app) as client:
        yield client
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers


def test_fastapi_lifespan_worker_runs_the_report_and_the_app_reads_its_result(
    fastapi_worker_client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    response = fastapi_worker_client.post("/reports", json={"rows": 30})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    seen = []
    for _ in range(500):  # the worker in the app's lifespan runs it meanwhile: 30 rows, ~0.3 s
        report = fastapi_worker_client.get(f"/reports/{job_id}").json()
        seen.append(report["state"])
        if report["state"] == "completed":
            break
        time.sleep(0.02)
    assert report == {
        "state": "completed",
        "progress": None,
        "message": None,
        "result": {"rows": 30},
        "error": None,
    }
    assert set(seen) <= {"queued", "running", "completed"}
    assert fastapi_worker_client.get("/reports/999999").status_code == 404
    assert conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone() == (1,)


def test_fastapi_lifespan_worker_stops_with_the_app(
    database_url: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("PGQUEUE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PGQUEUE_DATABASE_URL", database_url)
    from examples.fastapi_worker import app

    with TestClient(app):
        assert conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone() == (0,)
