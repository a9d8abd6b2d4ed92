"""The `pgqueue` command: a thin typer shell over the library.

Each command builds `Settings`, calls one library function and prints what it did. Errors are
handled in one place, the root command (`_Cli`): whatever a command raises becomes one line on
stderr, `error: ...`, with the database password masked, and an exit code:

- 2, a usage error: an unknown command or flag, a flag value out of its bounds (a flag that
  overrides a setting is held to that setting's constraints), an invalid `PGQUEUE_*` setting, or
  any other `ConfigurationError`;
- 1, a runtime error: the database (down, refusing the login, missing, not migrated), an id that
  is not there, an --app module that raised on import, a metrics port in use, anything unexpected;
- 130 after Ctrl-C.

`pgqueue --debug COMMAND ...` prints the traceback above that line.
"""

# No `from __future__ import annotations` here: typer reads every command's annotations on each
# run, and string annotations cost an eval each (about 20 ms of `pgqueue work`'s start-up).
import contextvars
import importlib
import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import psycopg
import pydantic
import typer
from typer.core import TyperGroup

from pgqueue.connection import translate
from pgqueue.embedded import database_url
from pgqueue.errors import (
    AppImportError,
    ConfigurationError,
    DispatchError,
    FailedJobNotFoundError,
    InvalidQueueNameError,
    JobNotFoundError,
    PgQueueError,
)
from pgqueue.job import validate_queue_name
from pgqueue.outcome import MAX_TRACEBACK_CHARS, clean_text
from pgqueue.settings import (
    INT4_MAX,
    MAX_SECONDS,
    Settings,
    parse_duration,
    redact,
    validate_schema_name,
    variable_name,
)

# Each command imports the library module it runs (the worker, failed_jobs, stats ...) when it
# runs: `pgqueue work` starts without loading what only the other commands use.
if TYPE_CHECKING:
    from pgqueue.embedded import EmbeddedCluster
    from pgqueue.failed import FailedJob, FailedJobs
    from pgqueue.stats import Stats

# Bounds of the flags that override no setting (those that do are held to the setting's own).
MAX_PROCESSES = 1024
MAX_BATCH_SIZE = 100_000
MAX_REST = 1000.0
MAX_JOB_ID = 2**63 - 1  # PostgreSQL's bigint, the type of the id columns
MAX_PORT = 65535


class _Cli(TyperGroup):
    """The root command: every error becomes one line on stderr and an exit code (see above)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.TyperException as exc:  # typer's usage errors: unknown flag, bad value ...
            message = exc.format_message()
            # A bare `pgqueue` (or `pgqueue failed`) asks for the help: it goes to stdout, exit 0.
            # typer itself tells this error by its name (its class is not public).
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(message)
                code = 0
            else:
                _error_line(message.replace("Value error, ", ""))
                code = exc.exit_code
        except typer.Abort:
            _error_line("aborted")
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        _built_settings.set(None)
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            raise typer.Exit(_report(exc, debug=bool(ctx.params.get("debug")))) from None


# Plain help, as click prints it (what Celery and RQ show): no boxes, no Python types beside
# the flags, readable at 80 columns and when piped. Each option says its default once, in
# brackets: `[default: 50]`, the setting's own for a flag that overrides one (`_default`).
app = typer.Typer(
    name="pgqueue",
    cls=_Cli,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from pgqueue import __version__

        typer.echo(f"pgqueue {__version__}")
        raise typer.Exit()


@app.callback()
def _global_flags(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="On an error, print its traceback above the one-line message"),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """A durable job queue that needs nothing but PostgreSQL.

    \b
    Examples:
      pgqueue migrate
      pgqueue work --app myapp.jobs
      pgqueue dispatch myapp.jobs.Welcome --app myapp.jobs --payload '{"id": 42}'
      pgqueue failed list
    """


# The Settings the running command built, so an error message can mask its password.
_built_settings: contextvars.ContextVar[Settings | None] = contextvars.ContextVar(
    "pgqueue_cli_settings", default=None
)


def _report(exc: Exception, *, debug: bool) -> int:
    """Print `exc` as one line on stderr, its traceback above with --debug; the exit code."""
    settings = _built_settings.get()
    mask = settings.redact if settings is not None else redact
    if debug:
        sys.stderr.write(mask("".join(traceback.format_exception(exc))))
    _error_line(mask(_describe(exc, settings)))
    return 2 if isinstance(exc, ConfigurationError | pydantic.ValidationError) else 1


def _describe(exc: Exception, settings: Settings | None) -> str:
    if isinstance(exc, psycopg.Error):  # one the library let through untranslated
        return _text(translate(exc, settings))
    if isinstance(exc, pydantic.ValidationError):
        return _invalid_configuration(exc, {})
    if isinstance(exc, PgQueueError):
        return _text(exc)
    return (
        f"unexpected {type(exc).__name__}: {_text(exc)} (`pgqueue --debug ...` prints the "
        "traceback)"
    )


def _text(exc: BaseException) -> str:
    """`str(exc)`, or a stand-in when its `__str__` raises."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose message cannot be printed>"


def _error_line(message: str) -> None:
    """`error: message` on stderr, on one line whatever the message holds."""
    typer.secho(f"error: {_escape(' '.join(message.split()))}", err=True, fg=typer.colors.RED)


# Flags named after something else than the setting they override.
_FLAGS = {"db_schema": "--schema", "imports": "--app", "retention": "--older-than"}
_FIELDS = {variable_name(field): field for field in Settings.model_fields}


def _invalid_configuration(exc: pydantic.ValidationError, given: dict[str, Any]) -> str:
    """One line naming, for each invalid setting, the flag that set it or else its variable."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        variable = str(loc[0]) if loc else ""
        field = _FIELDS.get(variable, variable)
        message = error["msg"].removeprefix("Value error, ").removeprefix(f"{variable}: ")
        if field in given:
            name = _FLAGS.get(field, f"--{field.replace('_', '-')}")
        elif (
            field != "database_url"
            and isinstance(error["input"], str)
            and repr(error["input"]) not in message
        ):
            name = f"{variable}={_brief(error['input'])}"
        else:
            name = variable or "settings"
        problems.append(f"{name}: {message}")
    return f"invalid configuration: {'; '.join(problems)}"


def _brief(value: str) -> str:
    return repr(value if len(value) <= 40 else f"{value[:40]}...")


def _settings(*, connects: bool = True, **flags: Any) -> Settings:
    """Settings from the environment, with the flags that were given (by field name) winning.

    An invalid value is a ConfigurationError naming the flag if one was given, else the
    environment variable. A command that `connects` announces the embedded PostgreSQL.
    """
    given = {field: value for field, value in flags.items() if value is not None}
    try:
        settings = Settings(**given)
    except pydantic.ValidationError as exc:
        raise ConfigurationError(_invalid_configuration(exc, given)) from None
    _built_settings.set(settings)
    if connects:
        _announce_embedded(settings)
    return settings


def _announce_embedded(settings: Settings) -> None:
    """Say on stderr that the embedded PostgreSQL is used, if it is."""
    if settings.database_url is None:
        typer.secho(
            "PGQUEUE_DATABASE_URL is unset: using the embedded PostgreSQL in "
            f"{_embedded_dir(settings)}",
            err=True,
            fg=typer.colors.YELLOW,
        )


def _embedded_dir(settings: Settings) -> str:
    from pgqueue.embedded import data_dir

    return str(data_dir(settings))


def _parser(annotation: Any) -> Callable[[str], Any]:
    """A typer parser validating a flag's text as the pydantic `annotation` (type, bounds,
    finiteness); what it refuses is a usage error naming the flag.

    The pydantic adapter is built when the flag is first parsed: typer makes every command's
    parsers on each run, and building them all would cost `pgqueue work` tens of milliseconds.
    """
    adapter: pydantic.TypeAdapter[Any] | None = None

    def parse(text: str) -> Any:
        nonlocal adapter
        if adapter is None:
            adapter = pydantic.TypeAdapter(annotation)
        try:
            return adapter.validate_python(text)
        except pydantic.ValidationError as exc:
            reason = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            raise typer.BadParameter(f"{_brief(str(text))}: {reason}") from None

    return parse


def _like(field: str) -> Callable[[str], Any]:
    """The parser of a flag that overrides the setting `field`: the setting's own constraints."""
    info = Settings.model_fields[field]
    return _parser(Annotated[info.annotation, info])


