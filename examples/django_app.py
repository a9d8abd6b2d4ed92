"""Django: dispatch through Django's own connection inside `transaction.atomic()`.

Run from the repository root, against a database where `pgqueue migrate` has run:

    pip install django                   # 4.2 or later, which runs on psycopg 3
    export PGQUEUE_DATABASE_URL=postgresql://localhost/myapp
    python -m examples.django_app        # invoice 1 and its job commit; invoice 2 and its job don't
    pgqueue work --app examples.django_app --queue django --stop-when-empty

`dispatch(..., conn=connection)` takes Django's connection (on psycopg 3), so the job is written in
the atomic block's own transaction. Compare enqueueing from `transaction.on_commit()`: there a
crash between the commit and the enqueue loses the job; here it cannot. For Django's own
`@task` functions, the `pgqueue.contrib.django.PgQueueBackend` task backend does the same for
`my_task.enqueue()`, with `manage.py pgqueue_work` and admin pages (docs/django.md).

A project has the DATABASES setting in settings.py and the model in an app; to stay one file, this
example configures Django in code from PGQUEUE_DATABASE_URL.
"""

from __future__ import annotations

import contextlib
import os

import django
from django.conf import settings
from psycopg.conninfo import conninfo_to_dict

if not settings.configured:
    # A URL or conninfo string to Django's DATABASES; what is left over goes to psycopg as OPTIONS.
    params = conninfo_to_dict(os.environ["PGQUEUE_DATABASE_URL"])
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params.pop("dbname", ""),
                "USER": params.pop("user", ""),
                "PASSWORD": params.pop("password", ""),
                "HOST": params.pop("host", ""),  # a host name, or a Unix socket directory
                "PORT": params.pop("port", ""),
                "OPTIONS": params,
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
    django.setup()

from django.db import close_old_connections, connection, models, transaction

from pgqueue import Job, Queue


class Invoice(models.Model):
    customer = models.TextField()
    emailed = models.BooleanField(default=False)

    class Meta:
        app_label = "billing"


class EmailInvoice(Job):
    """Email an invoice to its customer (here: mark it emailed)."""

    queue = "django"
    job_name = "examples.django_app.EmailInvoice"  # the same name when run as __main__

    invoice_id: int

    def handle(self) -> None:  # a plain def runs in a worker child process, where the ORM may block
        close_old_connections()  # a long-lived process: drop a connection the database closed
        Invoice.objects.filter(pk=self.invoice_id).update(emailed=True)


class PaymentDeclinedError(Exception):
    """The card was declined after the invoice was written."""


queue = Queue()


def create_invoice(customer: str, *, paid: bool = True) -> int:
    """Save the invoice and dispatch its email in one transaction: both commit, or neither."""
    with transaction.atomic():
        invoice = Invoice.objects.create(customer=customer)
        queue.dispatch(EmailInvoice(invoice_id=invoice.pk), conn=connection)
        if not paid:
            raise PaymentDeclinedError(customer)  # leaving atomic() rolls back invoice and job
    return invoice.pk


def main() -> None:
    if Invoice._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Invoice)
    invoice_id = create_invoice("Ada")
    print(f"invoice {invoice_id} committed with its email job")
    with contextlib.suppress(PaymentDeclinedError):
        create_invoice("Grace", paid=False)
    print("the declined invoice rolled back: no invoice row, no job")
    print(f"jobs waiting in {EmailInvoice.queue!r}: {queue.size(EmailInvoice.queue)}")
    queue.close()


if __name__ == "__main__":
    main()
