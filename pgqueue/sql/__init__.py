"""Load `queries.sql` once into named statements, rendered for one schema, and run plans of them.

Each statement sits under a `-- name: NAME` header followed by a one-line reason. The schema goes
in through `psycopg.sql.Identifier`, so no SQL is ever built from strings at run time.

An operation that takes several statements (a batched delete looping until a batch comes back
short, say) is written once as a `Plan`: a generator that yields `Statement`s (and `Pause`s), is
sent each statement's rows, and returns the result. `run_plan` and `run_plan_async` are the only
code that executes a plan, so no operation is written twice for sync and async callers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Generator
from functools import cache
from importlib.resources import files
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg import sql

from pgqueue.connection import translate
from pgqueue.errors import DatabaseError
from pgqueue.settings import Settings

T = TypeVar("T")

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def raw_queries() -> dict[str, str]:
    """Every named statement in queries.sql, as written (with `{schema}` placeholders)."""
    text = files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql names {name!r} twice")
        queries[name] = body.strip()
    return queries


@cache
def queries_for(schema: str) -> dict[str, bytes]:
    """Every named statement rendered for `schema`, as bytes ready for `execute`."""
    identifier = sql.Identifier(schema)
    return {
        name: sql.SQL(body).format(schema=identifier).as_bytes()
        for name, body in raw_queries().items()
    }


class Statement(NamedTuple):
    """One rendered statement and its bind parameters."""

    query: bytes
    params: dict[str, Any]


class Pause(NamedTuple):
    """Wait this many seconds before the plan's next step (it is sent no rows)."""

    seconds: float


Rows = list[tuple[Any, ...]]
# Yields statements and pauses, is sent each statement's rows, returns the operation's result.
Plan = Generator[Statement | Pause, Rows, T]


def run_plan(plan: Plan[T], conn: psycopg.Connection[Any]) -> T:
    """Execute `plan` on a blocking connection, statement by statement; return its result.

    Every statement must return rows (a `SELECT` or `RETURNING`). Transactions are the
    connection's: on an autocommit connection each statement commits on its own.
    """
    try:
        step = next(plan)
        while True:
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                step = plan.send([])
            else:
                step = plan.send(conn.execute(step.query, step.params).fetchall())
    except StopIteration as done:
        result: T = done.value
        return result


async def run_plan_async(plan: Plan[T], conn: psycopg.AsyncConnection[Any]) -> T:
    """`run_plan` for an asyncio connection."""
    try:
        step = next(plan)
        while True:
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                step = plan.send([])
            else:
                cursor = await conn.execute(step.query, step.params)
                step = plan.send(await cursor.fetchall())
    except StopIteration as done:
        result: T = done.value
        return result


class SchemaClient:
    """The base of pgqueue's client classes (`Queue`, `FailedJobs`, their async twins): settings,
    the queries rendered for their schema, a repr that never shows the password, and driver
    errors turned into `DatabaseError`s that say how to fix a missing schema."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._queries = queries_for(self.settings.db_schema)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(database={self.settings.redacted_url!r}, "
            f"schema={self.settings.db_schema!r})"
        )

    def _database_error(self, exc: psycopg.Error) -> DatabaseError:
        return translate(exc, self.settings)
