"""Settings: PGQUEUE_* from the environment and `.env`, schema validation, URL redaction.

The autouse `isolated_environment` fixture (conftest.py) has already cleared every `PGQUEUE_*`
variable and made `tmp_path` the working directory, so a `.env` written there is the one read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pgqueue.settings import Settings, redact_url

URL = "postgresql://app:s3cret-pass@db.example:5432/app"

SOURCES = [
    ("PGQUEUE_DATABASE_URL", URL, "database_url", URL),
    ("PGQUEUE_SCHEMA", "jobs_schema", "db_schema", "jobs_schema"),
    ("PGQUEUE_IMPORTS", "a.b, c", "imports", ["a.b", "c"]),
    ("PGQUEUE_MAX_PAYLOAD_BYTES", "1024", "max_payload_bytes", 1024),
]
SOURCE_IDS = [variable for variable, *_ in SOURCES]


def _plain(value: Any) -> Any:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


@pytest.mark.parametrize(("variable", "raw", "attribute", "expected"), SOURCES, ids=SOURCE_IDS)
def test_setting_is_read_from_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, attribute: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, raw)
    assert _plain(getattr(Settings(), attribute)) == expected


@pytest.mark.parametrize(("variable", "raw", "attribute", "expected"), SOURCES, ids=SOURCE_IDS)
def test_setting_is_read_from_dotenv_in_cwd(
    tmp_path: Path, variable: str, raw: str, attribute: str, expected: Any
) -> None:
    (tmp_path / ".env").write_text(f"{variable}={raw}\n", encoding="utf-8")
    assert _plain(getattr(Settings(), attribute)) == expected


def test_environment_overrides_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PGQUEUE_SCHEMA=from_file\n", encoding="utf-8")
    monkeypatch.setenv("PGQUEUE_SCHEMA", "from_env")
    assert Settings().db_schema == "from_env"


def test_defaults_without_environment() -> None:
    settings = Settings()
    assert (settings.database_url, settings.db_schema, settings.imports) == (None, "pgqueue", [])


def test_imports_skip_empty_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_IMPORTS", " a.b ,, c ,")
    assert Settings().imports == ["a.b", "c"]


@pytest.mark.parametrize("schema", ["bad-name", "1abc"])
def test_invalid_schema_raises_validation_error(schema: str) -> None:
    with pytest.raises(ValidationError, match="PGQUEUE_SCHEMA"):
        Settings(db_schema=schema)


@pytest.mark.parametrize("schema", ["bad-name", "1abc"])
def test_invalid_schema_message_says_how_to_fix_it(schema: str) -> None:
    with pytest.raises(ValidationError, match="letters, digits and underscores"):
        Settings(db_schema=schema)


def test_invalid_schema_from_environment_raises_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGQUEUE_SCHEMA", "bad-name")
    with pytest.raises(ValidationError, match="not a plain SQL identifier"):
        Settings()


def test_zero_max_payload_bytes_raises_validation_error() -> None:
    with pytest.raises(ValidationError):
        Settings(max_payload_bytes=0)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%40ss:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"),
        (
            "postgresql://h/db?user=u&password=secret&sslmode=require",
            "postgresql://h/db?user=u&password=***&sslmode=require",
        ),
        ("host=h user=u password=secret dbname=db", "host=h user=u password=*** dbname=db"),
        ("host=h password='se cret' dbname=db", "host=h password=*** dbname=db"),
    ],
    ids=[
        "url-userinfo",
        "url-userinfo-encoded",
        "url-query",
        "url-query-middle",
        "conninfo",
        "quoted",
    ],
)
def test_redact_url_masks_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@h:5432/db?sslmode=require", "host=h user=u dbname=db"],
    ids=["url", "conninfo"],
)
def test_redact_url_keeps_url_without_password(url: str) -> None:
    assert redact_url(url) == url


def test_redact_url_masks_backslash_escaped_conninfo_password() -> None:
    # libpq reads `se\ cret` as the password "se cret"; the whole value must be masked.
    assert "cret" not in redact_url(r"host=h password=se\ cret dbname=db")


def test_settings_repr_hides_password() -> None:
    assert "s3cret-pass" not in repr(Settings(database_url=URL))


def test_settings_str_hides_password() -> None:
    assert "s3cret-pass" not in str(Settings(database_url=URL))


def test_redacted_url_masks_password() -> None:
    assert Settings(database_url=URL).redacted_url == "postgresql://app:***@db.example:5432/app"


def test_redacted_url_is_embedded_without_database_url() -> None:
    assert Settings().redacted_url == "embedded"
