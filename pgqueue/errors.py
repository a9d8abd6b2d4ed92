"""Every error pgqueue raises on purpose.

PgQueueError
├── ConfigurationError      a setting or flag has a value pgqueue cannot use
├── JobDefinitionError      a Job subclass is malformed (reserved name, bad queue, duplicate name)
├── DispatchError           a job was refused before anything was written
│   ├── PayloadTooLargeError
│   ├── SecretInPayloadError
│   ├── InvalidQueueNameError
│   └── UnserializablePayloadError
├── UnsupportedConnectionError   `conn=` is not a connection pgqueue can write through
├── DatabaseError           PostgreSQL could not be reached or refused a statement
├── FailedJobNotFoundError  no row in failed_jobs has the id asked for
└── EmbeddedPostgresError   the embedded PostgreSQL could not be found, started or reused
"""

from __future__ import annotations

import psycopg


class PgQueueError(Exception):
    """The root of every error pgqueue raises on purpose."""


class ConfigurationError(PgQueueError):
    """A setting or flag has a value pgqueue cannot use."""


class JobDefinitionError(PgQueueError):
    """A Job subclass is malformed: fix the class, not the call."""


class DispatchError(PgQueueError):
    """A job was refused before any SQL ran; the caller's transaction is untouched."""


class PayloadTooLargeError(DispatchError):
    """The job's JSON payload is over the configured size limit."""


class SecretInPayloadError(DispatchError):
    """The job holds a SecretStr/SecretBytes value, which must never be stored in a queue."""


class InvalidQueueNameError(DispatchError):
    """The queue name is empty, longer than 63 bytes or holds control characters."""


class UnserializablePayloadError(DispatchError):
    """The payload holds a value JSONB cannot store (NaN, infinity, a NUL character)."""


class UnsupportedConnectionError(PgQueueError):
    """`conn=` is neither a psycopg 3 connection nor a SQLAlchemy session/connection on psycopg."""


class DatabaseError(PgQueueError):
    """PostgreSQL could not be reached or refused a statement."""


class FailedJobNotFoundError(PgQueueError):
    """No row in failed_jobs has that id (never failed, or already retried, forgotten or pruned)."""


class EmbeddedPostgresError(PgQueueError):
    """The embedded PostgreSQL could not be found, initialised or started."""


class UnknownJobTypeError(PgQueueError):
    """A row names a job type that no module the worker imported defines; it was not run."""


class LeaseExpiredError(PgQueueError):
    """The worker running the job's last try stopped renewing its lease (killed, lost machine)."""


def database_error(exc: psycopg.Error, schema: str, where: str = "") -> DatabaseError:
    """The DatabaseError to raise from a driver error, with the fix when the schema is missing.

    `where` names the database (already redacted) for the message; psycopg's own messages never
    hold the password.
    """
    place = f" on {where}" if where else ""
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return DatabaseError(
            f"pgqueue's tables are missing from schema {schema!r}{place}: run `pgqueue migrate` "
            f"first ({exc.diag.message_primary})"
        )
    return DatabaseError(f"PostgreSQL error{place}: {exc}")
