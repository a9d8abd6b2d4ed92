"""compose.yaml, the Dockerfile and docs/deployment.md, read without Docker or a database: every
command is one the `pgqueue` CLI accepts, services start in order, workers scale and stop
gracefully, and every environment name is one `Settings` reads.

What those commands do against a real PostgreSQL is tests/acceptance/test_compose.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from pgqueue.settings import Settings
from tests.deployment_files import (
    REPO,
    compose_duration,
    compose_file,
    compose_services,
    dockerfile_stages,
    parse_pgqueue,
    pgqueue_arguments,
    pgqueue_services,
    shell_pgqueue_arguments,
)

DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"


def settings_environment_names() -> set[str]:
    """Every environment variable `Settings` reads: PGQUEUE_<FIELD>, or the field's alias."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def effective_grace(arguments: list[str], environment: dict[str, str], monkeypatch: Any) -> float:
    """The grace a `pgqueue work` command runs with: --grace, else the environment, else the
    default, resolved as the CLI resolves it."""
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    flag = parse_pgqueue(arguments)["grace"]
    return float(flag) if flag is not None else Settings().grace


# ---- compose.yaml ----------------------------------------------------------------------------


def test_compose_runs_postgres_and_the_three_pgqueue_services() -> None:
    assert set(compose_services()) == {"postgres", "migrate", "worker", "cleanup"}
    assert set(pgqueue_services()) == {"migrate", "worker", "cleanup"}


@pytest.mark.parametrize(
    ("service", "command"),
    [("migrate", "migrate"), ("worker", "work"), ("cleanup", "cleanup")],
)
def test_each_service_runs_a_pgqueue_command_with_valid_flags(service: str, command: str) -> None:
    arguments = pgqueue_arguments(pgqueue_services()[service])
    assert arguments[0] == command
    parse_pgqueue(arguments)  # raises on an unknown command, flag or value


def test_the_command_check_rejects_what_the_cli_rejects() -> None:
    with pytest.raises(typer.TyperException, match="No such option"):
        parse_pgqueue(["work", "--app", "examples.compose_jobs", "--concurency", "5"])
    with pytest.raises(typer.TyperException):
        parse_pgqueue(["work", "--grace", "-1"])
    with pytest.raises(typer.TyperException):
        parse_pgqueue(["wrok"])


