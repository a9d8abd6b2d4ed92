"""PgQueueBackend's enqueue: in Django's transaction, with Django's priority, queue and run_after
mapped to pgqueue's, and the refusals made before anything is written."""

from __future__ import annotations

import contextlib
import datetime
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from pgqueue import Job
from pgqueue.queue import Queue


class Rollback(Exception):
    pass


class Ping(Job):
    job_name = "tests.django.Ping"

    n: int

    def handle(self) -> None:
        pass


def jobs(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, queue, job_type, payload, priority FROM pgqueue.jobs ORDER BY id"
    ).fetchall()


def test_enqueue_inside_atomic_commits_with_the_block(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from django.db import transaction
    from shop.models import Order
    from shop.tasks import confirm_order

    with transaction.atomic():
        order = Order.objects.create(customer="Ada")
        result = confirm_order.enqueue(order.pk)
        assert jobs(conn) == []  # not committed yet: no other connection sees it

    assert jobs(conn) == [
        (
            int(result.id),
            "default",
            "django.tasks:default",
            {"task": "shop.tasks.confirm_order", "args": [order.pk], "kwargs": {}},
            0,
        )
    ]


def test_enqueue_inside_atomic_vanishes_on_rollback(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from django.db import transaction
    from shop.models import Order
    from shop.tasks import confirm_order

    with contextlib.suppress(Rollback), transaction.atomic():
        order = Order.objects.create(customer="Grace")
        confirm_order.enqueue(order.pk)
        raise Rollback

    assert jobs(conn) == []
    assert conn.execute("SELECT count(*) FROM shop_order").fetchone() == (0,)


def test_enqueue_in_a_rolled_back_savepoint_leaves_the_outer_task(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from django.db import transaction
    from shop.tasks import email_receipt

    with transaction.atomic():
        kept = email_receipt.enqueue(1)
        with contextlib.suppress(Rollback), transaction.atomic():
            email_receipt.enqueue(2)
            raise Rollback

    assert [row[0] for row in jobs(conn)] == [int(kept.id)]


def test_enqueue_outside_atomic_commits_at_once(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import confirm_order

    result = confirm_order.enqueue(7)

    assert [row[0] for row in jobs(conn)] == [int(result.id)]


def test_enqueue_returns_a_ready_result_and_refresh_reads_the_stored_enqueue_time(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from django.utils import timezone
    from shop.tasks import email_receipt

    before = timezone.now()
    result = email_receipt.enqueue(3, subject="Thanks")

    assert result.status == "READY"
    assert before <= result.enqueued_at <= timezone.now()
    result.refresh()
    (enqueued_at,) = conn.execute("SELECT enqueued_at FROM pgqueue.jobs").fetchone() or ()
    assert result.enqueued_at == enqueued_at
    assert (result.args, result.kwargs) == ([3], {"subject": "Thanks"})
    assert result.backend == "default"
    assert result.task is email_receipt
    assert not result.is_finished


def test_django_priority_is_turned_around_and_the_queue_kept(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import confirm_order, email_receipt

    email_receipt.enqueue(1)  # @task(queue_name="emails", priority=10)
    confirm_order.using(priority=-100).enqueue(2)
    confirm_order.using(priority=100).enqueue(3)

    assert [(queue, priority) for _, queue, _, _, priority in jobs(conn)] == [
        ("emails", -10),
        ("default", 100),
        ("default", -100),
    ]


def test_run_after_is_the_job_run_at(django_db: str, conn: psycopg.Connection[Any]) -> None:
    from shop.tasks import confirm_order

    later = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    result = confirm_order.using(run_after=later).enqueue(1)

    assert conn.execute("SELECT run_at FROM pgqueue.jobs").fetchone() == (later,)
    assert result.status == "READY"  # scheduled is READY to Django
    assert Queue().status(int(result.id), conn=conn).state == "scheduled"


def test_arguments_that_are_not_json_are_refused_before_anything_is_written(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import confirm_order

    with pytest.raises(TypeError):
        confirm_order.enqueue(object())

    assert jobs(conn) == []


def test_a_queue_the_backend_does_not_allow_is_refused(django_db: str) -> None:
    from shop.tasks import confirm_order

    from pgqueue.contrib.django.compat import InvalidTask

    with pytest.raises(InvalidTask, match="Queue 'reports' is not valid"):
        confirm_order.using(queue_name="reports")


def test_the_backend_says_what_it_supports() -> None:
    from pgqueue.contrib.django.compat import task_backends

    backend = task_backends["default"]

    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority


def test_dispatch_accepts_django_connection_inside_atomic(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from django.db import connection, transaction

    queue = Queue()
    with contextlib.suppress(Rollback), transaction.atomic():
        queue.dispatch(Ping(n=1), conn=connection)
        raise Rollback
    with transaction.atomic():
        kept = queue.dispatch(Ping(n=2), conn=connection)

    assert [(row[0], row[3]) for row in jobs(conn)] == [(kept, {"n": 2})]


def test_pgqueue_imports_and_dispatches_without_django(database_url: str) -> None:
    program = f"""
import sys
sys.modules["django"] = None  # as if Django were not installed
import psycopg
from pgqueue import Job, Queue
import pgqueue.cli, pgqueue.worker

class Hello(Job):
    def handle(self) -> None: ...

with psycopg.connect({database_url!r}) as conn:
    print(Queue().dispatch(Hello(), conn=conn) > 0)
"""
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )

    assert (completed.returncode, completed.stdout.strip()) == (0, "True"), completed.stderr