def _seconds(minimum: float) -> Callable[[str], Any]:
    """The parser of a duration flag that overrides no setting: finite, `minimum` to 100 years."""
    return _parser(
        Annotated[float, pydantic.Field(ge=minimum, le=MAX_SECONDS, allow_inf_nan=False)]
    )


def _whole(low: int, high: int) -> Callable[[str], Any]:
    """The parser of an integer flag that overrides no setting: `low` to `high`.

    A parser rather than typer's min/max, whose help shows `<int range> [1<=x<=1024]`.
    """
    return _parser(Annotated[int, pydantic.Field(ge=low, le=high)])


def _default(field: str, shown: Callable[[Any], str] | None = None) -> str:
    """What the help of a flag overriding the setting `field` ends with, the way typer shows a
    literal default: `[env var: PGQUEUE_CONCURRENCY; default: 50]` (no default when unset).
    `shown` writes the default (a duration as `30d`, say)."""
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    if default is None or default == []:
        return f"  [env var: {variable_name(field)}]"
    if shown is not None:
        default = shown(default)
    elif isinstance(default, list):
        default = ",".join(default)
    elif isinstance(default, float):
        default = f"{default:g}"
    return f"  [env var: {variable_name(field)}; default: {default}]"


def _schema_name(text: str) -> str:
    try:
        return validate_schema_name(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _queue_name(text: str) -> str:
    try:
        return validate_queue_name(text)
    except InvalidQueueNameError as exc:
        raise typer.BadParameter(str(exc)) from None


SchemaOption = Annotated[
    str | None,
    typer.Option(
        "--schema",
        parser=_schema_name,
        metavar="NAME",
        help=f"Schema holding pgqueue's tables{_default('db_schema')}",
    ),
]


@app.command()
def migrate(
    schema: SchemaOption = None,
    revision: Annotated[
        str, typer.Option(metavar="REVISION", help="Target alembic revision")
    ] = "head",
) -> None:
    """Create or upgrade pgqueue's tables (safe to run from several processes at once).

    \b
    Examples:
      pgqueue migrate
      PGQUEUE_SCHEMA=jobs pgqueue migrate
    """
    settings = _settings(db_schema=schema)
    from pgqueue import migrate as migrations  # alembic is slow to import; only this needs it

    migrations.upgrade(database_url(settings, migrate_new=False), settings.db_schema, revision)
    typer.echo(f"schema {settings.db_schema!r} is at revision {revision}")


@app.command()
def size(
    queue: Annotated[str, typer.Argument(parser=_queue_name, metavar="QUEUE", hidden=True)] = (
        "default"
    ),
    schema: SchemaOption = None,
) -> None:
    """Print how many jobs wait in QUEUE ("default" if not given), ready or scheduled.

    \b
    Example:
      pgqueue size emails
    """
    from pgqueue.queue import Queue

    settings = _settings(db_schema=schema)
    with Queue(settings) as jobs:  # its pool fails at once with the driver's reason
        typer.echo(jobs.size(queue))


YesFlag = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask first (for scripts and cron)")
]


def _confirm(question: str, yes: bool) -> None:
    """Ask `question` (default: no) unless --yes. With no terminal to ask on and no --yes, a
    usage error (exit 2) rather than a prompt that waits forever, or a guess."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"{question.rstrip('?')}? Not without --yes: stdin is not a terminal to ask on"
        )
    if not typer.confirm(question, default=False, err=True):
        typer.echo("nothing deleted", err=True)
        raise typer.Exit(1)


def _jobs_count(count: int) -> str:
    return f"{count:,} job{'' if count == 1 else 's'}"


@app.command()
def clear(
    queue: Annotated[str, typer.Argument(parser=_queue_name, metavar="QUEUE", hidden=True)],
    yes: YesFlag = False,
    schema: SchemaOption = None,
) -> None:
    """Empty QUEUE: delete every job waiting in it (ready or scheduled); print how many.

    Jobs a worker holds at that moment (running, or claimed ahead of a free slot) are left to
    finish; one that then fails with tries left comes back to the queue. failed_jobs is not
    touched (`pgqueue failed flush` empties it). Asks first, unless --yes.

    \b
    Examples:
      pgqueue clear emails
      pgqueue clear emails --yes
    """
    from pgqueue.queue import Queue

    settings = _settings(db_schema=schema)
    with Queue(settings) as jobs:
        if not yes:
            waiting = jobs.size(queue)
            _confirm(f"Delete the {_jobs_count(waiting)} waiting in queue {queue!r}?", yes)
        cleared = jobs.clear(queue)
    typer.echo(
        f"cleared {_jobs_count(cleared)} from queue {queue!r}; jobs running now were left to finish"
    )


@app.command()
def cancel(
    ids: Annotated[list[int], typer.Argument(metavar="ID", min=1, max=MAX_JOB_ID, hidden=True)],
    schema: SchemaOption = None,
) -> None:
    """Cancel jobs: a queued one never runs; a running one is stopped by its worker within
    about a second (an async handler is cancelled, a blocking one's process killed).

    Either way the job ends in failed_jobs as pgqueue.errors.JobCancelledError, and its
    failed() is not run. An id that is not queued or running (unknown, or already ended) is
    named on one error line (exit 1); the other ids are still cancelled.

    \b
    Examples:
      pgqueue cancel 42
      pgqueue cancel 42 43 44
    """
    from pgqueue.queue import Queue

    settings = _settings(db_schema=schema)
    with Queue(settings) as jobs:
        cancelled = [job_id for job_id in dict.fromkeys(ids) if jobs.cancel(job_id)]
    line = f"cancelled {_jobs_count(len(cancelled))}"
    missing = [job_id for job_id in dict.fromkeys(ids) if job_id not in cancelled]
    if missing:
        raise JobNotFoundError(
            f"{line}; no queued or running job with id {', '.join(map(str, missing))} (never "
            "dispatched, or already completed, failed or cancelled)"
        )
    typer.echo(line)


@app.command()
def dispatch(
    type_name: Annotated[str, typer.Argument(metavar="TYPE", hidden=True)],
    payload: Annotated[
        str, typer.Option(metavar="JSON", help="The job's fields, as a JSON object")
    ] = "{}",
    delay: Annotated[
        float | None,
        typer.Option(
            parser=_seconds(0), metavar="SECONDS", help="Run it this many seconds from now"
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            parser=_queue_name, metavar="QUEUE", help="Queue it goes to  [default: the class's]"
        ),
    ] = None,
    app_modules: Annotated[
        list[str] | None,
        typer.Option(
            "--app",
            metavar="MODULE",
            help=f"Module(s) defining job types; repeat or comma-separate{_default('imports')}",
        ),
    ] = None,
    schema: SchemaOption = None,
) -> None:
    """Enqueue one job of TYPE, a job type's stored name (`module.ClassName`, or its job_name),
    and print its id.

    TYPE must be defined by an --app (or PGQUEUE_IMPORTS) module; the payload is validated by
    that class, as `Queue.dispatch` does, and nothing is written when it is refused.

    \b
    Examples:
      pgqueue dispatch myapp.jobs.Welcome --app myapp.jobs --payload '{"id": 42}'
      pgqueue dispatch nightly-report --delay 3600 --queue reports
    """
    from pgqueue.job import job_type, registered_job_types
    from pgqueue.outcome import one_line
    from pgqueue.queue import Queue

    settings = _settings(db_schema=schema, imports=_split(app_modules))
    if not settings.imports:
        raise ConfigurationError(
            f"which module defines {type_name!r}? pass --app myapp.jobs (or set PGQUEUE_IMPORTS)"
        )
    _import_app(settings.imports, "--app" if app_modules else "PGQUEUE_IMPORTS")
    job_class = job_type(type_name)
    if job_class is None:
        import difflib

        known = sorted(registered_job_types())
        close = difflib.get_close_matches(type_name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; they define {', '.join(known)}"
        raise ConfigurationError(
            f"no job type named {type_name!r} in {', '.join(settings.imports)}"
            f"{hint if known else ': they define no job type'}"
        )
    try:
        fields = json.loads(payload)
    except ValueError as exc:
        raise ConfigurationError(f"--payload is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ConfigurationError(
            f"--payload must be a JSON object (the job's fields), got {_brief(payload)}"
        )
    try:
        job = job_class(**fields)
        with Queue(settings) as jobs:
            job_id = jobs.dispatch(job, delay=delay, queue=queue)
    except pydantic.ValidationError as exc:
        raise ConfigurationError(f"--payload for {type_name}: {one_line(str(exc))}") from None
    except DispatchError as exc:
        raise ConfigurationError(f"cannot dispatch {type_name}: {exc}") from None
    typer.echo(job_id)


class _CachedTimeFormatter(logging.Formatter):
    """A formatter whose time stamp (`2026-12-02 00:44:19,308`, as logging's default) renders
    the date and seconds once per second: a busy worker logs thousands of lines a second."""

    _second_stamp: tuple[int, str, str] = (-1, "", "")
    _iso = False  # ISO 8601 with the UTC offset instead: 2026-12-02T00:44:19.308+01:00

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, stamp, zone = self._second_stamp
        if int(record.created) != second:
            second = int(record.created)
            moment = self.converter(record.created)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S" if self._iso else "%Y-%m-%d %H:%M:%S", moment)
            offset = time.strftime("%z", moment)  # +0100
            zone = f"{offset[:3]}:{offset[3:]}" if self._iso else ""
            self._second_stamp = (second, stamp, zone)  # one assignment: threads see old or new
        if self._iso:
            return f"{stamp}.{int(record.msecs):03d}{zone}"
        return f"{stamp},{int(record.msecs):03d}"


class _TextFormatter(_CachedTimeFormatter):
    """`time level message key=value ...`: one line per event, fields from `extra`.

    Control characters in the message and the fields are escaped (`\\n`, `\\x1b`), so a value
    from a row or a handler (a job type holding a newline) can never forge a line of its own.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{_escape(key)}={_escape(_printable(value))}"
            for key, value in _extra_fields(record).items()
        )
        line = f"{self.formatTime(record)} {record.levelname:<7} {_escape(_message(record))}"
        if record.exc_info:
            # Still one line: a supervised service's failure carries its traceback, escaped.
            fields = f"{fields} traceback={_escape(_traceback_text(self, record))}".strip()
        return f"{line} {fields}" if fields else line


class _JsonFormatter(_CachedTimeFormatter):
    """One JSON object per line, for log shippers; json.dumps escapes every control character
    (and, ASCII-only, U+2028 and U+2029), so no value can break the line. The time is ISO 8601
    with the UTC offset (`2026-12-02T00:44:19.308+01:00`), which every shipper parses."""

    _iso = True

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "message": _message(record),
            **_extra_fields(record),
        }
        if record.exc_info:
            document["traceback"] = _traceback_text(self, record)
        return json.dumps(document, default=_printable)


