"""Configuration: environment (or `.env`) → `Settings` → the objects that use it.

Library code never reads `os.environ`; it is handed a `Settings`. CLI flags default to `None` and
override what `Settings` read.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SCHEMA = "pgqueue"
MASK = "***"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")

# Bounds of the numeric settings (and of the CLI flags that override them, which are checked
# against these same fields): what PostgreSQL and the event loop can take, and past which a value
# is a typo, not a plan. docs/configuration.md lists each field's range.
INT4_MAX = 2**31 - 1  # PostgreSQL's integer: max_tries and the workers' concurrency are stored so
MAX_SECONDS = 100 * 365.25 * 86400  # 100 years: now() plus it is always a valid timestamp
MAX_CONCURRENCY = 10_000
MAX_POOL_SIZE = 1_000
MAX_PAYLOAD_BYTES = 2**28 - 1  # PostgreSQL's limit for one jsonb value (256 MiB)


class Settings(BaseSettings):
    """pgqueue's settings, read from `PGQUEUE_*` environment variables and a `.env` file.

    Each field's description says what it does; docs/configuration.md lists them all, generated
    from these fields. CLI flags override the settings, and worker settings override job classes.
    """

    model_config = SettingsConfigDict(
        env_prefix="PGQUEUE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    database_url: SecretStr | None = Field(
        default=None,
        description="libpq URL or conninfo string; unset: the embedded PostgreSQL, announced",
    )
    db_schema: str = Field(
        default=DEFAULT_SCHEMA,
        validation_alias="PGQUEUE_SCHEMA",
        description="schema holding pgqueue's tables: a plain SQL identifier (letters, digits, "
        "_ and $, not starting with a digit, at most 63 characters)",
    )
    imports: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated modules defining job types (--app)"
    )
    middleware: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated middleware run around every attempt, outermost first, "
        "each as module:name (--middleware; docs/workers.md)",
    )
    max_payload_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        le=MAX_PAYLOAD_BYTES,
        description="largest JSON payload dispatch accepts",
    )
    embedded_dir: Path | None = Field(
        default=None,
        description="the embedded PostgreSQL's directory, each user's own (docs/embedded.md); "
        "unset: $XDG_DATA_HOME/pgqueue/embedded, else ~/.local/share/pgqueue/embedded (root's "
        "too)",
    )
    pool_size: int = Field(
        default=4,
        ge=1,
        le=MAX_POOL_SIZE,
        description="connections a Queue keeps for dispatch without conn=",
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds to wait for PostgreSQL to accept a connection before failing with "
        "its reason (libpq counts whole seconds, at least 2); a connect_timeout in the URL wins",
    )

    # Worker defaults: `pgqueue work` flags override these, and these override the job class.
    queue: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="queues a worker serves, in order (comma-separated; at least one); unset: "
        "each queue the job types of PGQUEUE_IMPORTS declare, and default",
    )
    concurrency: int = Field(
        default=50, ge=1, le=MAX_CONCURRENCY, description="jobs a worker runs at once"
    )
    sleep: float = Field(
        default=1.0,
        ge=0.001,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="seconds between polls when no notification arrives",
    )
    max_jobs: int | None = Field(
        default=None, ge=1, le=INT4_MAX, description="a worker stops after this many jobs"
    )
    max_time: float | None = Field(
        default=None,
        ge=0.001,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="a worker stops after this many seconds",
    )
    max_tries: int | None = Field(
        default=None, ge=1, le=INT4_MAX, description="overrides every job's max_tries"
    )
    timeout: float | None = Field(
        default=None,
        ge=0.001,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="overrides every job's timeout, in seconds",
    )
    grace: float = Field(
        default=30.0,
        ge=0,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="seconds running jobs get to finish after SIGTERM",
    )
    lease: float = Field(
        default=30.0,
        ge=0.1,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="seconds a claim holds a job between heartbeats",
    )
    rescue_interval: float = Field(
        default=10.0,
        gt=0,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="seconds between a worker's rescues of expired leases",
    )

    worker_synchronous_commit: bool = Field(
        default=True,
        description="workers wait for a WAL flush on each claim and outcome, so a finished job "
        "never costs another try after a PostgreSQL crash; false: about 10% faster, but a crash "
        "may lose the last outcomes, and those jobs run again with a try spent",
    )
    cleanup_interval: float | None = Field(
        default=None,
        ge=1,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="seconds between prunes of failed_jobs by each worker; unset: off "
        "(schedule `pgqueue cleanup` instead)",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="address a worker's metrics server (`--metrics-port`) listens on; "
        "0.0.0.0 (every interface) lets a scraper on another machine reach it",
    )
    retention: float = Field(
        default=30 * 86400.0,
        ge=0,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="how long failed_jobs rows are kept before `pgqueue cleanup` prunes them: "
        "seconds or a duration such as 30d",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _named_after_variables(exc) from None

    @field_validator("db_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        return validate_schema_name(value)

    @field_validator("imports", "queue", "middleware", mode="before")
    @classmethod
    def _split_imports(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("middleware")
    @classmethod
    def _middleware_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            module, _, name = path.partition(":")
            if not module or not name.isidentifier():
                raise ValueError(f"{path!r} is not module:name (e.g. myapp.middleware:sentry)")
        return value

    @field_validator("queue")
    @classmethod
    def _some_queue(cls, value: list[str] | None) -> list[str] | None:
        # An empty list would start a worker that serves nothing and says nothing about it.
        if value is not None and not value:
            raise ValueError("no queue name given: name at least one queue, e.g. default")
        return value

    @field_validator("retention", mode="before")
    @classmethod
    def _retention_is_duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError as exc:
                raise ValueError(f"PGQUEUE_RETENTION: {exc}") from None
        return value

    @property
    def redacted_url(self) -> str:
        """The database URL with its password masked, for logs and messages ('embedded' if unset)."""
        if self.database_url is None:
            return "embedded"
        return self.redact(self.database_url.get_secret_value())

    def redact(self, text: str) -> str:
        """`text` with every password masked: `redact` with the configured password as a secret.

        The password is read out of `database_url` in every shape libpq or a person could mean
        (URL or conninfo, percent-encoded or not, holding unescaped `@`, `#`, `/`, `?` or `:`), so
        an error that echoes it, or a piece of it that libpq misread as a host or port, is masked
        even where it no longer looks like a URL.
        """
        url = None if self.database_url is None else self.database_url.get_secret_value()
        return redact(text, passwords_in(url) if url else ())


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def validate_schema_name(name: str) -> str:
    """Return `name` if it can name pgqueue's schema, else raise ValueError saying why.

    A plain SQL identifier: letters, digits, underscores and `$`, starting with a letter or an
    underscore, at most 63 characters. Every command and `roles_sql` take the same names.
    """
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"{name!r} is not a plain SQL identifier: use letters, digits and underscores "
            "(and $), starting with a letter or underscore, at most 63 characters"
        )
    return name


def variable_name(field: str) -> str:
    """The environment variable that sets the `Settings` field `field`: `PGQUEUE_LEASE`."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"PGQUEUE_{field.upper()}"


