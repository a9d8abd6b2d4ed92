"""The admin pages over pgqueue's tables, through Django's test Client: failed jobs (list,
search, traceback, retry, forget) and the read-only queues page."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.integration.failed_rows import ids_in, insert_failed

FAILED = "/admin/pgqueue/failedjob/"
QUEUES = "/admin/pgqueue/queuebacklog/"


@pytest.fixture
def client(django_db: str) -> Any:
    """A test Client logged in as a superuser."""
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser("admin", "admin@example.com", "secret")
    client = Client()
    client.force_login(user)
    return client


def test_the_failed_jobs_list_shows_each_failure(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    (job_id,) = insert_failed(conn, job_type="billing.Charge", message="card <declined>")

    page = client.get(FAILED)

    assert page.status_code == 200
    text = page.content.decode()
    assert f"{FAILED}{job_id}/change/" in text
    assert "billing.Charge" in text
    assert "card &lt;declined&gt;" in text  # escaped, never markup


def test_a_django_task_is_listed_by_its_task_path(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    insert_failed(
        conn,
        job_type="django.tasks:default",
        payload={"task": "shop.tasks.charge_card", "args": [1], "kwargs": {}},
    )

    assert "shop.tasks.charge_card" in client.get(FAILED).content.decode()


def test_search_finds_failed_jobs_by_type_message_or_id(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    (charge,) = insert_failed(conn, job_type="billing.Charge", message="card declined")
    (mail,) = insert_failed(conn, job_type="mail.Send", message="smtp timeout")

    def found(term: str) -> set[int]:
        page = client.get(FAILED, {"q": term})
        assert page.status_code == 200
        return {
            job_id
            for job_id in (charge, mail)
            if f"{FAILED}{job_id}/change/" in page.content.decode()
        }

    assert found("smtp") == {mail}
    assert found("billing") == {charge}
    assert found(str(charge)) == {charge}
    assert found("nothing like it") == set()


def test_a_failed_job_page_shows_its_traceback_and_payload(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    (job_id,) = insert_failed(
        conn,
        payload={"user_id": 42},
        traceback='Traceback (most recent call last):\n  File "app.py", line 7\nValueError: <b>boom</b>',
    )

    page = client.get(f"{FAILED}{job_id}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "<pre>Traceback (most recent call last):\n  File &quot;app.py&quot;, line 7" in text
    assert "ValueError: &lt;b&gt;boom&lt;/b&gt;</pre>" in text
    assert "<pre>{\n  &quot;user_id&quot;: 42\n}</pre>" in text
    assert 'name="_save"' not in text  # read-only: no form to change the row


def test_the_retry_action_moves_the_selected_jobs_back_to_the_queue(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    first, second, third = insert_failed(conn, count=3)

    page = client.post(FAILED, {"action": "retry", "_selected_action": [first, third]}, follow=True)

    assert page.status_code == 200
    assert "2 job(s) moved back to their queue." in page.content.decode()
    assert ids_in(conn, "jobs") == [first, third]
    assert ids_in(conn, "failed_jobs") == [second]


def test_the_forget_action_deletes_the_selected_failed_jobs(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    first, second = insert_failed(conn, count=2)

    page = client.post(FAILED, {"action": "forget", "_selected_action": [second]}, follow=True)

    assert "1 failed job(s) forgotten." in page.content.decode()
    assert ids_in(conn, "failed_jobs") == [first]
    assert ids_in(conn, "jobs") == []


def test_the_actions_need_the_change_and_delete_permissions(
    django_db: str, conn: psycopg.Connection[Any]
) -> None:
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    (job_id,) = insert_failed(conn)
    viewer = User.objects.create_user("viewer", password="secret", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_failedjob"))
    client = Client()
    client.force_login(viewer)

    page = client.get(FAILED)
    assert page.status_code == 200
    assert 'value="retry"' not in page.content.decode()
    client.post(FAILED, {"action": "retry", "_selected_action": [job_id]})
    client.post(FAILED, {"action": "forget", "_selected_action": [job_id]})
    assert ids_in(conn, "failed_jobs") == [job_id]


def test_the_queues_page_shows_each_queue_and_changes_nothing(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    from shop.tasks import confirm_order, email_receipt

    confirm_order.enqueue(1)
    confirm_order.enqueue(2)
    email_receipt.enqueue(3)

    page = client.get(QUEUES)

    assert page.status_code == 200
    text = page.content.decode()
    assert f"{QUEUES}default/change/" in text and f"{QUEUES}emails/change/" in text
    assert client.get(f"{QUEUES}default/change/").status_code == 200
    assert client.get(f"{QUEUES}add/").status_code == 403
    assert client.post(f"{QUEUES}default/change/", {"ready": "0"}).status_code == 403
    assert client.post(f"{QUEUES}default/delete/", {"post": "yes"}).status_code == 403
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (3,)


def test_failed_jobs_cannot_be_added_edited_or_deleted_through_forms(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    (job_id,) = insert_failed(conn)

    assert client.get(f"{FAILED}add/").status_code == 403
    assert client.post(f"{FAILED}{job_id}/change/", {"queue": "x"}).status_code == 403
    assert client.post(f"{FAILED}{job_id}/delete/", {"post": "yes"}).status_code == 403
    assert ids_in(conn, "failed_jobs") == [job_id]
