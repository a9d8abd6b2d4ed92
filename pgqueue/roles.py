"""Least-privilege roles: the SQL `pgqueue roles --print-sql` prints (docs/security.md explains it).

Two group roles (NOLOGIN; grant them to the login roles your processes use):

- the **worker** role runs `pgqueue work` and the upkeep commands (failed, cleanup, stats): USAGE on
  the schema and SELECT, INSERT, UPDATE, DELETE on `jobs`, `failed_jobs`, `workers`,
  `schedules` (workers register and fire periodic jobs; `pgqueue schedules` pauses and forgets
  them), `queues` (the claim reads pauses and limits; `pgqueue queues` sets them), `job_limits`
  and `limit_starts` (the limited claim locks and counts there, docs/limits.md), `job_results`
  (kept results) and `queue_throughput` (the heartbeat's counts per minute), with USAGE on the
  schema's sequences. Nothing else: no DDL, no `alembic_version`, and no access to
  any other table in the database;
- the **dispatch** role is for applications that only enqueue: INSERT on the columns a dispatch
  writes, SELECT only on the columns `RETURNING id` and `Queue.size` read, and USAGE on the jobs
  id sequence (bulk dispatch draws ids from it), and what `Queue.pause` and `Queue.resume` need on
  `queues` (an application may pause a queue it feeds; its runtime limits stay out of reach),
  and what `Queue.status` and `wait` read: a job's state columns in `jobs`, the outcome columns
  of `failed_jobs` and the kept results in `job_results`. It cannot read payloads or tracebacks,
  change or delete jobs, or touch `workers`.

The script is idempotent: it creates a role only if missing and first revokes everything the role
holds on the schema's tables and sequences, so it states the privileges exactly and can be run
again after `pgqueue migrate` (new tables are not covered until it is).

This is text for an administrator to review and run, not a statement pgqueue executes, so it is
composed here with `psycopg.sql` (identifiers always quoted) rather than kept in queries.sql.
"""

from __future__ import annotations

import re

from psycopg import sql

from pgqueue.errors import ConfigurationError
from pgqueue.settings import DEFAULT_SCHEMA, validate_schema_name

DEFAULT_WORKER_ROLE = "pgqueue_worker"
DEFAULT_DISPATCH_ROLE = "pgqueue_dispatch"

# Lower case, so the name needs no quoting when typed into GRANT ... TO; no `$`, so it can never
# end the dollar-quoted DO block it appears in.
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# The columns a dispatch writes: dispatch_job sets run_at, bulk dispatch (COPY) sets id.
_DISPATCH_INSERT_COLUMNS = (
    "id",
    "queue",
    "job_type",
    "payload",
    "priority",
    "run_at",
    "max_tries",
    "unique_key",
    "unique_while",
    "trace_context",
)
# RETURNING id needs SELECT on id; queue_size reads queue and lease_token.
# unique_key, unique_while and claimed_at: a unique dispatch finds the job holding its key (a
# hash: no payload is readable). on_conflict="replace" updates a job, which this role cannot.
# The rest is what Queue.status and wait read (job_status): a job's state, tries, progress and
# last error, never its payload.
_DISPATCH_SELECT_COLUMNS = (
    "id",
    "queue",
    "lease_token",
    "unique_key",
    "unique_while",
    "claimed_at",
    "job_type",
    "run_at",
    "attempts",
    "progress",
    "progress_message",
    "last_error",
    "enqueued_at",
)
# Queue.status of a failed or cancelled job: its outcome, not its payload or traceback.
_DISPATCH_FAILED_COLUMNS = (
    "id",
    "queue",
    "job_type",
    "attempts",
    "exception_class",
    "exception_message",
    "enqueued_at",
    "started_at",
    "failed_at",
)

_CREATE_ROLE = sql.SQL(
    "DO $pgqueue$ BEGIN\n"
    "    CREATE ROLE {role} NOLOGIN;\n"
    "EXCEPTION WHEN duplicate_object THEN NULL;\n"
    "END $pgqueue$;\n"
    "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role};\n"
    "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role};\n"
    "GRANT USAGE ON SCHEMA {schema} TO {role};\n"
)

_WORKER_GRANTS = sql.SQL(
    "GRANT SELECT, INSERT, UPDATE, DELETE\n"
    "    ON {schema}.jobs, {schema}.failed_jobs, {schema}.workers, {schema}.schedules,\n"
    "       {schema}.queues, {schema}.job_limits, {schema}.limit_starts,\n"
    "       {schema}.job_results, {schema}.queue_throughput\n"
    "    TO {role};\n"
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};\n"
)

