"""Write docs/configuration.md from the code: every setting and every CLI flag.

Run `python docs/generate_configuration.py` after changing Settings or a command; a test fails
while the committed page differs from what this prints, so the reference cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import annotated_types
import typer

from pgqueue.cli import app
from pgqueue.settings import MAX_SECONDS, Settings

PAGE = Path(__file__).resolve().parent / "configuration.md"


def _env_name(name: str, field: Any) -> str:
    alias = field.validation_alias
    return alias if isinstance(alias, str) else f"PGQUEUE_{name.upper()}"


def _describe_settings() -> list[str]:
    lines = [
        "## Settings",
        "",
        "Read from the environment or a `.env` file by `pgqueue.Settings`. CLI flags override them",
        "and take the same values; a value outside them is refused with exit code 2, naming the",
        "flag or the variable. Numbers must be finite (no `inf` or `nan`).",
        "",
        "| variable | default | values | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else f"`{default}`"
        lines.append(
            f"| `{_env_name(name, field)}` | {shown} | {_values(field)} "
            f"| {field.description or ''} |"
        )
    return lines


def _values(field: Any) -> str:
    """The range a numeric setting accepts, from its constraints: `1 to 10000`, `> 0`."""
    bounds = {type(item).__name__: item for item in field.metadata}
    low = bounds.get("Ge") or bounds.get("Gt")
    high = bounds.get("Le")
    if low is None and high is None:
        return ""
    text = "" if low is None else _number(getattr(low, "ge", getattr(low, "gt", None)))
    if isinstance(low, annotated_types.Gt):
        return f"> {text}" if high is None else f"> {text}, at most {_number(high.le)}"
    if high is None:
        return text
    return f"at most {_number(high.le)}" if low is None else f"{text} to {_number(high.le)}"


def _number(value: Any) -> str:
    if value == MAX_SECONDS:
        return "100 years"
    return f"{value:g}" if isinstance(value, float) else str(value)


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
        low, high = getattr(param, "min", None), getattr(param, "max", None)
        if low is not None or high is not None:  # typer's own range check
            help_text += f" ({_number(low)} to {_number(high)})" if high else f" (at least {low})"
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
    # The root command's own flags, then one section per command; [4:] skips its heading and help.
    lines += [
        "### Global flags: `pgqueue [--debug] COMMAND ...`",
        "",
        *_describe_command("", root)[4:],
    ]
    for path, command in _commands(root):
        lines += _describe_command(path, command)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    PAGE.write_text(render())
    sys.stdout.write(f"wrote {PAGE}\n")
