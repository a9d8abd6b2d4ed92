"""compose.yaml and the Dockerfile as the deployment tests read them, and the `pgqueue` command
line parser they check commands with (typer's own, so a flag the CLI lacks is an error here too).
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Any

import typer
import yaml

from pgqueue.cli import app

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"

# What the cleanup service's entrypoint runs: `pgqueue` with the service's command as arguments.
_LOOP_RUNS_PGQUEUE = 'pgqueue "$$@"'


def compose_file() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose_file()["services"]
    return services


def pgqueue_services() -> dict[str, dict[str, Any]]:
    """The services that run the image built from the Dockerfile."""
    return {name: spec for name, spec in compose_services().items() if "build" in spec}


def pgqueue_arguments(service: dict[str, Any]) -> list[str]:
    """The arguments the service passes to `pgqueue`: its command, run by the image's entrypoint
    or by an entrypoint script that ends in `pgqueue "$@"`."""
    entrypoint = service.get("entrypoint")
    if entrypoint is not None:
        assert entrypoint[:2] == ["sh", "-c"], entrypoint
        assert _LOOP_RUNS_PGQUEUE in entrypoint[2], entrypoint
    command = service["command"]
    assert isinstance(command, list), "commands are lists, so no shell splits them"
    return [str(arg) for arg in command]


def parse_pgqueue(arguments: list[str]) -> dict[str, Any]:
    """Parse `pgqueue ARGUMENTS` as the CLI would (without running it); return the command's
    parameters. Raises `typer.TyperException` for an unknown command, flag or bad value."""
    command: Any = _cli()
    rest = list(arguments)
    while hasattr(command, "commands"):
        name, *rest = rest
        if name not in command.commands:
            raise typer.BadParameter(f"no pgqueue command {name!r}")
        command = command.commands[name]
    context = command.make_context(command.name, rest)
    params: dict[str, Any] = context.params
    return params


@functools.cache
def _cli() -> Any:
    return typer.main.get_command(app)


def shell_pgqueue_arguments(line: str) -> list[str]:
    """The arguments after the `pgqueue` executable in a shell command line (systemd, supervisor)."""
    words = shlex.split(line)
    for index, word in enumerate(words):
        if word == "pgqueue" or word.endswith("/pgqueue"):
            return words[index + 1 :]
    raise AssertionError(f"no pgqueue executable in {line!r}")


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


def compose_duration(text: str) -> float:
    """Seconds in a Compose duration such as `45s` or `1m30s`."""
    parts = _DURATION_PART.findall(text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
