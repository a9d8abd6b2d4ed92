"""queries.sql: every named statement is used, every used name exists, and the schema is quoted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pgqueue
from pgqueue.sql import queries_for, raw_queries

PACKAGE_DIR = Path(pgqueue.__file__).parent
# `self._queries["dispatch_job"]`, `queries["claim_jobs"]`, ... in the package's code.
_USED_NAME = re.compile(r"""queries\[\s*["'](\w+)["']\s*\]""")
SCHEMA = "myschema"
NAMES_WITH_SCHEMA = sorted(name for name, body in raw_queries().items() if "{schema}" in body)


def _python_source() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(PACKAGE_DIR.rglob("*.py")))


def test_queries_sql_defines_queries() -> None:
    assert raw_queries()


@pytest.mark.parametrize("name", sorted(raw_queries()))
def test_named_query_is_used_by_package_code(name: str) -> None:
    assert f'"{name}"' in _python_source()


def test_package_code_looks_up_queries_by_name() -> None:
    assert _USED_NAME.findall(_python_source())


def test_every_query_name_used_in_code_exists() -> None:
    used = set(_USED_NAME.findall(_python_source()))
    assert used - set(raw_queries()) == set()


@pytest.mark.parametrize("name", sorted(raw_queries()))
def test_named_query_starts_with_a_one_line_reason(name: str) -> None:
    assert raw_queries()[name].startswith("-- ")


@pytest.mark.parametrize("name", NAMES_WITH_SCHEMA)
def test_rendered_query_quotes_schema(name: str) -> None:
    assert f'"{SCHEMA}".'.encode() in queries_for(SCHEMA)[name]


def test_rendered_query_keeps_schema_case() -> None:
    assert b'"MySchema".jobs' in queries_for("MySchema")["dispatch_job"]


@pytest.mark.parametrize("name", sorted(raw_queries()))
def test_rendered_query_has_no_stray_braces(name: str) -> None:
    rendered = queries_for(SCHEMA)[name].decode()
    assert "{" not in rendered
    assert "}" not in rendered


def test_queries_for_renders_every_named_query() -> None:
    assert set(queries_for(SCHEMA)) == set(raw_queries())
