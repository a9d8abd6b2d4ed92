"""`python manage.py pgqueue_migrate`: create or upgrade pgqueue's schema in the database the
pgqueue backends write to (the flags of `pgqueue migrate`: `--schema`, `--revision`).

pgqueue's tables are its own alembic migrations', not Django's: run this beside `migrate`.
"""

from __future__ import annotations

from pgqueue.contrib.django.commands import PgQueueCommand


class Command(PgQueueCommand):
    help = "Create or upgrade pgqueue's tables (the flags of `pgqueue migrate`)."
    pgqueue_command = "migrate"
