"""The management commands, the backend's options and what get_result() says of ids it has
nothing for."""

from __future__ import annotations

import datetime
from typing import Any

import psycopg
import pytest

from pgqueue import Job
from pgqueue.queue import AsyncQueue, Queue
from tests.django.conftest import use_database
from tests.django.django_project import manage


class Ping(Job):
    job_name = "tests.django.commands.Ping"

    def handle(self) -> None:
        pass


def test_pgqueue_migrate_creates_the_schema_in_the_backend_database(
    empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import call_command

    use_database(empty_database_url)
    call_command("pgqueue_migrate")

    assert "schema 'pgqueue' is at revision head" in capsys.readouterr().out
    with psycopg.connect(empty_database_url) as conn:
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'pgqueue'"
            )
        }
    assert {"jobs", "failed_jobs", "job_results", "queue_backlog"} <= tables


def test_pgqueue_work_help_lists_the_flags_of_pgqueue_work(database_url: str) -> None:
    shown = manage(database_url, "pgqueue_work", "--help").stdout

    for flag in ("--queue", "--concurrency", "--max-tries", "--stop-when-empty", "--database"):
        assert flag in shown


def test_pgqueue_work_refuses_a_bad_flag_in_one_line(database_url: str) -> None:
    completed = manage(database_url, "pgqueue_work", "--concurrency", "0", check=False)

    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("error:") and "--concurrency" in line


def test_a_second_backend_has_its_own_job_type_queue_and_options(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import build_report

    result = build_report.enqueue("weekly")
    assert conn.execute("SELECT job_type, queue, max_tries FROM pgqueue.jobs").fetchall() == [
        ("django.tasks:reports", "reports", 1)
    ]

    manage(django_db, "pgqueue_work", "--stop-when-empty")  # serves every backend's QUEUES
    result.refresh()

    assert result.backend == "reports"
    assert result.return_value == "report weekly"
    kept = conn.execute("SELECT keep_until - finished_at FROM pgqueue.job_results").fetchall()
    assert kept == [(datetime.timedelta(hours=2),)]


def test_get_result_of_an_id_it_has_nothing_for_raises_does_not_exist(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from pgqueue.contrib.django.compat import TaskResultDoesNotExist, task_backends

    backend = task_backends["default"]
    ping = Queue().dispatch(Ping(), conn=conn)  # a job, but no task of this backend

    for result_id in ("123456", "not-a-number", "-1", str(ping), "9" * 30):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(result_id)


def test_a_cancelled_task_is_failed_and_a_forgotten_one_is_gone(django_db: str) -> None:
    from shop.tasks import confirm_order

    from pgqueue.contrib.django.compat import TaskResultDoesNotExist
    from pgqueue.failed import FailedJobs

    result = confirm_order.enqueue(1)
    assert Queue().cancel(int(result.id), conn=_django_psycopg())

    result.refresh()
    assert result.status == "FAILED"
    assert result.errors[0].exception_class_path == "pgqueue.errors.JobCancelledError"

    FailedJobs().forget([int(result.id)], conn=_django_psycopg())
    with pytest.raises(TaskResultDoesNotExist):
        result.refresh()


async def test_aenqueue_and_arefresh_work_from_async_code(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from asgiref.sync import sync_to_async
    from django.db import connections
    from shop.tasks import email_receipt

    try:
        result = await email_receipt.aenqueue(8)
        await result.arefresh()
    finally:  # aenqueue ran in Django's sync thread, on a connection of that thread's own
        await sync_to_async(connections.close_all)()

    assert result.status == "READY"
    assert conn.execute("SELECT queue FROM pgqueue.jobs").fetchall() == [("emails",)]


async def test_async_queue_refuses_django_connection_naming_queue(django_db: str) -> None:
    from django.db import connection

    from pgqueue.errors import UnsupportedConnectionError

    with pytest.raises(UnsupportedConnectionError, match="is blocking: use Queue"):
        await AsyncQueue().dispatch(Ping(), conn=connection)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"KEEP_RESULT": "soon"}, "keep_result must be"),
        ({"MAX_TRIES": 0}, "max_tries must be"),
        ({"TIMEOUT": -1}, "timeout must be"),
        ({"RETRIES": 3}, "unknown key(s) ['RETRIES']"),
    ],
)
def test_bad_backend_options_are_refused_naming_them(options: dict[str, Any], message: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from pgqueue.contrib.django.backend import PgQueueBackend

    with pytest.raises(ImproperlyConfigured, match=r"TASKS\['broken'\]") as raised:
        PgQueueBackend("broken", {"OPTIONS": options})
    assert message in str(raised.value)


def _django_psycopg() -> psycopg.Connection[Any]:
    from pgqueue.contrib.django.database import psycopg_connection

    return psycopg_connection("default")


def test_a_task_a_worker_holds_is_running_since_its_claim(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import confirm_order

    result = confirm_order.enqueue(1)
    (claimed_at,) = (
        conn.execute(
            "UPDATE pgqueue.jobs SET lease_token = gen_random_uuid(), lease_expires_at = now() + "
            "interval '1 minute', claimed_at = now(), attempts = 1 RETURNING claimed_at"
        ).fetchone()
        or ()
    )

    result.refresh()

    assert result.status == "RUNNING"
    assert (result.started_at, result.last_attempted_at) == (claimed_at, claimed_at)
    assert result.attempts == 1
    assert not result.is_finished
