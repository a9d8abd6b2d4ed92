"""The roles SQL: names validated, the schema quoted, and `pgqueue roles --print-sql` printing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgqueue.errors import ConfigurationError
from pgqueue.roles import roles_sql, validate_role_name


@pytest.mark.parametrize(
    "name",
    ["", "Worker", "pg_worker", "a$b", 'x"; DROP ROLE y; --', "with space", "9lives", "a" * 64],
)
def test_role_name_outside_plain_lower_case_identifiers_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError):
        validate_role_name(name)


@pytest.mark.parametrize("name", ["pgqueue_worker", "_app", "app2", "a" * 63])
def test_plain_lower_case_role_name_is_accepted(name: str) -> None:
    assert validate_role_name(name) == name


def test_worker_and_dispatch_roles_need_different_names() -> None:
    with pytest.raises(ConfigurationError, match="different names"):
        roles_sql("pgqueue", "same", "same")


def test_schema_with_a_newline_is_refused_since_it_appears_in_a_comment() -> None:
    with pytest.raises(ConfigurationError, match="not a plain SQL identifier"):
        roles_sql("evil\nDROP TABLE x;")


@pytest.mark.parametrize("schema", ["", "bad-name", "1abc", 'My "Schema"', "a" * 64])
def test_a_schema_name_settings_refuse_is_refused_too(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="not a plain SQL identifier"):
        roles_sql(schema)


def test_schema_is_quoted_as_an_identifier() -> None:
    text = roles_sql("My$Schema")
    assert 'ON "My$Schema".jobs' in text
    assert "ON My" not in text


def test_dispatch_role_gets_no_delete_and_no_update() -> None:
    dispatch_lines = [line for line in roles_sql().splitlines() if '"pgqueue_dispatch"' in line]
    granted = " ".join(line for line in dispatch_lines if line.startswith("GRANT"))
    assert "DELETE" not in granted
    assert "UPDATE" not in granted


def test_cli_prints_the_same_sql_without_a_database() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgqueue",
            "roles",
            "--print-sql",
            "--worker-role",
            "jobs_worker",
            "--dispatch-role",
            "web_app",
            "--schema",
            "queues",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == roles_sql("queues", "jobs_worker", "web_app")
    assert result.stderr == ""


def test_cli_without_print_sql_says_what_to_pass() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue", "roles"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2  # a usage error
    assert "--print-sql" in result.stderr


def test_cli_refuses_a_bad_role_name_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue", "roles", "--print-sql", "--worker-role", "Bad-Name"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: role name 'Bad-Name'")
    assert "Traceback" not in result.stderr


def test_security_doc_shows_exactly_the_printed_sql() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "security.md"
    assert f"```sql\n{roles_sql()}```" in doc.read_text(encoding="utf-8")
