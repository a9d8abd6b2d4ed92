"""Configuration: environment (or `.env`) → `Settings` → the objects that use it.

Library code never reads `os.environ`; it is handed a `Settings`. CLI flags default to `None` and
override what `Settings` read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SCHEMA = "pgqueue"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_CONNINFO_PASSWORD = re.compile(
    r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)+)", re.IGNORECASE
)


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
        description="schema holding pgqueue's tables",
    )
    imports: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated modules defining job types (--app)"
    )
    max_payload_bytes: int = Field(
        default=64 * 1024, gt=0, description="largest JSON payload dispatch accepts"
    )
    embedded_dir: Path | None = Field(
        default=None,
        description="the embedded cluster's directory; unset: ~/.local/share/pgqueue/embedded "
        "(/var/lib/pgqueue/embedded for root)",
    )
    pool_size: int = Field(
        default=4, ge=1, description="connections a Queue keeps for dispatch without conn="
    )

    # Worker defaults: `pgqueue work` flags override these, and these override the job class.
    queue: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["default"], description="queues a worker serves, in order"
    )
    concurrency: int = Field(default=50, ge=1, description="jobs a worker runs at once")
    sleep: float = Field(
        default=1.0, gt=0, description="seconds between polls when no notification arrives"
    )
    max_jobs: int | None = Field(
        default=None, ge=1, description="a worker stops after this many jobs"
    )
    max_time: float | None = Field(
        default=None, gt=0, description="a worker stops after this many seconds"
    )
    max_tries: int | None = Field(default=None, ge=1, description="overrides every job's max_tries")
    timeout: float | None = Field(
        default=None, gt=0, description="overrides every job's timeout, in seconds"
    )
    grace: float = Field(
        default=30.0, ge=0, description="seconds running jobs get to finish after SIGTERM"
    )
    lease: float = Field(
        default=30.0, gt=0, description="seconds a claim holds a job between heartbeats"
    )
    rescue_interval: float = Field(
        default=10.0, gt=0, description="seconds between a worker's rescues of expired leases"
    )

    worker_synchronous_commit: bool = Field(
        default=False,
        description="make workers wait for a WAL flush on each claim and outcome; off: after a "
        "PostgreSQL crash the last outcomes may be lost and those jobs run again",
    )
    cleanup_interval: float | None = Field(
        default=None,
        gt=0,
        description="seconds between prunes of failed_jobs by each worker; unset: off "
        "(schedule `pgqueue cleanup` instead)",
    )
    retention: float = Field(
        default=30 * 86400.0,
        ge=0,
        description="how long failed_jobs rows are kept before `pgqueue cleanup` prunes them: "
        "seconds or a duration such as 30d",
    )

    @field_validator("db_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(
                f"PGQUEUE_SCHEMA={value!r} is not a plain SQL identifier: use letters, digits and "
                "underscores (and $), starting with a letter or underscore, at most 63 characters"
            )
        return value

    @field_validator("imports", "queue", mode="before")
    @classmethod
    def _split_imports(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
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
        return redact_url(self.database_url.get_secret_value())


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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


def redact_url(url: str) -> str:
    """Mask the password in a libpq URL or conninfo string, keeping what helps debugging."""
    if "://" not in url:
        return _CONNINFO_PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in credentials else f"{user}@{host}"
    query = re.sub(r"(password=)[^&]*", r"\1***", parts.query, flags=re.IGNORECASE)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