def _traceback_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback, capped and with any password in it masked (it may quote a URL)."""
    assert record.exc_info is not None
    text = formatter.formatException(record.exc_info)
    return clean_text(text, MAX_TRACEBACK_CHARS, redact, keep_end=True)


_STANDARD_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(text: str) -> str:
    """`text` with each control character as its escape (`\\n`, `\\x1b`): one line, no
    terminal codes."""
    if text.isprintable():  # the usual case, and much cheaper than the substitution
        return text
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def _printable(value: object) -> str:
    """`str(value)`, or a stand-in when its `__str__` raises: a log line is never lost to it."""
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # arguments that do not fit the format: log what there is
        return f"{_printable(record.msg)} {_printable(record.args)}"


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
def work(
    ctx: typer.Context,
    app_modules: Annotated[
        list[str] | None,
        typer.Option(
            "--app",
            metavar="MODULE",
            help=f"Module(s) defining job types; repeat or comma-separate{_default('imports')}",
        ),
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            metavar="QUEUE",
            help="Queues to serve, in priority order (comma list); unset: each queue the --app "
            f"job types declare, and default{_default('queue')}",
        ),
    ] = None,
    middleware: Annotated[
        list[str] | None,
        typer.Option(
            "--middleware",
            metavar="MODULE:NAME",
            help="An async def mw(job, call_next) run around every attempt; repeat or "
            f"comma-separate, outermost first{_default('middleware')}",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            parser=_like("concurrency"),
            metavar="N",
            help=f"Jobs run at once{_default('concurrency')}",
        ),
    ] = None,
    sleep: Annotated[
        float | None,
        typer.Option(
            parser=_like("sleep"),
            metavar="SECONDS",
            help=f"Seconds between polls when no notification arrives{_default('sleep')}",
        ),
    ] = None,
    max_jobs: Annotated[
        int | None,
        typer.Option(
            parser=_like("max_jobs"),
            metavar="N",
            help=f"Stop after this many jobs{_default('max_jobs')}",
        ),
    ] = None,
    max_time: Annotated[
        float | None,
        typer.Option(
            parser=_like("max_time"),
            metavar="SECONDS",
            help=f"Stop after this many seconds{_default('max_time')}",
        ),
    ] = None,
    max_tries: Annotated[
        int | None,
        typer.Option(
            parser=_like("max_tries"),
            metavar="N",
            help=f"Override every job's max_tries{_default('max_tries')}",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            parser=_like("timeout"),
            metavar="SECONDS",
            help=f"Override every job's timeout (seconds){_default('timeout')}",
        ),
    ] = None,
    stop_when_empty: Annotated[
        bool, typer.Option("--stop-when-empty", help="Exit once no job is ready or running")
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            parser=_whole(1, MAX_PROCESSES),
            metavar="N",
            help=f"Worker processes under one supervising parent (1 to {MAX_PROCESSES})",
        ),
    ] = 1,
    grace: Annotated[
        float | None,
        typer.Option(
            parser=_like("grace"),
            metavar="SECONDS",
            help=f"Seconds running jobs get to finish on SIGTERM{_default('grace')}",
        ),
    ] = None,
    lease: Annotated[
        float | None,
        typer.Option(
            parser=_like("lease"),
            metavar="SECONDS",
            help=f"Seconds a claim lasts without a heartbeat{_default('lease')}",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            parser=_whole(1, MAX_PORT),
            metavar="PORT",
            help="Serve Prometheus metrics on this port (child i of --processes: PORT+i)",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Address the metrics server listens on (0.0.0.0: every interface)"
            f"{_default('metrics_host')}",
        ),
    ] = None,
    cleanup_interval: Annotated[
        float | None,
        typer.Option(
            parser=_like("cleanup_interval"),
            metavar="SECONDS",
            help="Prune failed_jobs past retention every this many seconds (unset: off)"
            f"{_default('cleanup_interval')}",
        ),
    ] = None,
    log_format: Annotated[
        Literal["text", "json"],
        typer.Option(
            case_sensitive=False,
            metavar="[text|json]",
            help="Log lines as text, or as JSON objects (one a line) for log shippers",
        ),
    ] = "text",
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"],
        typer.Option(
            case_sensitive=False,
            metavar="LEVEL",
            help="debug, info, warning or error (debug: a line per completed job)",
        ),
    ] = "info",
    schema: SchemaOption = None,
) -> None:
    """Run a worker: claim jobs from the queues and run them until stopped (SIGTERM drains).

    \b
    Examples:
      pgqueue work --app myapp.jobs
      pgqueue work --app myapp.jobs --queue critical,emails --concurrency 10
      pgqueue work --app myapp.jobs --stop-when-empty      # drain, then exit
    """
    _configure_logging(log_format, log_level)
    settings = _settings(  # the worker announces the embedded PostgreSQL itself
        connects=False,
        db_schema=schema,
        imports=_split(app_modules),
        middleware=_split(middleware),
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
        metrics_host=metrics_host,
    )
    if not settings.imports:
        # An error, not a worker idling: pgqueue never imports a module because a row names it
        # (RQ does), so without --app it could run no job at all, and would say nothing.
        raise ConfigurationError(
            "no job modules: pass --app myapp.jobs, the module defining your Job classes, run "
            "from the directory holding myapp/ (or set PGQUEUE_IMPORTS); `pgqueue demo` runs "
            "sample jobs without one"
        )
    for name in settings.queue or ():
        try:
            validate_queue_name(name)
        except InvalidQueueNameError as exc:
            raise ConfigurationError(f"{'--queue' if queue else 'PGQUEUE_QUEUE'}: {exc}") from None
    if metrics_port is not None and metrics_port + processes - 1 > MAX_PORT:
        raise ConfigurationError(
            f"--metrics-port {metrics_port} with --processes {processes}: the last child would "
            f"listen on port {metrics_port + processes - 1}, above {MAX_PORT}; pick a lower port"
        )
    _import_app(settings.imports, "--app" if app_modules else "PGQUEUE_IMPORTS")
    if settings.middleware:  # loaded now, once: a bad one is an error before any worker starts
        from pgqueue.worker import load_middleware

        for path in settings.middleware:
            load_middleware(path)
    # No notice of the embedded PostgreSQL here: the worker logs it (with its directory) as it
    # connects, and a second line saying the same would stand right above it.
    if processes > 1:
        # Imported here, before the fork, so each child starts with the worker already loaded.
        import pgqueue.signals
        import pgqueue.worker  # noqa: F401
        from pgqueue.supervisor import supervise

        debug = bool(ctx.find_root().params.get("debug"))

        def child(slot: int) -> int:
            port = None if metrics_port is None else metrics_port + slot
            try:
                return _run_worker(settings, stop_when_empty=stop_when_empty, metrics_port=port)
            except Exception as exc:
                return _report(exc, debug=debug)

        raise typer.Exit(supervise(processes, child))
    raise typer.Exit(
        _run_worker(settings, stop_when_empty=stop_when_empty, metrics_port=metrics_port)
    )


def _run_worker(settings: Settings, *, stop_when_empty: bool, metrics_port: int | None) -> int:
    """Run one worker until it stops, stopping on SIGTERM/SIGINT; the exit code (1: stopped hard)."""
    from pgqueue.signals import run_until_stopped
    from pgqueue.worker import Worker, WorkerOptions

    options = WorkerOptions.from_settings(
        settings, stop_when_empty=stop_when_empty, metrics_port=metrics_port
    )
    worker = Worker(settings, options)
    run_until_stopped(worker)
    return 1 if worker.stopped_hard else 0


def _import_app(modules: list[str], source: str) -> None:
    """Import each job module, from the current directory first as `python -m` would; one that
    raises anything is an AppImportError naming it."""
    _import_from_current_directory()
    for module in modules:
        try:
            importlib.import_module(module)
        except (Exception, SystemExit) as exc:  # a module may raise anything, sys.exit() too
            raise AppImportError(
                f"cannot import {source} module {module!r}: {_import_failure(exc, module)}"
            ) from exc


def _import_from_current_directory() -> None:
    """Put the current directory first on sys.path, as `python -m`, Celery's `-A` and RQ do.

    The console script's sys.path starts with its own bin directory, so `--app myapp.jobs` beside
    `myapp/` would not be found. What is imported later sees it too: the `--processes` children
    are forked from this process, and the blocking-job processes (spawned) start with this
    sys.path. PYTHONSAFEPATH (`python -P`) leaves sys.path alone, as for `python -m`.
    """
    if sys.flags.safe_path:
        return
    try:
        here = os.getcwd()
    except OSError:  # the directory was deleted under us: nothing there to import
        return
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _import_failure(exc: BaseException, module: str) -> str:
    """What went wrong importing `module`, with the file and line where it did."""
    if isinstance(exc, SyntaxError):
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename}:{exc.lineno})"
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    if (
        isinstance(exc, ModuleNotFoundError)
        and exc.name
        and f"{module}.".startswith(f"{exc.name}.")
    ):
        return _not_found(exc.name, module)
    frames = [  # the first frame is _import_app's own
        frame
        for frame in traceback.extract_tb(exc.__traceback__)[1:]
        if not frame.filename.startswith("<frozen") and frame.filename != importlib.__file__
    ]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {_text(exc)}{where}"


def _not_found(missing: str, module: str) -> str:
    """Why `module` (or `missing`, its package) was not found, and what to do about it."""
    if "/" in module or "\\" in module or module.endswith(".py"):
        dotted = module.removesuffix(".py").replace("\\", "/").strip("/").replace("/", ".")
        return f"give a module name, not a file: {dotted!r} for {module!r}"
    parent, _, name = missing.rpartition(".")
    package = sys.modules.get(parent) if parent else None
    if package is not None:
        where = ", ".join(getattr(package, "__path__", [])) or getattr(package, "__file__", "")
        return f"package {parent!r} ({where}) has no module {name!r}: check the name"
    return (
        f"No module named {missing!r} in the current directory ({os.getcwd()}) or on sys.path: "
        f"run pgqueue from the directory that holds {missing}/ (or {missing}.py), or add that "
        "directory to PYTHONPATH"
    )


@app.command()
def demo(
    jobs: Annotated[
        int,
        typer.Option(
            parser=_whole(10, 1_000_000),
            metavar="N",
            help="Sample jobs to dispatch (10 to 1,000,000)",
        ),
    ] = 3000,
    concurrency: Annotated[
        int, typer.Option(parser=_like("concurrency"), metavar="N", help="Jobs run at once")
    ] = 50,
) -> None:
    """A first run: migrate, dispatch sample jobs, work them with live progress, show results.

    \b
    Examples:
      pgqueue demo
      pgqueue demo --jobs 20000 --concurrency 100
    """
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

QueueFilter = Annotated[
    str | None, typer.Option("--queue", metavar="QUEUE", help="Only jobs of this queue")
]
TypeFilter = Annotated[
    str | None,
    typer.Option("--type", metavar="TYPE", help="Only jobs of this type (its stored job_name)"),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="JSON for scripts instead of a table")]


def _failed_jobs(schema: str | None) -> "FailedJobs":
    """The failed_jobs interface of the settings with `--schema`."""
    from pgqueue.failed import FailedJobs

    return FailedJobs(_settings(db_schema=schema))


def _duration(text: str | None, flag: str) -> float | None:
    """A `--since`/`--older-than` value in seconds; a bad one is a one-line error."""
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ConfigurationError(f"{flag}: {exc}") from None
    if not seconds <= MAX_SECONDS:  # a 400-digit number reads as infinity
        raise ConfigurationError(f"{flag}: {_brief(text)} is longer than 100 years")
    return seconds


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


def _print_failed_table(jobs: "list[FailedJob]", limit: int) -> None:
    """One plain line per job, as wide as the terminal (80 columns when piped): id, how long
    ago it failed, queue, tries, type and error. The type and the error's class are never cut
    (`--type` takes the one, a search the other); only the message is, with `...`, and
    `pgqueue failed show ID` has it all."""
    import shutil
    from datetime import UTC, datetime

    if not jobs:
        typer.echo("no failed jobs")
        return
    now = datetime.now(UTC)
    rows = [
        (
            str(job.id),
            f"{_format_age((now - job.failed_at).total_seconds())} ago",
            _escape(job.queue),
            f"{job.attempts}/{job.max_tries}",
            _escape(job.job_type),
            _escape(job.exception_class.removeprefix("builtins.")),
            _escape(" ".join(job.exception_message.split())),
        )
        for job in jobs
    ]
    header = ("id", "failed", "queue", "tries", "type")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    width = shutil.get_terminal_size((80, 24)).columns
    # The type column is padded only as far as leaves the error 30 columns: a longer type
    # pushes its own row's error to the right rather than every row's message out of sight.
    others = sum(widths[:4]) + 2 * 5
    widths[4] = max(len(header[4]), min(widths[4], width - 1 - others - 30))
    typer.echo(
        "  ".join(cell.ljust(size) for cell, size in zip(header, widths, strict=True)) + "  error"
    )
    for *cells, exception, message in rows:
        line = "  ".join(cell.ljust(size) for cell, size in zip(cells, widths, strict=True))
        error = f"{exception}: {message}" if message else exception
        room = width - 1 - len(line) - 2  # one column spare: a full line wraps on some terminals
        if len(error) > room:  # the class stays whole; the message is cut, or left out
            keep = room - len(exception) - len(": ...")
            error = f"{exception}: {message[:keep]}..." if keep >= 10 else exception
        typer.echo(f"{line}  {error}")
    if len(jobs) == limit:
        typer.echo(f"(the newest {limit}; --limit shows more)", err=True)


def _format_age(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@failed_app.command("list")
def failed_list(
    queue: QueueFilter = None,
    job_type: TypeFilter = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", help="Only jobs that failed within this long: 30s, 15m, 1h, 7d"
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(parser=_whole(1, INT4_MAX), metavar="N", help="At most this many jobs")
    ] = 50,
    as_json: JsonFlag = False,
    schema: SchemaOption = None,
) -> None:
    """List failed jobs, newest first: when, where and why each one failed.

    \b
    Examples:
      pgqueue failed list --since 1h
      pgqueue failed list --type myapp.jobs.SendWelcomeEmail --json
    """
    jobs = _failed_jobs(schema).list(
        queue=queue, job_type=job_type, since=_duration(since, "--since"), limit=limit
    )
    if as_json:
        for job in jobs:
            typer.echo(json.dumps(job.to_json()))
    else:
        _print_failed_table(jobs, limit)


@failed_app.command("show")
def failed_show(
    job_id: Annotated[int, typer.Argument(metavar="ID", min=1, max=MAX_JOB_ID, hidden=True)],
    as_json: JsonFlag = False,
    schema: SchemaOption = None,
) -> None:
    """Show one failed job: payload, exception, full traceback, attempts, times and worker.

    \b
    Example:
      pgqueue failed show 42
    """
    job = _failed_jobs(schema).show(job_id)
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
def failed_retry(
    ids: Annotated[
        list[int] | None,
        typer.Argument(metavar="ID", min=1, max=MAX_JOB_ID, hidden=True),
    ] = None,
    retry_all: Annotated[
        bool, typer.Option("--all", help="Retry every failed job (or those --queue/--type pick)")
    ] = False,
    queue: QueueFilter = None,
    job_type: TypeFilter = None,
    schema: SchemaOption = None,
) -> None:
    """Put failed jobs back in their queue with fresh tries (same id); ready at once.

    \b
    Examples:
      pgqueue failed retry 42 43
      pgqueue failed retry --all --type myapp.jobs.SendWelcomeEmail
    """
    if retry_all == bool(ids):
        raise ConfigurationError("give the ids of the jobs to retry, or --all (not both)")
    if not retry_all and (queue or job_type):
        raise ConfigurationError("--queue and --type go with --all")
    failed = _failed_jobs(schema)
    if retry_all:
        typer.echo(f"retried {_jobs_phrase(failed.retry_all(queue=queue, job_type=job_type))}")
    else:
        asked = ids or []
        retried = failed.retry(asked)
        for job_id, holder in sorted(retried.held.items()):
            # Unique jobs (docs/unique-jobs.md): one whose key is held stays in failed_jobs.
            holder_text = "another job" if holder is None else f"job {holder}"
            typer.echo(
                f"job {job_id} not retried: its unique key is held by {holder_text}; retry it "
                "once that one is done, or forget it",
                err=True,
            )
        _report_ids("retried", [i for i in asked if i not in retried.held], retried)
        if retried.held:
            raise typer.Exit(1)


@failed_app.command("forget")
def failed_forget(
    ids: Annotated[
        list[int],
        typer.Argument(metavar="ID", min=1, max=MAX_JOB_ID, hidden=True),
    ],
    schema: SchemaOption = None,
) -> None:
    """Delete failed jobs for good.

    \b
    Example:
      pgqueue failed forget 42 43
    """
    _report_ids("forgot", ids, _failed_jobs(schema).forget(ids))


@failed_app.command("flush")
def failed_flush(
    queue: QueueFilter = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", help="Only jobs that failed longer ago than this: 12h, 7d"
        ),
    ] = None,
    yes: YesFlag = False,
    schema: SchemaOption = None,
) -> None:
    """Delete every failed job (or those --queue and --older-than pick), in batches.

    Without a filter it asks first, unless --yes.

    \b
    Examples:
      pgqueue failed flush --older-than 7d
      pgqueue failed flush --yes
    """
    cutoff = _duration(older_than, "--older-than")
    failed = _failed_jobs(schema)
    if queue is None and cutoff is None:
        _confirm("Delete every failed job?", yes)
    flushed = failed.flush(queue=queue, older_than=cutoff)
    typer.echo(f"flushed {_jobs_phrase(flushed)}")


@app.command()
def cleanup(
    older_than: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help=f"Prune failed jobs that failed longer ago than this: 30d, 12h{_default('retention', _format_duration)}",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            parser=_whole(1, MAX_BATCH_SIZE),
            metavar="N",
            help=f"Rows deleted per statement, each its own transaction (1 to {MAX_BATCH_SIZE:,})",
        ),
    ] = 1000,
    rest: Annotated[
        float,
        typer.Option(
            parser=_parser(
                Annotated[float, pydantic.Field(ge=0, le=MAX_REST, allow_inf_nan=False)]
            ),
            metavar="FACTOR",
            help="After each batch, pause this many times as long as it took, leaving workers "
            f"room (0: no pause; at most {MAX_REST:g})",
        ),
    ] = 1.0,
    schema: SchemaOption = None,
) -> None:
    """Prune failed_jobs past retention, and kept results past their keep_result, in short
    batches; safe from cron, and run twice at once.

    \b
    Example:
      pgqueue cleanup --older-than 30d
    """
    from pgqueue.maintenance import cleanup as prune

    settings = _settings(db_schema=schema, retention=_duration(older_than, "--older-than"))
    pruned = prune(settings, batch_size=batch_size, rest=rest)
    typer.echo(
        f"pruned {_jobs_phrase(pruned.failed_jobs)} that failed over "
        f"{_format_duration(settings.retention)} ago"
    )
    if pruned.job_results:  # a line only where keep_result is used
        results = "result" if pruned.job_results == 1 else "results"
        typer.echo(f"pruned {pruned.job_results} kept {results} past their keep_result")


@app.command()
def status(
    job_id: Annotated[int, typer.Argument(metavar="ID", min=1, max=MAX_JOB_ID, hidden=True)],
    as_json: JsonFlag = False,
    schema: SchemaOption = None,
) -> None:
    """Show what became of one job: queued, scheduled, running (with its progress), completed
    (with its result, for job types that set keep_result), failed or cancelled.

    An id nothing is known of (never dispatched, or completed without keep_result, or its
    record pruned) is one error line, exit 1.

    \b
    Examples:
      pgqueue status 42
      pgqueue status 42 --json
    """
    from pgqueue.queue import Queue

    with Queue(_settings(db_schema=schema)) as queue:
        found = queue.status(job_id)
    if found is None:
        raise JobNotFoundError(
            f"no job {job_id} is known: never dispatched, or it ended and nothing of it is kept "
            "(its type sets no keep_result, or its record was pruned or forgotten)"
        )
    if as_json:
        typer.echo(json.dumps(found.to_json()))
        return
    fields: dict[str, Any] = {
        "queue": found.queue,
        "type": found.job_type,
        "attempts": found.attempts,
    }
    if found.progress is not None:
        fields["progress"] = f"{found.progress:.0%} {found.progress_message or ''}".rstrip()
    for name, moment in (
        ("enqueued at", found.enqueued_at),
        ("started at", found.started_at),
        ("finished at", found.finished_at),
    ):
        if moment is not None:
            fields[name] = moment.isoformat()
    if found.error is not None:
        fields["error"] = found.error
    typer.echo(f"job {found.id}: {found.state}")
    for name, value in fields.items():
        typer.echo(f"  {name:<12} {value}")
    if found.state == "completed":
        typer.echo("result:")
        typer.echo(json.dumps(found.result, indent=2, sort_keys=True))


# ---- stats, doctor and roles -----------------------------------------------------------------


@app.command()
def stats(
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Read again every --interval seconds until Ctrl-C, with completions/min"
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            parser=_seconds(0.1),
            metavar="SECONDS",
            help="Seconds between reads with --watch (0.1 to 100 years)",
        ),
    ] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document per read (a line each), for scripts")
    ] = False,
    schema: SchemaOption = None,
) -> None:
    """Per queue: ready, held, scheduled, running, failed (last hour and total), oldest wait,
    done/min.

    Held (shown while a limit holds jobs back): ready jobs a concurrency or rate limit holds back
    now (a job class's limits are known once a worker importing the class has started;
    docs/limits.md). Completions per minute come from the workers' counters, so they need two
    reads: --watch shows them (over the last minute once it has run that long); a single read
    shows "-".

    \b
    Examples:
      pgqueue stats
      pgqueue stats --watch --interval 5
    """
    from pgqueue.stats import watch_stats

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


def _stats_table(current: "Stats") -> Any:
    """The stats as a rich table; done/min is "-" when unknown, with the reason in the caption."""
    from rich.markup import escape as rich_escape
    from rich.table import Table

    from pgqueue.doctor import format_duration

    table = Table(
        title=f"pgqueue stats at {current.taken_at.astimezone():%H:%M:%S}",
        box=None,
        header_style="bold",
    )
    # The held column only while a limit holds jobs back, with one space between columns then, so
    # the table still fits 80 columns.
    held = any(queue.held_by_limits or queue.at_limit for queue in current.queues)
    table.collapse_padding = held
    table.add_column("queue")
    for column in ("ready", *(("held",) if held else ()), "scheduled", "running"):
        table.add_column(column, justify="right", no_wrap=True)
    for column in ("failed 1h", "failed", "oldest wait", "done/min"):
        table.add_column(column, justify="right", no_wrap=True)
    for queue in current.queues:
        wait = queue.oldest_wait_seconds
        rate = queue.completed_per_minute
        table.add_row(
            queue.queue,
            *(
                f"{number:,}"
                for number in (
                    queue.ready,
                    *((queue.held_by_limits,) if held else ()),
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
    paused = [queue.queue for queue in current.queues if queue.paused]
    if paused:  # their ready jobs wait on purpose
        names = ", ".join(rich_escape(name) for name in paused)
        table.caption += f"\n[yellow]paused (no new claims): {names}[/yellow]"
    if held:
        table.caption += "\nheld: ready jobs a concurrency or rate limit holds back now"
    at_limit = [queue.queue for queue in current.queues if queue.at_limit]
    if at_limit:
        names = ", ".join(rich_escape(name) for name in at_limit)
        table.caption += f"\n[yellow]at their runtime limit (pgqueue queues): {names}[/yellow]"
    for warning in current.warnings:  # e.g. what holds back vacuum while dead rows pile up
        table.caption += f"\n[yellow]warning: {rich_escape(warning)}[/yellow]"
    if not current.progress:
        return table
    from rich.console import Group

    return Group(table, "", _progress_table(current))


def _progress_table(current: "Stats") -> Any:
    """Running jobs that reported progress (`self.progress()`), under the queues table."""
    from rich.markup import escape as rich_escape
    from rich.table import Table

    from pgqueue.doctor import format_duration

    table = Table(title="running jobs reporting progress", box=None, header_style="bold")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("queue")
    table.add_column("type", overflow="fold")
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("running", justify="right", no_wrap=True)
    table.add_column("message", overflow="ellipsis", no_wrap=True, max_width=40)
    for job in current.progress:
        table.add_row(
            str(job.id),
            rich_escape(job.queue),
            rich_escape(job.job_type),
            f"{job.progress:.0%}",
            format_duration(job.running_seconds),
            rich_escape(job.message or ""),
        )
    hidden = current.progress_total - len(current.progress)
    if hidden > 0:
        table.caption = f"and {hidden:,} more (oldest claims shown)"
    return table


@app.command()
def doctor(schema: SchemaOption = None) -> None:
    """Check what takes PostgreSQL queues down: one OK/WARN/FAIL line each; exit 1 on any FAIL.

    Schema revision, dead tuples and size of the jobs table, the oldest transaction holding back
    vacuum (by pid), expired leases nobody rescued, workers' heartbeats, queues paused for long,
    NOTIFY queue usage.

    \b
    Example:
      pgqueue doctor || alert "pgqueue doctor failed"
    """
    from pgqueue.doctor import Verdict, run_doctor

    colors = {Verdict.OK: "green", Verdict.WARN: "yellow", Verdict.FAIL: "red"}
    checks = run_doctor(_settings(db_schema=schema))
    for check in checks:
        typer.secho(str(check), fg=colors[check.verdict])
    if any(check.verdict is Verdict.FAIL for check in checks):
        raise typer.Exit(1)


@app.command()
def dashboard(
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Address to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(parser=_whole(1, MAX_PORT), metavar="PORT", help="Port to listen on")
    ] = 8080,
    allow_actions: Annotated[
        bool,
        typer.Option(
            "--allow-actions",
            help="Offer retry, forget, pause, resume and cancel (without: read-only)",
        ),
    ] = False,
    schema: SchemaOption = None,
) -> None:
    """Serve the web dashboard: queues, jobs, failed jobs, workers, schedules and health, live.

    Read-only unless --allow-actions. It binds 127.0.0.1 unless --host says otherwise: put it
    behind a proxy that authenticates before exposing it (docs/dashboard.md, which also shows
    how to mount it in your own FastAPI, Starlette or Django app). Needs the extra:
    pip install 'pgqueue[dashboard]'.

    \b
    Examples:
      pgqueue dashboard
      pgqueue dashboard --port 9000 --allow-actions
    """
    settings = _settings(db_schema=schema)
    try:
        import uvicorn

        from pgqueue.dashboard import create_app

        served = create_app(settings, allow_actions=allow_actions)
    except ModuleNotFoundError as exc:
        raise PgQueueError(
            f"the dashboard needs its extra ({exc.name} is missing): "
            "pip install 'pgqueue[dashboard]'"
        ) from None
    mode = "actions allowed" if allow_actions else "read-only"
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"pgqueue dashboard on http://{shown}:{port}/ ({mode}, {settings.redacted_url})")
    uvicorn.run(served, host=host, port=port, log_level="warning", access_log=False)


@app.command()
def roles(
    print_sql: Annotated[
        bool, typer.Option("--print-sql", help="Print the SQL (pgqueue never changes roles itself)")
    ] = False,
    worker_role: Annotated[
        str | None,
        typer.Option(
            metavar="ROLE", help="Role that runs workers and upkeep  [default: pgqueue_worker]"
        ),
    ] = None,
    dispatch_role: Annotated[
        str | None,
        typer.Option(
            metavar="ROLE", help="Role that applications enqueue with  [default: pgqueue_dispatch]"
        ),
    ] = None,
    schema: SchemaOption = None,
) -> None:
    """SQL for least-privilege worker and dispatch-only roles, to review and run as an admin.

    \b
    Example:
      pgqueue roles --print-sql | psql "$ADMIN_URL"
    """
    from pgqueue.roles import DEFAULT_DISPATCH_ROLE, DEFAULT_WORKER_ROLE, roles_sql

    if not print_sql:
        raise ConfigurationError(
            "pass --print-sql: pgqueue prints the SQL for an administrator to review and run"
        )
    typer.echo(
        roles_sql(
            _settings(db_schema=schema, connects=False).db_schema,
            worker_role or DEFAULT_WORKER_ROLE,
            dispatch_role or DEFAULT_DISPATCH_ROLE,
        ),
        nl=False,
    )


# ---- queue controls: `pgqueue queues ...` ----------------------------------------------------

queues_app = typer.Typer(
    name="queues",
    help="List queues and pause or resume them (docs/operations.md, 'Pausing a queue'). Without "
    "a command: the list.",
)
app.add_typer(queues_app)

# QUEUE: the queue's name, as `pgqueue queues` lists it (each command's usage line names it).
QueueName = Annotated[str, typer.Argument(parser=_queue_name, metavar="QUEUE", hidden=True)]


@queues_app.callback(invoke_without_command=True)
def queues_main(ctx: typer.Context, as_json: JsonFlag = False, schema: SchemaOption = None) -> None:
    """List every queue: paused (since when and why), at its runtime limit or running, its
    runtime limits, and its ready, held (by a limit), running and failed jobs.

    \b
    Examples:
      pgqueue queues
      pgqueue queues --json
      pgqueue queues pause emails --reason "provider outage"
    """
    if ctx.invoked_subcommand is None:
        queues_list(as_json=as_json, schema=schema)


@queues_app.command("list")
def queues_list(as_json: JsonFlag = False, schema: SchemaOption = None) -> None:
    """List the queues (the same as `pgqueue queues`); --json prints one object per line.

    \b
    Example:
      pgqueue queues list --json
    """
    from pgqueue.stats import watch_stats

    reads = watch_stats(_settings(db_schema=schema))
    try:
        current = next(reads)
    finally:
        reads.close()
    if as_json:
        for queue in current.queues:
            typer.echo(json.dumps(queue.to_json()))
        return
    if not current.queues:
        typer.echo("no queues yet (a queue exists once a job is dispatched to it or it is paused)")
        return
    _print_queues(current)


def _print_queues(current: "Stats") -> None:
    from pgqueue.doctor import format_duration

    header = ("queue", "state", "since", "ready", "held", "running", "failed", "limits", "reason")
    rows = []
    for queue in current.queues:
        since = "-"
        if queue.paused_at is not None:
            age = format_duration((current.taken_at - queue.paused_at).total_seconds())
            since = f"{queue.paused_at.astimezone():%Y-%m-%d %H:%M} ({age} ago)"
        limits = []
        if queue.concurrency is not None:
            limits.append(f"concurrency {queue.concurrency}")
        if queue.rate_limit is not None and queue.rate_period_seconds is not None:
            limits.append(f"rate {_rate(queue.rate_limit, queue.rate_period_seconds)}")
        rows.append(
            (
                _escape(queue.queue),
                "paused" if queue.paused else "at limit" if queue.at_limit else "running",
                since,
                f"{queue.ready:,}",
                f"{queue.held_by_limits:,}",
                f"{queue.running:,}",
                f"{queue.failed_total:,}",
                ", ".join(limits) or "-",
                "-" if queue.paused_reason is None else _escape(queue.paused_reason),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    numbers = {3, 4, 5, 6}
    for row in [header, *rows]:
        cells = [
            cell.rjust(size) if i in numbers else cell.ljust(size)
            for i, (cell, size) in enumerate(zip(row, widths, strict=False))
        ]
        typer.echo("  ".join([*cells, row[-1]]))


def _rate(limit: int, period_seconds: int) -> str:
    """A runtime rate limit as `pgqueue queues limit --rate` takes it: 50/s, 100/m, 7/90s."""
    unit = {1: "s", 60: "m", 3600: "h"}.get(period_seconds, f"{period_seconds}s")
    return f"{limit}/{unit}"


@queues_app.command("pause")
def queues_pause(
    queue: QueueName,
    reason: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="Why, for `pgqueue queues` to show (kept until resume)"),
    ] = None,
    schema: SchemaOption = None,
) -> None:
    """Pause QUEUE: workers claim none of its jobs from their next claim on (within one round
    trip); running jobs finish. The pause is stored in the database: it holds across worker
    restarts until `pgqueue queues resume`. A queue with no jobs yet can be paused.

    \b
    Examples:
      pgqueue queues pause emails
      pgqueue queues pause emails --reason "provider outage, ticket 4411"
    """
    from pgqueue.queue import Queue

    with Queue(_settings(db_schema=schema)) as jobs:
        newly = jobs.pause(queue, reason=reason)
    if newly:
        typer.echo(
            f"paused queue {queue!r}: no new claims from it; running jobs finish "
            f"(`pgqueue queues resume {queue}` to resume)"
        )
    else:
        typer.echo(f"queue {queue!r} was already paused" + ("; reason updated" if reason else ""))


@queues_app.command("resume")
def queues_resume(queue: QueueName, schema: SchemaOption = None) -> None:
    """Resume a paused QUEUE: the workers serving it are woken and claim its jobs at once.

    \b
    Example:
      pgqueue queues resume emails
    """
    from pgqueue.queue import Queue

    with Queue(_settings(db_schema=schema)) as jobs:
        resumed = jobs.resume(queue)
    typer.echo(f"resumed queue {queue!r}" if resumed else f"queue {queue!r} was not paused")


@queues_app.command("limit")
def queues_limit(
    queue: QueueName,
    concurrency: Annotated[
        int | None,
        typer.Option(metavar="N", help="At most N of QUEUE's jobs running at once"),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(metavar="N/s|N/m|N/h", help="At most N starts per second, minute or hour"),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove QUEUE's runtime limits")] = False,
    schema: SchemaOption = None,
) -> None:
    """Set runtime limits on QUEUE, across all workers, stored in the database: each worker
    applies them from its next claim of the queue (docs/limits.md). A limit not given stays as
    it was; a job type's own limits apply as well.

    \b
    Examples:
      pgqueue queues limit emails --concurrency 10 --rate 50/s
      pgqueue queues limit emails --clear
    """
    from pgqueue.queue import Queue

    if clear != (concurrency is None and rate is None):
        raise ConfigurationError("give --concurrency and/or --rate, or --clear alone")
    with Queue(_settings(db_schema=schema)) as jobs:
        if clear:
            cleared = jobs.clear_limits(queue)
            typer.echo(
                f"cleared the runtime limits of queue {queue!r}"
                if cleared
                else f"queue {queue!r} had no runtime limits"
            )
            return
        try:
            jobs.limit(queue, concurrency=concurrency, rate=rate)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    given = [f"concurrency {concurrency}"] if concurrency is not None else []
    given += [f"rate {rate.strip()}"] if rate is not None else []
    typer.echo(f"limited queue {queue!r}: {', '.join(given)} (from each worker's next claim)")


# ---- periodic jobs: `pgqueue schedules ...` -----------------------------------------------

schedules_app = typer.Typer(
    name="schedules",
    help="List, pause, resume and forget periodic jobs (docs/periodic-jobs.md). Without a "
    "command: the list.",
)
app.add_typer(schedules_app)

# NAME: the schedule's name, as `pgqueue schedules` lists it (each command's usage line names it).
ScheduleName = Annotated[str, typer.Argument(metavar="NAME", hidden=True)]


@schedules_app.callback(invoke_without_command=True)
def schedules_main(
    ctx: typer.Context, as_json: JsonFlag = False, schema: SchemaOption = None
) -> None:
    """List the schedules workers registered: expression, timezone, last and next fire, paused,
    and the module that defines each (or that no running worker does any more).

    \b
    Examples:
      pgqueue schedules
      pgqueue schedules --json
      pgqueue schedules pause myapp.jobs.NightlyReport
    """
    if ctx.invoked_subcommand is None:
        schedules_list(as_json=as_json, schema=schema)


@schedules_app.command("list")
def schedules_list(as_json: JsonFlag = False, schema: SchemaOption = None) -> None:
    """List the schedules (the same as `pgqueue schedules`).

    \b
    Example:
      pgqueue schedules list --json
    """
    from pgqueue.schedules import list_schedules

    states = list_schedules(_settings(db_schema=schema))
    if as_json:
        for state in states:
            typer.echo(json.dumps(state.to_json()))
        return
    if not states:
        typer.echo(
            "no schedules (a worker registers those its --app modules define when it starts)"
        )
        return
    header = ("name", "expression", "timezone", "last fire", "next fire", "paused", "defined by")
    rows = [
        (
            _escape(state.name),
            _escape(state.expression),
            _escape(state.timezone),
            _local_time(state.last_fire_at, state.timezone),
            _local_time(state.next_fire_at, state.timezone),
            "yes" if state.paused else "no",
            _escape(state.defined_by)
            + ("" if state.defined else " (no running worker defines it)"),
        )
        for state in states
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(size) for cell, size in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]))


def _local_time(moment: Any, timezone: str) -> str:
    """`moment` in the schedule's timezone with its offset (2026-12-03 03:17+01:00), or -."""
    if moment is None:
        return "-"
    import contextlib
    from zoneinfo import ZoneInfo

    # A zone this machine lacks (KeyError): the time as read, in UTC, says the same moment.
    with contextlib.suppress(KeyError, ValueError, OSError):
        moment = moment.astimezone(ZoneInfo(timezone))
    return str(moment.isoformat(sep=" ", timespec="minutes"))


