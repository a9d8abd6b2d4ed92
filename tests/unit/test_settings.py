"""Settings: PGQUEUE_* from the environment and `.env`, schema validation, URL redaction.

The autouse `isolated_environment` fixture (conftest.py) has already cleared every `PGQUEUE_*`
variable and made `tmp_path` the working directory, so a `.env` written there is the one read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pgqueue.settings import Settings, redact, redact_url

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


# Every shape a password takes in PGQUEUE_DATABASE_URL, with the password a person meant.
PASSWORD_FORMS = [
    ("postgresql://app:plainpass1@db.example:5432/app", "plainpass1"),
    ("postgresql://app:p@ssQ#w0rdZ@db.example/app", "p@ssQ#w0rdZ"),
    ("postgresql://app:paQ:ssQ/wZ?rdX@db.example/app", "paQ:ssQ/wZ?rdX"),
    ("postgresql://app@db.example/app?password=querypass1&sslmode=disable", "querypass1"),
    ("host=db.example user=app password=kvpass1 dbname=app", "kvpass1"),
    ("host=db.example user=app password = 'q u o t e d' dbname=app", "q u o t e d"),
    (r"host=db.example user=app password=back\ slash dbname=app", "back slash"),
    ("postgresql://app:p%40ssQ%23encZ@db.example/app", "p@ssQ#encZ"),
    ("postgresq://app:typoscheme1@db.example/app", "typoscheme1"),
]
FORM_IDS = [
    "plain",
    "unescaped-at-hash",
    "unescaped-colon-slash-question",
    "query",
    "conninfo",
    "conninfo-quoted",
    "conninfo-escaped",
    "percent-encoded",
    "malformed-scheme",
]


def _pieces(password: str) -> list[str]:
    """The password, decoded, and each run of it long enough to recognise, as a leak would show."""
    import re
    from urllib.parse import quote

    runs = [piece for piece in re.split(r"[@#:/?\s]", password) if len(piece) >= 3]
    return [password, quote(password, safe=""), *runs]


@pytest.mark.parametrize(("url", "password"), PASSWORD_FORMS, ids=FORM_IDS)
def test_settings_repr_and_redacted_url_never_show_the_password(url: str, password: str) -> None:
    settings = Settings(database_url=url)
    for text in (repr(settings), str(settings), settings.redacted_url):
        assert not [piece for piece in _pieces(password) if piece in text], text
    assert "***" in settings.redacted_url


@pytest.mark.parametrize(("url", "password"), PASSWORD_FORMS, ids=FORM_IDS)
def test_queue_repr_never_shows_the_password(url: str, password: str) -> None:
    from pgqueue import AsyncQueue, Queue

    for client in (Queue(Settings(database_url=url)), AsyncQueue(Settings(database_url=url))):
        assert not [piece for piece in _pieces(password) if piece in repr(client)]
        assert "***" in repr(client)


@pytest.mark.parametrize(("url", "password"), PASSWORD_FORMS, ids=FORM_IDS)
def test_settings_redact_masks_the_password_anywhere_in_a_text(url: str, password: str) -> None:
    from urllib.parse import quote

    text = f"job failed: dsn {url!r}; then {password} alone, encoded {quote(password, safe='')}"
    masked = Settings(database_url=url).redact(text)
    assert not [piece for piece in _pieces(password) if piece in masked], masked
    assert masked.startswith("job failed: dsn ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "could not connect to postgresql://u:s3cret@h/db: refused",
            "could not connect to postgresql://u:***@h/db: refused",
        ),
        ("see postgresq://u:s3cret@h/db now", "see postgresq://u:***@h/db now"),
        ("'postgresql://u:p@ss#w0rd@h/db'", "'postgresql://u:***@h/db'"),
        ("postgres://u:a/b?c:d@h:5432/db", "postgres://u:***@h:5432/db"),
        (
            "postgresql://h/db?user=u&password=x%20y&a=b",
            "postgresql://h/db?user=u&password=***&a=b",
        ),
        ("postgresql://h/db?pass%77ord=hidden", "postgresql://h/db?pass%77ord=***"),
        ("postgresql://h/db?sslpassword=hidden", "postgresql://h/db?sslpassword=***"),
        ("dsn: host=h password=x port=5", "dsn: host=h password=*** port=5"),
        ("host=h PASSWORD = 'it\\'s here' port=5", "host=h PASSWORD = *** port=5"),
        ("host=h password='never closed", "host=h password=***"),
        ("{'host': 'h', 'password': 'dictpass'}", "{'host': 'h', 'password': ***}"),
        ('invalid percent-encoded token: "pa%zzss"', 'invalid percent-encoded token: "***"'),
        (
            'forbidden value %00 in percent-encoded value: "pw%00x"',
            'forbidden value %00 in percent-encoded value: "***"',
        ),
        (
            'missing "=" after "b" in connection info string',
            'missing "=" after "***" in connection info string',
        ),
        (
            'missing "=" after "postgresq://u:s3cret@h/db" in connection info string',
            'missing "=" after "postgresq://u:***@h/db" in connection info string',
        ),
    ],
    ids=[
        "url-in-text",
        "misspelt-scheme",
        "unescaped-at-hash",
        "unescaped-slash-question-colon",
        "query-middle",
        "query-key-percent-encoded",
        "sslpassword",
        "conninfo-in-text",
        "conninfo-quoted-escaped",
        "conninfo-unterminated-quote",
        "dict-repr",
        "libpq-percent-token",
        "libpq-nul",
        "libpq-missing-equals",
        "libpq-missing-equals-url",
    ],
)
def test_redact_masks_passwords_without_being_told_them(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_masks_each_literal_secret_and_its_encodings() -> None:
    text = "a p@ss/w0rd b p%40ss%2Fw0rd c p%40ss%2fw0rd d"
    assert redact(text, ["p@ss/w0rd"]) == "a *** b *** c *** d"


def test_redact_masks_a_percent_encoded_secret_where_it_appears_decoded() -> None:
    assert redact("user typed p@ss", ["p%40ss"]) == "user typed ***"


def test_redact_mask_never_reveals_the_length() -> None:
    assert redact("x LONGSECRETLONGSECRET y", ["LONGSECRETLONGSECRET"]) == "x *** y"
    assert redact("x ab y", ["ab"]) == "x *** y"


def test_redact_masks_a_quoted_word_holding_a_piece_libpq_read_as_a_host() -> None:
    # libpq ends the password at the first `@`: the rest became the host and is echoed.
    message = "failed to resolve host 'ss#w0rd@db.example': [Errno -2] Name or service not known"
    masked = redact(message, ["p@ss#w0rd"])
    assert "w0rd" not in masked
    assert masked.endswith("Name or service not known")


def test_redact_leaves_text_without_passwords_alone() -> None:
    text = 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    assert redact(text) == text
    assert redact(text, ["unrelated-secret"]) == text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@ss#w0rd@h/db", {"p@ss#w0rd"}),
        ("postgresql://u:p%40ss@h/db", {"p%40ss", "p@ss"}),
        ("host=h password='a b' dbname=d", {"a b"}),
        ("host=h password=a b c", {"a b c"}),
        ("postgresql://u@h/db", set()),
    ],
    ids=["unescaped", "encoded", "quoted", "unquoted-spaces", "none"],
)
def test_passwords_in_reads_what_libpq_and_a_person_mean(url: str, expected: set[str]) -> None:
    from pgqueue.settings import passwords_in

    assert set(passwords_in(url)) == expected


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_connect_timeout_must_be_positive_and_finite(value: str) -> None:
    with pytest.raises(ValidationError, match=r"connect_timeout|CONNECT_TIMEOUT"):
        Settings(connect_timeout=value)  # type: ignore[arg-type]