_DISPATCH_GRANTS = sql.SQL(
    "GRANT INSERT ({insert_columns})\n    ON {schema}.jobs TO {role};\n"
    "GRANT SELECT ({select_columns}) ON {schema}.jobs TO {role};\n"
    "GRANT USAGE ON SEQUENCE {schema}.jobs_id_seq TO {role};\n"
    "GRANT SELECT (name, paused_at, paused_reason),\n"
    "      INSERT (name, paused_at, paused_reason),\n"
    "      UPDATE (paused_at, paused_reason, updated_at)\n"
    "    ON {schema}.queues TO {role};\n"
    "GRANT SELECT ({failed_columns}) ON {schema}.failed_jobs TO {role};\n"
    "GRANT SELECT ON {schema}.job_results TO {role};\n"
)


def validate_role_name(name: str) -> str:
    """Return `name` if it can name a pgqueue role, else raise ConfigurationError saying why."""
    if not _ROLE_NAME.match(name):
        raise ConfigurationError(
            f"role name {name!r} is not accepted: use lower-case letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters"
        )
    if name.startswith("pg_"):
        raise ConfigurationError(f"role name {name!r}: names starting with pg_ are reserved")
    return name


def roles_sql(
    schema: str = DEFAULT_SCHEMA,
    worker_role: str = DEFAULT_WORKER_ROLE,
    dispatch_role: str = DEFAULT_DISPATCH_ROLE,
) -> str:
    """The SQL that creates (if missing) the worker and dispatch roles and grants them exactly
    their privileges on `schema`, in one transaction.

    Parameters:
        schema: the schema holding pgqueue's tables (default `pgqueue`); quoted as an identifier.
        worker_role: name of the worker role (default `pgqueue_worker`).
        dispatch_role: name of the dispatch-only role (default `pgqueue_dispatch`).

    Raises ConfigurationError for a role name `validate_role_name` refuses, two equal names, or a
    schema name every other command refuses too (`pgqueue.settings.validate_schema_name`).
    """
    try:
        validate_schema_name(schema)
    except ValueError as exc:
        raise ConfigurationError(f"schema name {exc}") from None
    validate_role_name(worker_role)
    validate_role_name(dispatch_role)
    if worker_role == dispatch_role:
        raise ConfigurationError("the worker and dispatch roles need different names")
    schema_id = sql.Identifier(schema)
    worker = sql.Identifier(worker_role)
    dispatch = sql.Identifier(dispatch_role)
    parts = [
        f"-- pgqueue's least-privilege roles for schema {schema_id.as_string()}, from "
        "`pgqueue roles --print-sql`.\n"
        "-- Run as the schema's owner or a superuser, after `pgqueue migrate` (and again after\n"
        "-- each upgrade): it is idempotent and states each role's privileges exactly.\n"
        "BEGIN;\n",
        f"\n-- {worker_role}: runs `pgqueue work`, failed, cleanup, stats, schedules and "
        "queues; nothing else.\n",
        _CREATE_ROLE.format(schema=schema_id, role=worker).as_string(),
        _WORKER_GRANTS.format(schema=schema_id, role=worker).as_string(),
        f"\n-- {dispatch_role}: enqueues jobs, reads queue sizes and job status, pauses and\n"
        "-- resumes queues; cannot read payloads or tracebacks, change or delete jobs.\n",
        _CREATE_ROLE.format(schema=schema_id, role=dispatch).as_string(),
        _DISPATCH_GRANTS.format(
            schema=schema_id,
            role=dispatch,
            insert_columns=sql.SQL(", ").join(map(sql.Identifier, _DISPATCH_INSERT_COLUMNS)),
            select_columns=sql.SQL(", ").join(map(sql.Identifier, _DISPATCH_SELECT_COLUMNS)),
            failed_columns=sql.SQL(", ").join(map(sql.Identifier, _DISPATCH_FAILED_COLUMNS)),
        ).as_string(),
        "\nCOMMIT;\n",
        "\n-- Then give each login role the group it needs, for example:\n"
        f"--   CREATE ROLE billing_worker LOGIN PASSWORD '...' IN ROLE {worker_role};\n"
        f"--   GRANT {dispatch_role} TO billing_app;\n",
    ]
    return "".join(parts)