@schedules_app.command("pause")
def schedules_pause(name: ScheduleName, schema: SchemaOption = None) -> None:
    """Pause a schedule: its fire times pass with no job until it is resumed.

    \b
    Example:
      pgqueue schedules pause sync-shop-3
    """
    from pgqueue.schedules import pause_schedule

    pause_schedule(_settings(db_schema=schema), name)
    typer.echo(f"paused schedule {_escape(name)}")


@schedules_app.command("resume")
def schedules_resume(name: ScheduleName, schema: SchemaOption = None) -> None:
    """Resume a paused schedule from its next fire time (those that passed are not caught up).

    \b
    Example:
      pgqueue schedules resume sync-shop-3
    """
    from pgqueue.schedules import resume_schedule

    resume_schedule(_settings(db_schema=schema), name)
    typer.echo(f"resumed schedule {_escape(name)}")


@schedules_app.command("forget")
def schedules_forget(name: ScheduleName, schema: SchemaOption = None) -> None:
    """Delete a schedule that no running worker defines any more (removed from the app).

    \b
    Example:
      pgqueue schedules forget sync-shop-3
    """
    from pgqueue.schedules import forget_schedule

    forget_schedule(_settings(db_schema=schema), name)
    typer.echo(f"forgot schedule {_escape(name)}")