def _named_after_variables(exc: ValidationError) -> ValidationError:
    """`exc` with each error located at the environment variable a user sets, not the field."""
    errors = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if loc and isinstance(loc[0], str) and loc[0] in Settings.model_fields:
            error["loc"] = (variable_name(loc[0]), *loc[1:])
        errors.append(error)
    return ValidationError.from_exception_data(exc.title, errors)  # type: ignore[arg-type]


def parse_duration(text: str) -> float:
    """Seconds in a duration written as seconds (`90`) or a number and a unit (`30s`, `15m`, `1h`,
    `7d`, `2w`), the form retention and `--since`/`--older-than` flags take.

    Raises ValueError, saying what the accepted forms are, for anything else.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: use seconds or a number with a unit s, m, h, d or w "
            "(e.g. 90, 30s, 15m, 1h, 7d)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


# Redaction. Every rule errs towards masking more: a masked host name costs a look at the
# configuration, a leaked password costs a rotation.

# A URL anywhere in a text, with any scheme (a misspelt one too), up to the next whitespace.
# It starts only where a scheme can start (the lookbehind), so a long run of letters is scanned
# once, not once per position: redaction stays linear on a megabyte of error text.
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z0-9+.\-]*://\S*")
# A URL query parameter; its key is compared percent-decoded, as libpq reads it.
_URL_PARAMETER = re.compile(r"[?&]([^=&\s]*)=([^&\s]*)")
# `password=value` in a conninfo string: a value in quotes (an unterminated one runs to the end)
# or up to the next whitespace, with libpq's backslash escapes. `sslpassword` matches too.
_CONNINFO_PASSWORD = re.compile(
    r"password\s*=\s*('(?:[^'\\]|\\[\s\S])*(?:'|\\?\Z)|(?:[^\s\\]|\\[\s\S]|\\\Z)+)",
    re.IGNORECASE,
)
# 'password': 'value' as a Python dict or JSON object prints it (a conninfo_to_dict result).
_QUOTED_PASSWORD = re.compile(
    r"""(["'])(?:ssl)?password\1\s*:\s*("(?:[^"\\]|\\[\s\S])*"|'(?:[^'\\]|\\[\s\S])*')""",
    re.IGNORECASE,
)
# libpq's conninfo and URL parse errors quote the value they choked on, which is often the
# password itself (a bad percent-escape in it, a space in an unquoted one).
_LIBPQ_ECHO = re.compile(
    r"(?:invalid percent-encoded token: |forbidden value %00 in percent-encoded value: |"
    r'URI query parameter: |missing "=" after )"(.*)"'
)
# Where libpq splits a URL: a password holding these unescaped spills into host, port, dbname.
_URL_DELIMITERS = re.compile(r"[@:/?,&=\s]")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every password in it replaced by `***` (always three stars, whatever the
    length), for messages, logs and reprs.

    Masked: the password in a URL anywhere in the text (any scheme, a misspelt one too; the
    password runs from the first `:` after the user to the last `@`, so unescaped `@`, `#`, `/`,
    `?` and `:` in it are covered), `password=`/`sslpassword=` URL query parameters (keys
    percent-decoded), conninfo `password=value` (quoted, escaped or unterminated), `'password':
    'value'` pairs, and the value libpq quotes in its parse errors. Then every literal in
    `secrets`, raw, percent-decoded and percent-encoded, wherever it appears; where a secret holds
    characters at which libpq splits a URL, a quoted word holding one of its pieces (libpq read
    it as a host or port and echoed it) is masked whole.
    """
    spans: list[tuple[int, int]] = []
    urls: list[tuple[int, int]] = []
    for match in _URL.finditer(text):
        urls.append(match.span())
        spans.extend(_url_password_spans(match.group(), match.start()))
    for match in _CONNINFO_PASSWORD.finditer(text):
        if not any(start <= match.start() < end for start, end in urls):
            spans.append(match.span(1))
    spans.extend(match.span(2) for match in _QUOTED_PASSWORD.finditer(text))
    for match in _LIBPQ_ECHO.finditer(text):
        echoed = match.group(1)
        if not ("://" in echoed and "@" in echoed):  # a URL: its own rule keeps the rest legible
            spans.append(match.span(1))
    for secret in secrets:
        spans.extend(_secret_spans(text, secret))
    return _mask(text, spans)


def redact_url(url: str) -> str:
    """Mask the password in a libpq URL or conninfo string, keeping what helps debugging."""
    return redact(url, passwords_in(url))


@functools.cache
def passwords_in(url: str) -> tuple[str, ...]:
    """Every string `url` (a libpq URL or conninfo) may hold as its password: what libpq reads,
    and what a person meant when the password holds characters a URL should have escaped."""
    found: set[str] = set()
    if "://" in url:
        rest = url.split("://", 1)[1]
        userinfo = rest[: max(rest.rfind("@"), 0)]
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
        for match in _URL_PARAMETER.finditer(url):
            if unquote(match.group(1)).lower().endswith("password"):
                found.add(match.group(2))
    else:
        for match in _CONNINFO_PASSWORD.finditer(url):
            # What libpq reads, and what a person meant by an unquoted password with spaces in
            # it (up to the next `key=`); each as written and with libpq's escapes undone.
            intended = re.match(r"(.*?)(?=\s+\w+\s*=|\Z)", url[match.start(1) :], re.DOTALL)
            for value in (match.group(1), intended.group(1) if intended else ""):
                if len(value) > 1 and value[0] == value[-1] == "'":
                    value = value[1:-1]
                found.add(value)
                found.add(re.sub(r"\\([\s\S])", r"\1", value))
    found.update(_libpq_passwords(url))
    found.discard("")
    # A shorter reading inside a longer one (libpq stops at the first `@`) is masked wherever
    # the longer one is; alone it would mask every such letter in every message.
    return tuple(sorted(p for p in found if not any(p != q and p in q for q in found)))


def _libpq_passwords(url: str) -> list[str]:
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return []
    return [str(params[key]) for key in ("password", "sslpassword") if params.get(key)]


def _url_password_spans(token: str, offset: int) -> list[tuple[int, int]]:
    start = token.index("://") + 3
    spans = []
    at = token.rfind("@", start)
    colon = token.find(":", start, at) if at != -1 else -1
    if colon != -1 and colon + 1 < at:
        spans.append((offset + colon + 1, offset + at))
    for match in _URL_PARAMETER.finditer(token, start):
        if unquote(match.group(1)).lower().endswith("password") and match.group(2):
            spans.append((offset + match.start(2), offset + match.end(2)))
    return spans


def _secret_spans(text: str, secret: str) -> list[tuple[int, int]]:
    spans = []
    for form in _forms(secret):
        index = text.find(form)
        while index != -1:
            spans.append((index, index + len(form)))
            index = text.find(form, index + 1)
    pieces = {piece for form in {secret, unquote(secret)} for piece in _spilled_pieces(form)}
    if pieces:
        for word in re.finditer(r"\S+", text):
            if ('"' in word.group() or "'" in word.group()) and any(
                piece in word.group() for piece in pieces
            ):
                spans.append(word.span())
    return spans


def _forms(secret: str) -> set[str]:
    """The secret as written, percent-decoded, percent-encoded the ways a URL may hold it, and
    escaped as a Python repr or JSON string shows it."""
    forms = {secret}
    for plain in {secret, unquote(secret)}:
        forms.update((plain, repr(plain)[1:-1], json.dumps(plain)[1:-1]))
        for safe in ("", "!$&'()*+,;=:", "!$&'()*+,;=:@/?"):
            encoded = quote(plain, safe=safe)
            forms.add(encoded)
            forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded))
    forms.discard("")
    return forms


def _spilled_pieces(password: str) -> list[str]:
    """The parts of a URL password that libpq reads as host, port or database: after the first
    `@` (libpq ends the password there), or all of it if a `/` comes first (libpq then sees no
    password at all and reads `user:password` as `host:port`)."""
    at, slash = password.find("@"), password.find("/")
    if at != -1 and (slash == -1 or at < slash):
        tail = password[at + 1 :]
    elif slash != -1:
        tail = password
    else:
        return []
    return [piece for piece in _URL_DELIMITERS.split(tail) if piece]


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each run of overlapping or touching spans replaced by one mask."""
    parts: list[str] = []
    position = 0
    for start, end in sorted(span for span in spans if span[0] < span[1]):
        if start > position:
            parts.append(text[position:start])
            parts.append(MASK)
        elif not parts or parts[-1] != MASK:
            parts.append(MASK)
        position = max(position, end)
    parts.append(text[position:])
    return "".join(parts)
