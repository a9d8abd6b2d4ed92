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

import pydantic
import typer

from pgqueue.embedded import database_url
from pgqueue.errors import ConfigurationError, FailedJobNotFoundError, PgQueueError
from pgqueue.failed import FailedJob, FailedJobs
from pgqueue.job import validate_queue_name
from pgqueue.maintenance import cleanup as prune_failed_jobs
from pgqueue.queue import Queue
from pgqueue.settings import Settings, parse_duration
from pgqueue.stats import Stats, watch_stats
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
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
                for error in exc.errors()
            )
            typer.secho(f"error: invalid configuration: {problems}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None

    return wrapper


def _settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the CLI flags that were given winning."""
    given = {name: value for name, value in overrides.items() if value is not None}
    # Flags go through validation like the environment does: a bad --schema is refused too.
    settings = Settings(**given)
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
    typer.Option("--schema", help="Schema holding pgqueue's tables (env PGQUEUE_SCHEMA)"),
]


@app.command()
@_one_line_errors
def migrate(
    schema: SchemaOption = None,
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Create or upgrade pgqueue's tables (safe to run from several processes at once)."""
    settings = _settings(db_schema=schema)
    from pgqueue import migrate as migrations  # alembic is slow to import; only this needs it

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
            help="Module(s) defining job types; repeat or comma-separate (env PGQUEUE_IMPORTS)",
        ),
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", help="Queues to serve, in priority order (comma list) (default: default)"
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs run at once (default: 50)")
    ] = None,
    sleep: Annotated[
        float | None,
        typer.Option(
            min=0.001, help="Seconds between polls when no notification arrives (default: 1)"
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
        typer.Option(min=0, help="Seconds running jobs get to finish on SIGTERM (default: 30)"),
    ] = None,
    lease: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds a claim lasts without a heartbeat (default: 30)"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port (child i of --processes: PORT+i)",
        ),
    ] = None,
    cleanup_interval: Annotated[
        float | None,
        typer.Option(
            min=1, help="Prune failed_jobs past retention every this many seconds (default: off)"
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
        cleanup_interval=cleanup_interval,
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
        cleanup_interval=settings.cleanup_interval,
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


# ---- failed jobs and retention: `pgqueue failed ...` and `pgqueue cleanup` --------------

failed_app = typer.Typer(
    name="failed",
    help="Inspect, retry and delete jobs that used their last try (the failed_jobs table).",
    no_args_is_help=True,
)
app.add_typer(failed_app)

QueueFilter = Annotated[str | None, typer.Option("--queue", help="Only jobs of this queue")]
TypeFilter = Annotated[
    str | None, typer.Option("--type", help="Only jobs of this type (its stored job_name)")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="JSON for scripts instead of a table")]


def _duration(text: str | None, flag: str) -> float | None:
    """A `--since`/`--older-than` value in seconds; a bad one is a one-line error."""
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigurationError(f"{flag}: {exc}") from None


def _format_duration(seconds: float) -> str:
    """30d, 12h, 90s: the largest unit that divides `seconds` evenly."""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _jobs_phrase(count: int) -> str:
    return f"{count} failed job{'' if count == 1 else 's'}"


def _report_ids(verb: str, asked: list[int], done: list[int]) -> None:
    """One line saying what happened; an error line (exit 1) naming the ids that were not there."""
    line = f"{verb} {_jobs_phrase(len(done))}"
    missing = sorted(set(asked) - set(done))
    if missing:
        raise FailedJobNotFoundError(
            f"{line}; no failed job with id {', '.join(map(str, missing))} (never failed, or "
            "already retried, forgotten or pruned)"
        )
    typer.echo(line)


def _print_failed_table(jobs: list[FailedJob], limit: int) -> None:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if not jobs:
        typer.echo("no failed jobs")
        return
    now = datetime.now(UTC)
    # One line per job: type and error share what the other columns leave, cut with an ellipsis
    # on a narrow terminal (`pgqueue failed show ID` has it all).
    table = Table(box=None, header_style="bold", expand=True)
    for column in ("id", "failed at", "ago", "queue", "type", "tries", "error"):
        ratio = {"type": 1, "error": 2}.get(column)
        table.add_column(column, no_wrap=True, ratio=ratio)
    for job in jobs:
        exception = job.exception_class.removeprefix("builtins.")
        error = f"{exception}: {job.exception_message}".splitlines()[0]
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    str(job.id),
                    job.failed_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                    _format_age((now - job.failed_at).total_seconds()),
                    job.queue,
                    job.job_type,
                    f"{job.attempts}/{job.max_tries}",
                    error[:200],
                )
            )
        )
    Console().print(table)
    if len(jobs) == limit:
        typer.echo(f"(the newest {limit}; --limit shows more)", err=True)