# ---- the embedded PostgreSQL: `pgqueue embedded ...` ------------------------------------

embedded_app = typer.Typer(
    name="embedded",
    help="The embedded PostgreSQL pgqueue runs when PGQUEUE_DATABASE_URL is unset: where it "
    "is, how to reach it, stop and reset it (docs/embedded.md).",
    no_args_is_help=True,
)
app.add_typer(embedded_app)


def _embedded_cluster() -> "tuple[Settings, EmbeddedCluster]":
    """The settings and the cluster they name; a note when the URL setting means it is unused."""
    from pgqueue.embedded import EmbeddedCluster, data_dir

    settings = _settings(connects=False)
    if settings.database_url is not None:
        typer.secho(
            "note: PGQUEUE_DATABASE_URL is set, so pgqueue does not use this embedded PostgreSQL",
            err=True,
            fg=typer.colors.YELLOW,
        )
    return settings, EmbeddedCluster(data_dir(settings))


@embedded_app.command("status")
def embedded_status() -> None:
    """Whether it runs, where its data and log are, its PostgreSQL version and its URL."""
    _, cluster = _embedded_cluster()
    status = cluster.status()
    if status.running:
        running = f"yes (pid {status.pid})" if status.pid else "yes"
    elif status.data_version is None:
        running = "no, not created yet (the next command that connects creates it)"
    else:
        running = "no (the next command that connects starts it)"
    binaries = (
        f"{status.binaries_version} in {status.bin_dir}"
        if status.binaries_problem is None
        else status.binaries_problem
    )
    for name, value in (
        ("running", running),
        ("data directory", str(status.data_dir)),
        ("made by PostgreSQL", status.data_version or "-"),
        ("binaries", binaries),
        ("log", str(status.log_file)),
        ("url", status.url),
        ("server runs as", status.server_account),
    ):
        typer.echo(f"{name + ':':<20}{value}")


