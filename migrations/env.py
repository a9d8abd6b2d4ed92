"""Alembic environment for pgqueue's schema.

Every migration runs in one transaction that first takes an advisory lock keyed on the schema, so
several `pgqueue migrate` runs started at once apply each revision exactly once. The DDL in the
revisions is unqualified: the transaction's search_path points at the target schema, and
alembic's own version table lives there too, so two pgqueue schemas in one database never mix.
"""

from __future__ import annotations

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool

from pgqueue.connection import connect
from pgqueue.migrate import resolve_target, target_settings

config = context.config
x_arguments = context.get_x_argument(as_dictionary=True)
conninfo, schema = resolve_target(
    url=config.attributes.get("url") or x_arguments.get("url"),
    schema=config.attributes.get("schema") or x_arguments.get("schema"),
)

if context.is_offline_mode():
    raise SystemExit("pgqueue migrations run online only: drop --sql")

# The creator hands SQLAlchemy a plain psycopg connection, opened by pgqueue's one connection
# seam, so any libpq URL or conninfo works and a failure is a DatabaseError without the password.
settings = target_settings(conninfo, schema)
engine = create_engine(
    "postgresql+psycopg://",
    creator=lambda: connect(settings, application_name="pgqueue-migrate", autocommit=False),
    poolclass=pool.NullPool,
)
quoted_schema = psycopg.sql.Identifier(schema).as_string()
with engine.connect() as connection, connection.begin():
    connection.exec_driver_sql(
        "SELECT pg_advisory_xact_lock(hashtext('pgqueue.migrate'), hashtext(%s))", (schema,)
    )
    connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted_schema}")
    connection.exec_driver_sql(f"SET LOCAL search_path TO {quoted_schema}")
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transactional_ddl=True,
    )
    context.run_migrations()
engine.dispose()
