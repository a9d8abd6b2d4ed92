"""What `manage.py pgqueue_work` and `pgqueue_migrate` share: they run pgqueue's own CLI command.

Each management command takes the flags of its `pgqueue` command, read from that command's own
definition (so they never drift apart, and `--help` lists them), plus `--database`, the DATABASES
alias to work on. It then runs the `pgqueue` command itself, with the same validation, messages
and exit codes, connected to that database: `PGQUEUE_DATABASE_URL` is set to it for the run
unless the environment (or `.env`) already sets one, which wins.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import pydantic
import typer
from django.core.management.base import BaseCommand

from pgqueue.contrib.django.database import conninfo
from pgqueue.contrib.django.setup import worker_database
from pgqueue.settings import Settings, variable_name


class PgQueueCommand(BaseCommand):
    """A management command running `pgqueue <pgqueue_command>` (see the module doc)."""

    pgqueue_command: ClassVar[str]

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--database",
            metavar="ALIAS",
            help="The DATABASES alias to use (default: the one the pgqueue backends in TASKS "
            "write to, else 'default'); PGQUEUE_DATABASE_URL, if set, wins",
        )
        for option in _options(self.pgqueue_command):
            help_text = (option.help or "").replace("%", "%%")  # argparse formats help with %
            if option.is_flag:
                parser.add_argument(
                    *option.opts, dest=option.name, action="store_true", help=help_text
                )
            else:
                parser.add_argument(
                    *option.opts,
                    dest=option.name,
                    action="append" if option.multiple else "store",
                    metavar=option.metavar,
                    help=help_text,
                )

    def handle(self, *args: Any, **options: Any) -> None:
        argv = self.pgqueue_args(options)
        for option in _options(self.pgqueue_command):
            value = options.get(option.name or "")
            if value is None or value is False:
                continue
            if option.is_flag:
                argv.append(option.opts[0])
            else:
                for item in value if option.multiple else [value]:
                    argv += [option.opts[0], str(item)]
        from pgqueue.cli import app

        with _database_url(options["database"] or worker_database()):
            code = app(
                args=[self.pgqueue_command, *argv],
                prog_name=f"manage.py pgqueue_{self.pgqueue_command}",
                standalone_mode=False,
            )
        if code:
            sys.exit(code)  # the command printed its one-line error already

    def pgqueue_args(self, options: dict[str, Any]) -> list[str]:
        """Arguments to pass before the flags given (none here; the worker adds its own)."""
        return []


def _options(command_name: str) -> list[Any]:
    """The options of `pgqueue <command_name>` (click options), as its typer definition
    declares them."""
    from pgqueue.cli import app

    command: Any = typer.main.get_command(app).commands[command_name]  # type: ignore[attr-defined]
    return [param for param in command.params if param.param_type_name == "option"]


@contextlib.contextmanager
def _database_url(alias: str) -> Iterator[None]:
    """PGQUEUE_DATABASE_URL set to DATABASES[alias] while the command runs, unless set already."""
    name = variable_name("database_url")
    try:
        if Settings().database_url is not None:
            yield
            return
    except pydantic.ValidationError:
        yield  # the pgqueue command names the invalid variable itself
        return
    # The management command is the process's entry point, as `pgqueue` is its own: it sets the
    # variable pgqueue's settings read, for this run only.
    os.environ[name] = conninfo(alias)
    try:
        yield
    finally:
        os.environ.pop(name, None)