@embedded_app.command("url")
def embedded_url() -> None:
    """Print a conninfo URL for psql and psycopg (starting the cluster first if it is stopped)."""
    from pgqueue.embedded import embedded_url as start

    settings, cluster = _embedded_cluster()
    if not cluster.is_running():
        typer.secho(
            f"starting the embedded PostgreSQL in {cluster.data_dir}",
            err=True,
            fg=typer.colors.YELLOW,
        )
    typer.echo(start(settings))


@embedded_app.command("stop")
def embedded_stop() -> None:
    """Stop the server (its data stays; the next command that connects starts it again)."""
    _, cluster = _embedded_cluster()
    if not cluster.is_running():
        typer.echo(f"the embedded PostgreSQL in {cluster.data_dir} is not running")
        return
    cluster.stop()
    typer.echo(f"stopped the embedded PostgreSQL in {cluster.data_dir}")


@embedded_app.command("reset")
def embedded_reset(
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask first (for scripts)")
    ] = False,
) -> None:
    """Stop the server and delete its data, every database in it; the next command that
    connects creates a fresh, migrated cluster."""
    _, cluster = _embedded_cluster()
    if not cluster.exists():
        typer.echo(f"nothing to reset: there is no embedded PostgreSQL in {cluster.data_dir}")
        return
    if not yes:
        typer.confirm(
            f"Delete the embedded PostgreSQL in {cluster.data_dir} and every database in it?",
            abort=True,
        )
    cluster.delete()
    typer.echo(f"deleted the embedded PostgreSQL in {cluster.data_dir}")


def main() -> None:
    """Entry point of the `pgqueue` console script."""
    app()