def _format_age(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@failed_app.command("list")
@_one_line_errors
def failed_list(
    queue: QueueFilter = None,
    job_type: TypeFilter = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only jobs that failed within this long: 30s, 15m, 1h, 7d"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs")] = 50,
    as_json: JsonFlag = False,
    schema: SchemaOption = None,
) -> None:
    """List failed jobs, newest first: when, where and why each one failed."""
    jobs = FailedJobs(_settings(db_schema=schema)).list(
        queue=queue, job_type=job_type, since=_duration(since, "--since"), limit=limit
    )
    if as_json:
        for job in jobs:
            typer.echo(json.dumps(job.to_json()))
    else:
        _print_failed_table(jobs, limit)


@failed_app.command("show")
@_one_line_errors
def failed_show(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="The failed job's id")],
    as_json: JsonFlag = False,
    schema: SchemaOption = None,
) -> None:
    """Show one failed job: payload, exception, full traceback, attempts, times and worker."""
    job = FailedJobs(_settings(db_schema=schema)).show(job_id)
    if as_json:
        typer.echo(json.dumps(job.to_json()))
        return
    fields = {
        "queue": job.queue,
        "type": job.job_type,
        "attempts": f"{job.attempts} of {job.max_tries}",
        "priority": job.priority,
        "worker": job.worker_id or "-",
        "enqueued at": job.enqueued_at.isoformat(),
        "failed at": job.failed_at.isoformat(),
        "exception": f"{job.exception_class}: {job.exception_message}",
    }
    typer.echo(f"failed job {job.id}")
    for name, value in fields.items():
        typer.echo(f"  {name:<12} {value}")
    typer.echo("payload:")
    typer.echo(json.dumps(job.payload, indent=2, sort_keys=True))
    typer.echo("traceback:")
    typer.echo(job.traceback.rstrip() or "(none recorded)")


@failed_app.command("retry")
@_one_line_errors
def failed_retry(
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="[ID]...", help="Failed jobs to retry")
    ] = None,
    retry_all: Annotated[
        bool, typer.Option("--all", help="Retry every failed job (or those --queue/--type pick)")
    ] = False,
    queue: QueueFilter = None,
    job_type: TypeFilter = None,
    schema: SchemaOption = None,
) -> None:
    """Put failed jobs back in their queue with fresh tries (same id); ready at once."""
    if retry_all == bool(ids):
        raise ConfigurationError("give the ids of the jobs to retry, or --all (not both)")
    if not retry_all and (queue or job_type):
        raise ConfigurationError("--queue and --type go with --all")
    failed = FailedJobs(_settings(db_schema=schema))
    if retry_all:
        typer.echo(f"retried {_jobs_phrase(failed.retry_all(queue=queue, job_type=job_type))}")
    else:
        asked = ids or []
        _report_ids("retried", asked, failed.retry(asked))


@failed_app.command("forget")
@_one_line_errors
def failed_forget(
    ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Failed jobs to delete")],
    schema: SchemaOption = None,
) -> None:
    """Delete failed jobs for good."""
    _report_ids("forgot", ids, FailedJobs(_settings(db_schema=schema)).forget(ids))


@failed_app.command("flush")
@_one_line_errors
def failed_flush(
    queue: QueueFilter = None,
    older_than: Annotated[
        str | None, typer.Option(help="Only jobs that failed longer ago than this: 12h, 7d")
    ] = None,
    schema: SchemaOption = None,
) -> None:
    """Delete every failed job (or those --queue and --older-than pick), in batches."""
    cutoff = _duration(older_than, "--older-than")
    flushed = FailedJobs(_settings(db_schema=schema)).flush(queue=queue, older_than=cutoff)
    typer.echo(f"flushed {_jobs_phrase(flushed)}")


@app.command()
@_one_line_errors
def cleanup(
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Prune failed jobs that failed longer ago than this: 30d, 12h "
            "(default: PGQUEUE_RETENTION, else 30d)"
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Rows deleted per statement (each its own transaction)")
    ] = 1000,
    rest: Annotated[
        float,
        typer.Option(
            min=0,
            help="After each batch, pause this many times as long as it took, leaving workers "
            "room (0: no pause)",
        ),
    ] = 1.0,
    schema: SchemaOption = None,
) -> None:
    """Prune failed_jobs past retention in short batches; safe from cron, and run twice at once."""
    settings = _settings(db_schema=schema, retention=_duration(older_than, "--older-than"))
    pruned = prune_failed_jobs(settings, batch_size=batch_size, rest=rest)
    typer.echo(
        f"pruned {_jobs_phrase(pruned)} that failed over {_format_duration(settings.retention)} ago"
    )