def test_postgres_is_health_checked_with_pg_isready_and_keeps_data_in_a_named_volume() -> None:
    postgres = compose_services()["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    volume, _, path = postgres["volumes"][0].partition(":")
    assert path == "/var/lib/postgresql/data"
    assert volume in compose_file()["volumes"]


def test_migrate_waits_for_a_healthy_postgres_and_runs_once() -> None:
    migrate = pgqueue_services()["migrate"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate.get("restart", "no") == "no"


@pytest.mark.parametrize("service", ["worker", "cleanup"])
def test_service_starts_only_after_migrate_completed(service: str) -> None:
    depends_on = pgqueue_services()[service]["depends_on"]
    assert depends_on == {"migrate": {"condition": "service_completed_successfully"}}


def test_worker_scales_no_fixed_name_or_host_port() -> None:
    worker = pgqueue_services()["worker"]
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert "ports" not in worker


def test_worker_gets_sigterm_and_more_time_than_its_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = pgqueue_services()["worker"]
    grace = effective_grace(pgqueue_arguments(worker), worker["environment"], monkeypatch)
    assert worker["stop_signal"] == "SIGTERM"
    assert compose_duration(worker["stop_grace_period"]) >= grace + 10


def test_worker_app_module_is_mounted_on_the_image_import_path() -> None:
    worker = pgqueue_services()["worker"]
    app_module = parse_pgqueue(pgqueue_arguments(worker))["app_modules"][0]
    (mount,) = worker["volumes"]
    source, target, *_ = mount.split(":")
    package, _, module = app_module.rpartition(".")
    assert (REPO / source / f"{module}.py").is_file()
    assert target == f"/app/{package}"
    final = dockerfile_stages()[-1]
    environment = [arguments for instruction, arguments in final if instruction == "ENV"]
    assert any("PYTHONPATH=/app" in arguments.split() for arguments in environment)


def test_cleanup_loop_runs_its_command_daily() -> None:
    cleanup = pgqueue_services()["cleanup"]
    script = cleanup["entrypoint"][2]
    assert "sleep 86400" in script
    assert parse_pgqueue(pgqueue_arguments(cleanup))["older_than"] == "30d"


@pytest.mark.parametrize("service", ["migrate", "worker", "cleanup"])
def test_service_environment_names_are_ones_settings_reads(service: str) -> None:
    environment = pgqueue_services()[service]["environment"]
    assert "PGQUEUE_DATABASE_URL" in environment
    assert set(environment) <= settings_environment_names()


def test_settings_environment_names_include_the_schema_alias() -> None:
    names = settings_environment_names()
    assert {"PGQUEUE_DATABASE_URL", "PGQUEUE_SCHEMA", "PGQUEUE_GRACE"} <= names
    assert "PGQUEUE_DB_SCHEMA" not in names


# ---- Dockerfile and .dockerignore --------------------------------------------------------------


def test_dockerfile_builds_the_wheel_in_a_builder_stage() -> None:
    build, _final = dockerfile_stages()
    assert build[0] == ("FROM", "python:3.11-slim AS build")
    assert any(
        instruction == "RUN" and "pip wheel" in arguments and '".[binary]"' in arguments
        for instruction, arguments in build
    )


def test_dockerfile_installs_pgqueue_only_from_the_built_wheels() -> None:
    final = dockerfile_stages()[-1]
    assert final[0] == ("FROM", "python:3.11-slim")
    (install,) = [arguments for instruction, arguments in final if "pip install" in arguments]
    assert "from=build,source=/wheels" in install
    assert "--no-index --find-links /wheels" in install
    assert not any(instruction == "COPY" for instruction, _ in final)  # no sources at runtime


def test_dockerfile_runs_pgqueue_as_a_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    users = [arguments for instruction, arguments in final if instruction == "USER"]
    assert users
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert final.index(("USER", users[-1])) > max(
        index for index, (instruction, _) in enumerate(final) if instruction == "RUN"
    )
    assert ("ENTRYPOINT", '["pgqueue"]') in final


def test_docker_build_context_holds_what_the_dockerfile_copies_and_nothing_secret() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # everything is left out unless named
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    sources = {
        source.rstrip("/")
        for stage in dockerfile_stages()
        for instruction, arguments in stage
        if instruction == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }
    assert sources
    assert sources <= allowed
    assert all((REPO / source).exists() for source in sources)
    assert not {".env", ".git", ".venv"} & allowed


# ---- docs/deployment.md ----------------------------------------------------------------------

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A path ending in /pgqueue, or pgqueue at the start of a line or an inline code span.
_PGQUEUE_PATH = re.compile(r"(?:(?<=[\s=;'\"])|^)(?:[\w.-]*/)+pgqueue(?= )")
_PGQUEUE_INLINE = re.compile(r"`(pgqueue\s[^`]+)`")


def doc_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block of docs/deployment.md."""
    return _FENCE.findall(DEPLOYMENT_DOC.read_text())


def doc_block(first_line: str) -> str:
    """The fenced block whose first line is `first_line` (the file name comment)."""
    (block,) = [text for _, text in doc_blocks() if text.splitlines()[0] == first_line]
    return block


def doc_commands() -> list[list[str]]:
    """The arguments of every pgqueue command the page shows, up to a shell operator or quote."""
    commands: list[list[str]] = []
    for _, text in doc_blocks():
        for line in text.splitlines():
            for match in _PGQUEUE_PATH.finditer(line):
                rest = re.split(r"[;&|'\"#>]", line[match.end() :])[0]
                commands.append(shell_pgqueue_arguments(f"pgqueue {rest}"))
    inline = _PGQUEUE_INLINE.findall(_FENCE.sub("", DEPLOYMENT_DOC.read_text()))
    commands += [shell_pgqueue_arguments(span) for span in inline]
    return commands


def test_every_pgqueue_command_in_the_deployment_doc_is_valid() -> None:
    commands = doc_commands()
    assert {"work", "migrate", "cleanup", "roles", "stats", "doctor"} <= {c[0] for c in commands}
    for arguments in commands:
        parse_pgqueue(arguments)


def test_every_environment_name_in_the_deployment_doc_is_one_settings_reads() -> None:
    mentioned = set(re.findall(r"\bPGQUEUE_[A-Z_]+\b", DEPLOYMENT_DOC.read_text()))
    assert mentioned
    assert mentioned <= settings_environment_names()


def _ini_values(block: str, separator: str = "=") -> dict[str, str]:
    values: dict[str, str] = {}
    for line in block.splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition(separator)
            values[key.strip()] = value.strip()
    return values


def _environment_of(assignments: list[str]) -> dict[str, str]:
    pairs = (assignment.partition("=") for assignment in assignments)
    return {name: value.strip('"') for name, _, value in pairs}


def test_systemd_worker_drains_on_sigterm_to_the_main_process_within_its_stop_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unit = _ini_values(doc_block("# /etc/systemd/system/pgqueue-worker.service"))
    arguments = shell_pgqueue_arguments(unit["ExecStart"])
    assert arguments[0] == "work"
    environment = _environment_of(unit["Environment"].split())
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["KillMode"] == "mixed"
    assert (
        float(unit["TimeoutStopSec"]) >= effective_grace(arguments, environment, monkeypatch) + 10
    )


def test_systemd_timer_runs_the_cleanup_service_daily() -> None:
    service = _ini_values(doc_block("# /etc/systemd/system/pgqueue-cleanup.service"))
    timer = _ini_values(doc_block("# /etc/systemd/system/pgqueue-cleanup.timer"))
    assert service["Type"] == "oneshot"
    assert shell_pgqueue_arguments(service["ExecStart"])[0] == "cleanup"
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d:\d\d|daily", timer["OnCalendar"])
    assert timer["WantedBy"] == "timers.target"


def test_supervisor_worker_drains_on_sigterm_to_the_main_process_within_stopwaitsecs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    program = _ini_values(doc_block("; /etc/supervisor/conf.d/pgqueue.conf"))
    arguments = shell_pgqueue_arguments(program["command"])
    assert arguments[0] == "work"
    environment = _environment_of(program["environment"].split(","))
    assert program["stopsignal"] == "TERM"
    assert program["stopasgroup"] == "false"
    assert program["killasgroup"] == "true"
    assert (
        float(program["stopwaitsecs"]) >= effective_grace(arguments, environment, monkeypatch) + 10
    )


def test_deployment_doc_stop_times_match_compose(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = pgqueue_services()["worker"]
    grace = effective_grace(pgqueue_arguments(worker), worker["environment"], monkeypatch)
    text = DEPLOYMENT_DOC.read_text()
    assert f"stop_grace_period: {worker['stop_grace_period']}" in text
    assert f'PGQUEUE_GRACE: "{grace:g}"' in text
