"""`manage.py pgqueue_work` as a real process running the project's tasks, and `get_result()` /
`refresh()` reading what became of them."""

from __future__ import annotations

import datetime
import json
from typing import Any

import psycopg
import pytest

from tests.django.django_project import manage


def work(database_url: str, *flags: str) -> str:
    """Drain the queues with a real worker; its stderr (the log)."""
    return manage(database_url, "pgqueue_work", "--stop-when-empty", *flags).stderr


def failed(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT payload->>'task', exception_class, exception_message FROM pgqueue.failed_jobs "
        "ORDER BY id"
    ).fetchall()


def test_worker_runs_the_task_and_refresh_shows_its_return_value(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.models import Order
    from shop.tasks import confirm_order

    order = Order.objects.create(customer="Ada")
    result = confirm_order.enqueue(order.pk)

    work(django_db)
    result.refresh()

    order.refresh_from_db()
    assert order.confirmed
    assert result.status == "SUCCESSFUL"
    assert result.return_value == {"order": order.pk, "customer": "Ada"}
    assert result.attempts == 1
    assert result.started_at is not None
    assert result.finished_at is not None and result.finished_at >= result.started_at
    assert failed(conn) == []


def test_get_result_rebuilds_the_result_of_a_completed_task(django_db: str) -> None:
    from shop.tasks import email_receipt

    enqueued = email_receipt.enqueue(5, subject="Thanks")

    work(django_db)
    result = email_receipt.get_result(enqueued.id)

    assert result.status == "SUCCESSFUL"
    assert result.return_value == "Thanks for order 5"
    assert (result.args, result.kwargs) == ([5], {"subject": "Thanks"})
    assert result.task is email_receipt
    assert result.enqueued_at is not None and result.finished_at is not None


def test_a_failed_task_shows_failed_with_its_error_and_traceback(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import PaymentDeclinedError, charge_card

    result = charge_card.enqueue(9)

    work(django_db, "--max-tries", "1")
    result.refresh()

    assert result.status == "FAILED"
    assert result.is_finished
    (error,) = result.errors
    assert error.exception_class is PaymentDeclinedError
    assert "card declined for order 9" in error.traceback
    assert 'raise PaymentDeclinedError(f"card declined' in error.traceback  # the whole traceback
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert failed(conn) == [
        ("shop.tasks.charge_card", "shop.tasks.PaymentDeclinedError", "card declined for order 9")
    ]


def test_a_task_waiting_for_its_retry_is_ready_with_the_last_error(django_db: str) -> None:
    from shop.tasks import charge_card

    result = charge_card.enqueue(4)

    work(django_db, "--max-time", "5")  # 3 tries by default: the first fails, the retry waits
    result.refresh()

    assert result.status == "READY"
    assert result.attempts == 1
    (error,) = result.errors
    assert error.exception_class_path == "shop.tasks.PaymentDeclinedError"


def test_an_async_task_runs_on_the_worker(django_db: str) -> None:
    from shop.models import Order
    from shop.tasks import async_total

    Order.objects.create(customer="Ada")
    result = async_total.enqueue([1, 2])

    work(django_db)
    result.refresh()

    assert result.status == "SUCCESSFUL"
    assert result.return_value == 4  # 1 + 2 and the one order, counted by the async ORM


def test_a_task_taking_context_gets_its_result_and_attempt(django_db: str) -> None:
    from shop.tasks import which_attempt

    result = which_attempt.enqueue("first")

    work(django_db)
    result.refresh()

    assert result.return_value == {"label": "first", "attempt": 1, "id": result.id}


def test_a_return_value_that_is_not_json_fails_the_task(django_db: str) -> None:
    from shop.tasks import unserialisable_result

    result = unserialisable_result.enqueue()

    work(django_db, "--max-tries", "1")
    result.refresh()

    assert result.status == "FAILED"
    assert result.errors[0].exception_class is TypeError


def test_higher_django_priority_runs_first(django_db: str) -> None:
    from shop.models import Order
    from shop.tasks import log_step

    order = Order.objects.create(customer="Ada")
    log_step.using(priority=-5).enqueue(order.pk, "low")
    log_step.enqueue(order.pk, "middle")
    log_step.using(priority=50).enqueue(order.pk, "high")

    work(django_db, "--concurrency", "1")

    order.refresh_from_db()
    assert order.log == ["high", "middle", "low"]


def test_the_worker_serves_the_queues_tasks_allows_unless_told(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import confirm_order, email_receipt

    receipt = email_receipt.enqueue(1)  # queue "emails"
    missing = confirm_order.enqueue(12345)  # no such order: fails, on queue "default"

    work(django_db, "--queue", "emails")
    receipt.refresh()
    assert receipt.status == "SUCCESSFUL"
    assert confirm_order.get_result(missing.id).status == "READY"

    work(django_db, "--max-tries", "1")  # no --queue: default and emails, from TASKS
    assert confirm_order.get_result(missing.id).status == "FAILED"


def test_a_result_is_kept_for_a_day_by_default(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import email_receipt

    email_receipt.enqueue(1)

    work(django_db)

    kept = conn.execute("SELECT keep_until - finished_at FROM pgqueue.job_results").fetchall()
    assert kept == [(datetime.timedelta(days=1),)]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("os.system", "is not in an installed app"),
        ("shop.models.Order", "is not a task"),
        ("shop.never_imported.run", "was not imported by this worker"),
        ("nodots", "is not a task path"),
    ],
)
def test_a_row_naming_no_task_of_the_project_fails_at_once_and_imports_nothing(
    django_db: str, conn: psycopg.Connection[Any], path: str, reason: str
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, max_tries) "
        "VALUES ('default', 'django.tasks:default', %s, 3)",
        [json.dumps({"task": path, "args": ["echo hacked"], "kwargs": {}})],
    )

    work(django_db)

    ((task, exception_class, message),) = failed(conn)
    assert (task, exception_class) == (path, "pgqueue.errors.UnknownJobTypeError")
    assert reason in message
    assert conn.execute("SELECT attempts FROM pgqueue.failed_jobs").fetchone() == (1,)
