"""The CLI's habits that need no database: --version, -h, shell completion, a bare `pgqueue`,
help that shows no Python types, JSON log time stamps, and one-line outcome errors."""

from __future__ import annotations

import json
import logging
import re

import pydantic
import pytest
import typer.main

from pgqueue import __version__
from pgqueue.cli import _JsonFormatter, _TextFormatter, app
from pgqueue.outcome import one_line, report_error
from tests.cli_runner import run_pgqueue


def _commands() -> list[list[str]]:
    """Every command's words: `["work"]`, `["failed", "list"]`, ..."""
    found: list[list[str]] = []

    def walk(command: object, words: list[str]) -> None:
        children = getattr(command, "commands", None)
        if children is None:
            found.append(words)
            return
        for name, child in children.items():
            walk(child, [*words, name])

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _commands()


def test_version_prints_the_version() -> None:
    result = run_pgqueue("--version")
    assert (result.exit_code, result.stdout) == (0, f"pgqueue {__version__}\n")


def test_a_bare_pgqueue_prints_its_help_on_stdout() -> None:
    result = run_pgqueue()
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: pgqueue [OPTIONS] COMMAND [ARGS]...")
    assert "Commands:" in result.stdout
    assert result.stderr == ""


def test_shell_completion_is_offered() -> None:
    result = run_pgqueue("--show-completion", "bash")
    assert result.exit_code == 0
    assert "_PGQUEUE_COMPLETE=complete_bash" in result.stdout


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_help_shows_no_python_types_and_an_example(words: list[str]) -> None:
    short = run_pgqueue(*words, "-h", env={"COLUMNS": "80"})
    assert short.exit_code == 0, short.stderr
    assert short.stdout == run_pgqueue(*words, "--help", env={"COLUMNS": "80"}).stdout
    text = short.stdout
    assert not re.search(r"<[a-z\[\]| ]+>", text), text  # <str>, <list[str]>, <int range>
    assert "x<=" not in text and "x>=" not in text, text
    assert "(default:" not in text, text  # defaults are shown one way: [default: ...]
    if words[0] != "embedded":  # the embedded cluster's commands: not written here (yet)
        assert "Example" in text, text
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_a_flag_that_overrides_a_setting_shows_its_variable_and_default() -> None:
    text = " ".join(run_pgqueue("work", "-h").stdout.split())
    assert "--concurrency N Jobs run at once [env var: PGQUEUE_CONCURRENCY; default: 50]" in text
    assert "[env var: PGQUEUE_METRICS_HOST; default: 127.0.0.1]" in text


def _record(message: str = "hello") -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "pgqueue.worker", "levelno": logging.INFO, "levelname": "INFO", "msg": message}
    )


def test_a_json_log_time_is_iso_8601_with_its_utc_offset() -> None:
    stamp = json.loads(_JsonFormatter().format(_record()))["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp), stamp


def test_a_text_log_time_keeps_logging_s_own_shape() -> None:
    line = _TextFormatter().format(_record())
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO {4}hello$", line), line


class _Signup(pydantic.BaseModel):
    user_id: int
    email: str


def test_a_validation_error_is_one_line_without_link_or_input() -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        _Signup.model_validate({"user_id": "secret-ish"})
    text = report_error(raised.value).log_text
    assert text == (
        "pydantic_core._pydantic_core.ValidationError: 2 validation errors for _Signup; "
        "user_id: Input should be a valid integer, unable to parse string as an integer; "
        "email: Field required"
    )
    assert "secret-ish" not in text  # the rejected input (payload data) stays out of logs


def test_any_multi_line_message_becomes_one_line() -> None:
    assert one_line("first\nsecond\r\nthird") == "first; second; third"
    assert one_line("already one line") == "already one line"


CLOSED = {"PGQUEUE_DATABASE_URL": "postgresql://app@127.0.0.1:1/app"}


def test_a_bad_metrics_host_names_the_flag_or_the_variable_that_set_it() -> None:
    from tests.cli_runner import one_error

    by_flag = one_error(run_pgqueue("work", "--app", "x", "--metrics-host", "", env=CLOSED), 2)
    assert by_flag.startswith("error: invalid configuration: --metrics-host: ")
    by_variable = one_error(run_pgqueue("work", env={**CLOSED, "PGQUEUE_METRICS_HOST": ""}), 2)
    assert by_variable.startswith("error: invalid configuration: PGQUEUE_METRICS_HOST='': ")
