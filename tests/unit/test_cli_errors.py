"""Every CLI error is one line on stderr, `error: ...`, with no traceback, and an exit code: 2 for
a usage error (a bad flag or setting), 1 for a runtime error (database, app import, port).

No database here: the URL points at a closed port, and every case fails before it is reached,
or fails because nothing answers there. tests/integration/test_cli_database.py has the cases
that need a real server (a missing database, a wrong password, a schema never migrated).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

import pytest

from pgqueue.cli import _JsonFormatter, _TextFormatter
from pgqueue.errors import MetricsServerError
from pgqueue.metrics import WorkerMetrics
from pgqueue.settings import Settings, variable_name
from tests.cli_runner import one_error, run_pgqueue

PASSWORD = "S3cret-Pw"
CLOSED_PORT_URL = f"postgresql://app:{PASSWORD}@127.0.0.1:1/app"
ENV = {"PGQUEUE_DATABASE_URL": CLOSED_PORT_URL}


def run(*args: str, **env: str) -> str:
    """The one error line of `pgqueue ARGS` run for a usage error (exit 2)."""
    return one_error(run_pgqueue(*args, env={**ENV, **env}), 2, secret=PASSWORD)


# ---- usage errors: exit 2, naming the flag or the variable ------------------------------------

FLOAT_FLAGS = [
    ("work", "--sleep"),
    ("work", "--max-time"),
    ("work", "--timeout"),
    ("work", "--grace"),
    ("work", "--lease"),
    ("work", "--cleanup-interval"),
    ("stats", "--interval"),
    ("cleanup", "--rest"),
]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e309"])
@pytest.mark.parametrize(("command", "flag"), FLOAT_FLAGS, ids=[f for _, f in FLOAT_FLAGS])
def test_a_float_flag_refuses_a_non_finite_value(command: str, flag: str, value: str) -> None:
    line = run(command, flag, value)
    assert f"'{flag}'" in line
    assert "finite" in line


FLOAT_SETTINGS = [
    variable_name(name)
    for name, field in Settings.model_fields.items()
    if field.annotation in (float, float | None)
]


@pytest.mark.parametrize("value", ["inf", "nan", "1e309"])
@pytest.mark.parametrize("variable", FLOAT_SETTINGS)
def test_a_float_setting_refuses_a_non_finite_value(variable: str, value: str) -> None:
    assert run("size", **{variable: value}).startswith(f"error: invalid configuration: {variable}")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["work", "--concurrency", "2147483648"], "--concurrency"),
        (["work", "--concurrency", "0"], "--concurrency"),
        (["work", "--max-jobs", "2147483648"], "--max-jobs"),
        (["work", "--max-tries", "99999999999999999999"], "--max-tries"),
        (["work", "--processes", "100000"], "--processes"),
        (["work", "--metrics-port", "70000"], "--metrics-port"),
        (["work", "--metrics-port", "0"], "--metrics-port"),
        (["demo", "--concurrency", "2147483648"], "--concurrency"),
        (["cleanup", "--batch-size", "1000000000"], "--batch-size"),
        (["failed", "list", "--limit", "2147483648"], "--limit"),
        (["failed", "show", "9223372036854775808"], "ID"),
        (["failed", "forget", "1", "0"], "ID"),
    ],
    ids=lambda value: "_".join(value) if isinstance(value, list) else None,
)
def test_an_absurd_integer_is_refused_naming_the_flag(args: list[str], named: str) -> None:
    assert named in run(*args)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PGQUEUE_CONCURRENCY", "2147483648"),
        ("PGQUEUE_MAX_TRIES", "2147483648"),
        ("PGQUEUE_POOL_SIZE", "100000"),
        ("PGQUEUE_MAX_PAYLOAD_BYTES", "99999999999"),
    ],
)
def test_an_absurd_integer_setting_is_refused_naming_the_variable(
    variable: str, value: str
) -> None:
    assert run("size", **{variable: value}).startswith(f"error: invalid configuration: {variable}=")


def test_metrics_ports_past_the_last_one_are_refused() -> None:
    line = run("work", "--app", "x", "--processes", "2", "--metrics-port", "65535")
    assert "--metrics-port 65535" in line
    assert "65536" in line


def test_an_unknown_log_level_lists_the_valid_ones() -> None:
    line = run("work", "--log-level", "bogus")
    assert "'--log-level'" in line
    assert "'debug', 'info', 'warning', 'error'" in line


@pytest.mark.parametrize("value", ["", " ", ",", " , ,"])
def test_a_queue_flag_naming_no_queue_is_refused(value: str) -> None:
    line = run("work", "--app", "x", "--queue", value)
    assert "--queue: no queue name given" in line


def test_an_empty_queue_variable_is_refused() -> None:
    line = run("work", "--app", "x", PGQUEUE_QUEUE="")
    assert "PGQUEUE_QUEUE='': no queue name given" in line


def test_a_queue_name_with_a_control_character_is_refused() -> None:
    line = run("work", "--app", "x", "--queue", "ok,bad\x1bname")
    assert line.startswith("error: --queue: queue name")
    assert "\x1b" not in line


@pytest.mark.parametrize("schema", ["bad-name", "1abc", 'My"Schema', "a" * 64])
@pytest.mark.parametrize("command", [["size"], ["roles", "--print-sql"], ["failed", "list"]])
def test_a_schema_flag_every_command_refuses_the_same_way(command: list[str], schema: str) -> None:
    assert "not a plain SQL identifier" in run(*command, "--schema", schema)


@pytest.mark.parametrize("command", [["size"], ["roles", "--print-sql"]])
def test_a_schema_variable_is_refused_naming_it(command: list[str]) -> None:
    line = run(*command, PGQUEUE_SCHEMA="bad-name")
    assert line.startswith(
        "error: invalid configuration: PGQUEUE_SCHEMA: 'bad-name' is not a plain"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["work"], "no job modules"),
        (["roles"], "pass --print-sql"),
        (["failed", "retry"], "or --all"),
        (["failed", "list", "--since", "forever"], "--since: 'forever' is not a duration"),
        (["cleanup", "--older-than", "9" * 400 + "d"], "--older-than"),
        (["work", "--nope"], "No such option: --nope"),
        (["wrok"], "No such command 'wrok'"),
    ],
    ids=["no-app", "roles", "retry-nothing", "since", "older-than-infinite", "flag", "command"],
)
def test_other_usage_errors_exit_two(args: list[str], says: str) -> None:
    assert says in run(*args)


# ---- runtime errors: exit 1 ----------------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for --app modules written by the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("x = (\n", "SyntaxError: '(' was never closed ({path}:1)"),
        ("\n\nraise RuntimeError('boom')\n", "RuntimeError: boom ({path}:3)"),
        ("import sys\nsys.exit(3)\n", "it called sys.exit(3)"),
        ("import pgqueue_no_such_dependency\n", "No module named 'pgqueue_no_such_dependency'"),
    ],
    ids=["syntax-error", "runtime-error", "sys-exit", "missing-dependency"],
)
def test_an_app_module_that_raises_on_import_is_one_line_naming_it(
    app_dir: Path, request: pytest.FixtureRequest, source: str, says: str
) -> None:
    module = f"app_{request.node.callspec.id.replace('-', '_')}"
    path = app_dir / f"{module}.py"
    path.write_text(source)
    line = one_error(run_pgqueue("work", "--app", module, env=ENV), 1)
    assert line.startswith(f"error: cannot import --app module {module!r}: ")
    assert says.format(path=path) in line


def test_a_missing_app_module_is_named_with_where_to_look() -> None:
    line = one_error(run_pgqueue("work", env={**ENV, "PGQUEUE_IMPORTS": "no_such_jobs"}), 1)
    assert "PGQUEUE_IMPORTS module 'no_such_jobs': No module named 'no_such_jobs'" in line
    assert "PYTHONPATH" in line


def test_debug_prints_the_traceback_above_the_same_line(app_dir: Path) -> None:
    (app_dir / "app_debug.py").write_text("raise RuntimeError('boom')\n")
    result = run_pgqueue("--debug", "work", "--app", "app_debug", env=ENV)
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: cannot import --app module")


SERVER_COMMANDS = [
    ["stats"],
    ["size"],
    ["failed", "list"],
    ["failed", "retry", "--all"],
    ["migrate"],
    ["cleanup"],
]


@pytest.mark.parametrize("command", SERVER_COMMANDS, ids=" ".join)
def test_a_server_that_is_down_is_one_line_and_exit_one(command: list[str]) -> None:
    line = one_error(run_pgqueue(*command, env=ENV), 1, secret=PASSWORD)
    assert "Connection refused" in line


def test_doctor_reports_a_server_that_is_down_in_one_line() -> None:
    result = run_pgqueue("doctor", env=ENV)
    assert result.exit_code == 1
    output = result.stdout + result.stderr
    assert len(output.strip().splitlines()) == 1
    assert "Connection refused" in output
    assert "Traceback" not in output
    assert PASSWORD not in output


MALFORMED_URLS = {
    "bad-percent-escape": ("postgresql://app:S3%ZZcret@localhost/app", "S3%ZZcret"),
    "unescaped-at": ("postgresql://app:top@S3cret@127.0.0.1:1/app", "S3cret"),
    "port-not-a-number": (f"postgresql://app:{PASSWORD}@localhost:notaport/app", PASSWORD),
    "conninfo-missing-equals": (f"host=localhost password={PASSWORD} dbname", PASSWORD),
}


@pytest.mark.parametrize("command", [["stats"], ["size"], ["failed", "list"]], ids=" ".join)
@pytest.mark.parametrize("url", list(MALFORMED_URLS))
def test_a_malformed_url_is_one_line_without_the_password(command: list[str], url: str) -> None:
    value, secret = MALFORMED_URLS[url]
    one_error(run_pgqueue(*command, env={"PGQUEUE_DATABASE_URL": value}), 1, secret=secret)


@pytest.mark.parametrize("url", list(MALFORMED_URLS))
def test_doctor_reports_a_malformed_url_without_the_password(url: str) -> None:
    value, secret = MALFORMED_URLS[url]
    result = run_pgqueue("doctor", env={"PGQUEUE_DATABASE_URL": value})
    assert result.exit_code == 1
    assert len((result.stdout + result.stderr).strip().splitlines()) == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr


def test_work_with_a_malformed_url_is_one_line_without_the_password(app_dir: Path) -> None:
    (app_dir / "app_empty.py").write_text("")
    value, secret = MALFORMED_URLS["bad-percent-escape"]
    result = run_pgqueue(
        "work",
        "--app",
        "app_empty",
        env={"PGQUEUE_DATABASE_URL": value, "PYTHONPATH": str(app_dir)},
        process=True,
    )
    one_error(result, 1, secret=secret)


def test_work_waits_for_a_server_that_is_down_instead_of_failing(app_dir: Path) -> None:
    (app_dir / "app_waiting.py").write_text("")
    result = run_pgqueue(
        "work",
        "--app",
        "app_waiting",
        "--max-time",
        "1",
        env={**ENV, "PYTHONPATH": str(app_dir)},
        process=True,
    )
    assert result.exit_code == 0, result.stderr  # stopped by --max-time, still waiting
    assert "error: " not in result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr


def test_work_on_a_metrics_port_in_use_is_one_line_naming_it(app_dir: Path) -> None:
    (app_dir / "app_metrics.py").write_text("")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_pgqueue(
            "work",
            "--app",
            "app_metrics",
            "--metrics-port",
            str(port),
            env={**ENV, "PYTHONPATH": str(app_dir)},
            process=True,
        )
    line = one_error(result, 1, secret=PASSWORD)
    assert f":{port}: address already in use" in line


def test_the_metrics_server_names_a_port_it_cannot_take() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsServerError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            WorkerMetrics().serve(port, "127.0.0.1")


# ---- log lines: a value cannot forge a line ----------------------------------------------------

FORGED = "x\nINFO    forged\r\x1b[2K\x85\u2028"


def _record() -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "pgqueue.worker", "levelno": logging.INFO, "levelname": "INFO"}
    )
    record.msg = f"completed {FORGED}"
    record.job_type = FORGED
    record.error = ValueError(FORGED)
    return record


def test_text_logs_escape_control_characters_in_the_message_and_every_field() -> None:
    line = _TextFormatter().format(_record())
    assert len(line.splitlines()) == 1
    assert not any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F for char in line)
    assert "job_type=x\\nINFO    forged\\r\\x1b[2K\\x85\\u2028 " in line
    assert line.count("\\n") == 3  # message, job_type and error


def test_json_logs_stay_one_line_and_keep_the_value() -> None:
    line = _JsonFormatter().format(_record())
    assert len(line.splitlines()) == 1
    document = json.loads(line)
    assert document["job_type"] == FORGED
    assert document["error"] == FORGED


def test_a_field_whose_str_raises_does_not_lose_the_line() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    record = _record()
    record.job_type = Unprintable()
    assert "job_type=<unprintable Unprintable>" in _TextFormatter().format(record)
    assert json.loads(_JsonFormatter().format(record))["job_type"] == "<unprintable Unprintable>"


def test_a_logged_exception_keeps_its_traceback_on_one_line_without_the_password() -> None:
    try:
        raise RuntimeError(f"service broke talking to {CLOSED_PORT_URL}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.makeLogRecord(
        {"msg": "worker service failed, restarting it", "levelno": 40, "levelname": "ERROR"}
    )
    record.exc_info = exc_info
    line = _TextFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert "traceback=Traceback (most recent call last):\\n" in line
    assert "RuntimeError: service broke" in line and PASSWORD not in line
    document = json.loads(_JsonFormatter().format(record))
    assert document["traceback"].startswith("Traceback (most recent call last):\n")
    assert PASSWORD not in document["traceback"]


def test_log_time_stamps_match_loggings_own_across_seconds() -> None:
    formatter, reference = _TextFormatter(), logging.Formatter()
    for created in (1_700_000_000.123, 1_700_000_000.999, 1_700_000_001.004, 1_700_000_061.5):
        record = logging.makeLogRecord(
            {"msg": "x", "created": created, "msecs": created % 1 * 1000}
        )
        assert formatter.formatTime(record) == reference.formatTime(record)
