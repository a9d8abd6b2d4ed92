"""The `pgqueue` command: a thin typer shell over the library.

Each command builds `Settings`, calls one library function, and on a pgqueue error prints one line
and exits non-zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from pgqueue import migrate as migrations
from pgqueue.embedded import database_url
from pgqueue.errors import PgQueueError
from pgqueue.queue import Queue
from pgqueue.settings import Settings

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


def main() -> None:
    """Entry point of the `pgqueue` console script."""
    app()
