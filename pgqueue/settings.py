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

    Parameters:
        database_url: `PGQUEUE_DATABASE_URL`, a libpq URL or conninfo string. Unset: pgqueue starts
            (or reuses) its embedded PostgreSQL and says so.
        db_schema: `PGQUEUE_SCHEMA`, the schema holding pgqueue's tables (default `pgqueue`).
        imports: `PGQUEUE_IMPORTS`, comma-separated modules that define job types.
        max_payload_bytes: `PGQUEUE_MAX_PAYLOAD_BYTES`, the largest JSON payload accepted (64 KiB).
        embedded_dir: `PGQUEUE_EMBEDDED_DIR`, where the embedded cluster keeps its data.
        pool_size: `PGQUEUE_POOL_SIZE`, connections a `Queue` keeps for dispatch without `conn=`.
        queue, concurrency, sleep, max_jobs, max_time, max_tries, timeout, grace, lease,
        rescue_interval: `PGQUEUE_<NAME>`, defaults for the `pgqueue work` flags of the same name.
    """

    model_config = SettingsConfigDict(
        env_prefix="PGQUEUE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    database_url: SecretStr | None = None
    db_schema: str = Field(default=DEFAULT_SCHEMA, validation_alias="PGQUEUE_SCHEMA")
    imports: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_payload_bytes: int = Field(default=64 * 1024, gt=0)
    embedded_dir: Path | None = None
    pool_size: int = Field(default=4, ge=1)

    # Worker defaults: `pgqueue work` flags override these, and these override the job class.
    queue: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    concurrency: int = Field(default=50, ge=1)
    sleep: float = Field(default=1.0, gt=0)
    max_jobs: int | None = Field(default=None, ge=1)
    max_time: float | None = Field(default=None, gt=0)
    max_tries: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    grace: float = Field(default=30.0, ge=0)
    lease: float = Field(default=30.0, gt=0)
    rescue_interval: float = Field(default=10.0, gt=0)

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

    @property
    def redacted_url(self) -> str:
        """The database URL with its password masked, for logs and messages ('embedded' if unset)."""
        if self.database_url is None:
            return "embedded"
        return redact_url(self.database_url.get_secret_value())


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
