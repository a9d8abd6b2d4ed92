"""The `pgqueue` command: a thin typer shell over the library.

Each command builds `Settings`, calls one library function, and on a pgqueue error prints one line
and exits non-zero.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from pgqueue import migrate as migrations
from pgqueue.embedded import database_url
from pgqueue.errors import ConfigurationError, PgQueueError
from pgqueue.job import validate_queue_name
from pgqueue.queue import Queue
from pgqueue.settings import Settings
from pgqueue.supervisor import supervise
from pgqueue.worker import Worker, WorkerOptions

app = typer.Typer(
    name="pgqueue",
    help="A durable job queue that needs nothing but PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
R = TypeVar("R")


def _one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a pgqueue error into one line on stderr and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except PgQueueError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None

    return wrapper


def _settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the CLI flags that were given winning."""
    settings = Settings()
    given = {name: value for name, value in overrides.items() if value is not None}
    if given:
        settings = settings.model_copy(update=given)
    if settings.database_url is None:
        typer.secho(
            "PGQUEUE_DATABASE_URL is unset: using the embedded PostgreSQL in "
            f"{settings.embedded_dir or _embedded_dir()}",
            err=True,
            fg=typer.colors.YELLOW,
        )
    return settings


def _embedded_dir() -> str:
    from pgqueue.embedded import default_data_dir

    return str(default_data_dir())


SchemaOption = Annotated[
    str | None,
    typer.Option("--schema", help="Schema holding pgqueue's tables [env PGQUEUE_SCHEMA]"),
]


@app.command()
@_one_line_errors
def migrate(
    schema: SchemaOption = None,
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Create or upgrade pgqueue's tables (safe to run from several processes at once)."""
    settings = _settings(db_schema=schema)
    migrations.upgrade(database_url(settings), settings.db_schema, revision)
    typer.echo(f"schema {settings.db_schema!r} is at revision {revision}")


@app.command()
@_one_line_errors
def size(
    queue: Annotated[str, typer.Argument(help="Queue name")] = "default",
    schema: SchemaOption = None,
) -> None:
    """Print how many jobs wait in QUEUE (ready or scheduled)."""
    with Queue(_settings(db_schema=schema)) as jobs:
        typer.echo(jobs.size(queue))


class _TextFormatter(logging.Formatter):
    """`time level message key=value ...`: one line per event, fields from `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in _extra_fields(record).items())
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.getMessage()}"
        return f"{line} {fields}" if fields else line


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            **_extra_fields(record),
        }
        return json.dumps(document, default=str)


_STANDARD_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_FIELDS}


def _configure_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger("pgqueue")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.command()
@_one_line_errors
def work(
    app_modules: Annotated[
        list[str] | None,
        typer.Option(
            "--app",
            help="Module(s) defining job types; repeat or comma-separate [env PGQUEUE_IMPORTS]",
        ),
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", help="Queues to serve, in priority order (comma list) [default: default]"
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs run at once [default: 50]")
    ] = None,
    sleep: Annotated[
        float | None,
        typer.Option(
            min=0.001, help="Seconds between polls when no notification arrives [default: 1]"
        ),
    ] = None,
    max_jobs: Annotated[int | None, typer.Option(min=1, help="Stop after this many jobs")] = None,
    max_time: Annotated[
        float | None, typer.Option(min=0.001, help="Stop after this many seconds")
    ] = None,
    max_tries: Annotated[
        int | None, typer.Option(min=1, help="Override every job's max_tries")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Override every job's timeout (seconds)")
    ] = None,
    stop_when_empty: Annotated[
        bool, typer.Option("--stop-when-empty", help="Exit once no job is ready or running")
    ] = False,
    processes: Annotated[
        int, typer.Option(min=1, help="Worker processes under one supervising parent")
    ] = 1,
    grace: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds running jobs get to finish on SIGTERM [default: 30]"),
    ] = None,
    lease: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds a claim lasts without a heartbeat [default: 30]"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port (child i of --processes: PORT+i)",
        ),
    ] = None,
    log_format: Annotated[str, typer.Option(help="text or json")] = "text",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    schema: SchemaOption = None,
) -> None:
    """Run a worker: claim jobs from the queues and run them until stopped (SIGTERM drains)."""
    if log_format not in ("text", "json"):
        raise ConfigurationError("--log-format must be text or json")
    _configure_logging(log_format, log_level)
    settings = _settings(
        db_schema=schema,
        imports=_split(app_modules),
        queue=_split(queue),
        concurrency=concurrency,
        sleep=sleep,
        max_jobs=max_jobs,
        max_time=max_time,
        max_tries=max_tries,
        timeout=timeout,
        grace=grace,
        lease=lease,
    )
    if not settings.imports:
        raise ConfigurationError(
            "no job modules: pass --app myapp.jobs (or set PGQUEUE_IMPORTS); only job types "
            "defined there are ever run"
        )
    for module in settings.imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import --app module {module!r}: {exc}") from exc
    for name in settings.queue:
        validate_queue_name(name)
    if processes > 1:
        raise typer.Exit(supervise(processes, sys.argv[1:]))
    options = WorkerOptions(
        queues=settings.queue,
        concurrency=settings.concurrency,
        sleep=settings.sleep,
        max_jobs=settings.max_jobs,
        max_time=settings.max_time,
        max_tries=settings.max_tries,
        timeout=settings.timeout,
        stop_when_empty=stop_when_empty,
        grace=settings.grace,
        lease=settings.lease,
        rescue_interval=settings.rescue_interval,
        imports=settings.imports,
        metrics_port=metrics_port,
    )
    worker = Worker(settings, options)
    asyncio.run(worker.run())
    if worker.stopped_hard:
        raise typer.Exit(1)


@app.command()
@_one_line_errors
def demo(
    jobs: Annotated[int, typer.Option(min=10, help="Sample jobs to dispatch")] = 3000,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once")] = 50,
) -> None:
    """A first run: migrate, dispatch sample jobs, work them with live progress, show results."""
    from pgqueue.demo import run_demo

    settings = _settings()
    raise typer.Exit(run_demo(settings, jobs=jobs, concurrency=concurrency))


def main() -> None:
    """Entry point of the `pgqueue` console script."""
    app()