# ---- stats, doctor and roles -----------------------------------------------------------------


@app.command()
@_one_line_errors
def stats(
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Read again every --interval seconds until Ctrl-C, with completions/min"
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between reads with --watch")
    ] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document per read (a line each), for scripts")
    ] = False,
    schema: SchemaOption = None,
) -> None:
    """Per queue: ready, scheduled, running, failed (last hour and total), oldest wait, done/min.

    Completions per minute come from the workers' counters, so they need two reads: --watch
    shows them (over the last minute once it has run that long); a single read shows "-".
    """
    reads = watch_stats(_settings(db_schema=schema), interval if watch else None)
    try:
        if as_json:
            for current in reads:
                typer.echo(json.dumps(current.to_json()))
        elif not watch:
            from rich.console import Console

            Console().print(_stats_table(next(reads)))
        else:
            from rich.live import Live

            with Live(auto_refresh=False) as live:
                for current in reads:
                    live.update(_stats_table(current), refresh=True)
    except KeyboardInterrupt:
        return
    finally:
        reads.close()  # closes the connection now, not when garbage collected


def _stats_table(current: Stats) -> Any:
    """The stats as a rich table; done/min is "-" when unknown, with the reason in the caption."""
    from rich.table import Table

    from pgqueue.doctor import format_duration

    table = Table(
        title=f"pgqueue stats at {current.taken_at.astimezone():%H:%M:%S}",
        box=None,
        header_style="bold",
    )
    table.add_column("queue")
    for column in ("ready", "scheduled", "running", "failed 1h", "failed", "oldest wait"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("done/min", justify="right", no_wrap=True)
    for queue in current.queues:
        wait = queue.oldest_wait_seconds
        rate = queue.completed_per_minute
        table.add_row(
            queue.queue,
            *(
                f"{number:,}"
                for number in (
                    queue.ready,
                    queue.scheduled,
                    queue.running,
                    queue.failed_last_hour,
                    queue.failed_total,
                )
            ),
            "-" if wait is None else format_duration(wait),
            "-" if rate is None else f"{rate:,.1f}",
        )
    if current.window_seconds is None:
        table.caption = "done/min needs two reads: run with --watch"
    else:
        window = current.window_seconds
        span = f"{window:.1f}s" if window < 10 else format_duration(window)
        table.caption = (
            f"all queues: {current.completed_per_minute or 0:,.1f} done/min over the last {span}"
        )
        if any(queue.completed_per_minute is None for queue in current.queues):
            table.caption += "\n'-': a worker serving several queues completed jobs"
    if not current.queues:
        table.caption = f"no queues yet; {table.caption}"
    return table


@app.command()
@_one_line_errors
def doctor(schema: SchemaOption = None) -> None:
    """Check what takes PostgreSQL queues down: one OK/WARN/FAIL line each; exit 1 on any FAIL.

    Schema revision, dead tuples and size of the jobs table, the oldest transaction holding back
    vacuum (by pid), expired leases nobody rescued, workers' heartbeats, NOTIFY queue usage.
    """
    from pgqueue.doctor import Verdict, run_doctor

    colors = {Verdict.OK: "green", Verdict.WARN: "yellow", Verdict.FAIL: "red"}
    checks = run_doctor(_settings(db_schema=schema))
    for check in checks:
        typer.secho(str(check), fg=colors[check.verdict])
    if any(check.verdict is Verdict.FAIL for check in checks):
        raise typer.Exit(1)


@app.command()
@_one_line_errors
def roles(
    print_sql: Annotated[
        bool, typer.Option("--print-sql", help="Print the SQL (pgqueue never changes roles itself)")
    ] = False,
    worker_role: Annotated[
        str | None,
        typer.Option(help="Role that runs workers and upkeep (default: pgqueue_worker)"),
    ] = None,
    dispatch_role: Annotated[
        str | None,
        typer.Option(help="Role that applications enqueue with (default: pgqueue_dispatch)"),
    ] = None,
    schema: SchemaOption = None,
) -> None:
    """SQL for least-privilege worker and dispatch-only roles, to review and run as an admin."""
    from pgqueue.roles import DEFAULT_DISPATCH_ROLE, DEFAULT_WORKER_ROLE, roles_sql

    if not print_sql:
        raise ConfigurationError(
            "pass --print-sql: pgqueue prints the SQL for an administrator to review and run"
        )
    typer.echo(
        roles_sql(
            schema or Settings().db_schema,
            worker_role or DEFAULT_WORKER_ROLE,
            dispatch_role or DEFAULT_DISPATCH_ROLE,
        ),
        nl=False,
    )


def main() -> None:
    """Entry point of the `pgqueue` console script."""
    app()
