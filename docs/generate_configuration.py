"""Write docs/configuration.md from the code: every setting and every CLI flag.

Run `python docs/generate_configuration.py` after changing Settings or a command; a test fails
while the committed page differs from what this prints, so the reference cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from pgqueue.cli import app
from pgqueue.settings import Settings

PAGE = Path(__file__).resolve().parent / "configuration.md"


def _env_name(name: str, field: Any) -> str:
    alias = field.validation_alias
    return alias if isinstance(alias, str) else f"PGQUEUE_{name.upper()}"


def _describe_settings() -> list[str]:
    lines = [
        "## Settings",
        "",
        "Read from the environment or a `.env` file by `pgqueue.Settings`. CLI flags override them.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else f"`{default}`"
        lines.append(f"| `{_env_name(name, field)}` | {shown} | {field.description or ''} |")
    return lines


def _describe_command(path: str, command: Any) -> list[str]:
    lines = [f"### `pgqueue {path}`", "", (command.help or "").strip().splitlines()[0], ""]
    params = [p for p in command.params if p.name != "help"]
    if not params:
        return lines
    lines += ["| argument or flag | default | meaning |", "| --- | --- | --- |"]
    for param in params:
        if param.param_type_name == "option":
            names = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        else:
            names = f"`{(param.name or '').upper()}`"
        default = param.default
        shown = "" if default in (None, (), []) or callable(default) else f"`{default}`"
        help_text = getattr(param, "help", None) or ""
        lines.append(f"| {names} | {shown} | {help_text} |")
    lines.append("")
    return lines


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf command under `group` (typer vendors click, so this reads its attributes)."""
    found: list[tuple[str, Any]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            found += _commands(command, f"{path} ")
        else:
            found.append((path, command))
    return found


def render() -> str:
    root = typer.main.get_command(app)
    lines = [
        "# Configuration reference",
        "",
        "Generated from the code by `python docs/generate_configuration.py`; a test keeps it current.",
        "",
        *_describe_settings(),
        "",
        "## Commands",
        "",
    ]
    for path, command in _commands(root):
        lines += _describe_command(path, command)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    PAGE.write_text(render())
    sys.stdout.write(f"wrote {PAGE}\n")
