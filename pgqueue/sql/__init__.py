"""Load `queries.sql` once into named statements, rendered for one schema.

Each statement sits under a `-- name: NAME` header followed by a one-line reason. The schema goes
in through `psycopg.sql.Identifier`, so no SQL is ever built from strings at run time.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from psycopg import sql

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
