"""Write docs/configuration.md from the code: every setting and every CLI flag.

Run `python docs/generate_configuration.py` after changing Settings or a command; a test fails
while the committed page differs from what this prints, so the reference cannot drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import annotated_types
import typer

from pgqueue.cli import _format_duration, app
from pgqueue.settings import MAX_SECONDS, Settings, variable_name

PAGE = Path(__file__).resolve().parent / "configuration.md"
# Settings written as a duration (`30d`) as well as in seconds.
DURATIONS = {"retention"}
# What a flag's help says after its text, `[env var: PGQUEUE_LEASE; default: 30]`: the columns
# of the tables say it already.
_HELP_SUFFIX = re.compile(r"\s*\[(?:env var|default):[^\]]*\]\s*$")
_VARIABLE = re.compile(r"\bPGQUEUE_[A-Z_]+\b")


def _shown(name: str, value: Any) -> str:
    """`value` of the setting `name` as a user writes it in the environment or on the command
    line: `default`, `30`, `true`, `30d` (2592000 seconds); `unset` for None or an empty list."""
    if value is None or value == []:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{','.join(str(item) for item in value)}`"
    if name in DURATIONS:
        return f"`{_format_duration(value)}` ({_number(value)} seconds)"
    return f"`{_number(value)}`"


def _setting_of(command_param: Any) -> str | None:
    """The Settings field a flag overrides: the one its help names (`[env var: PGQUEUE_...]`).
    A flag whose help names none overrides no setting, whatever its name (`failed list
    --queue` filters; `demo --concurrency` is the demo's own)."""
    variables = {variable_name(name): name for name in Settings.model_fields}
    for variable in _VARIABLE.findall(getattr(command_param, "help", None) or ""):
        if variable in variables:
            return variables[variable]
    return None


def _flags_by_setting(root: Any) -> dict[str, dict[str, list[str]]]:
    """For each setting, its flags as `--help` shows them, and the commands that take each."""
    found: dict[str, dict[str, list[str]]] = {}
    for path, command in _commands(root):
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            field = _setting_of(param)
            if field is not None:
                flag = ", ".join([*param.opts, *param.secondary_opts])
                found.setdefault(field, {}).setdefault(flag, []).append(path)
    return found


def _flag_cell(flags: dict[str, list[str]]) -> str:
    cells = []
    for flag, paths in flags.items():
        where = ", ".join(f"`{path}`" for path in paths) if len(paths) <= 3 else "most commands"
        cells.append(f"`{flag}` ({where})")
    return "; ".join(cells)


def _describe_settings(root: Any) -> list[str]:
    lines = [
        "## Settings",
        "",
        "Read from the environment or a `.env` file by `pgqueue.Settings`. CLI flags override them",
        "and take the same values; a value outside them is refused with exit code 2, naming the",
        "flag or the variable. Numbers must be finite (no `inf` or `nan`). Durations are seconds;",
        "`PGQUEUE_RETENTION` and `--older-than` also take a unit: `90s`, `15m`, `12h`, `30d`, `2w`.",
        "",
        "| variable | flag | default | values | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    flags = _flags_by_setting(root)
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(
            f"| `{variable_name(name)}` | {_flag_cell(flags.get(name, {}))} "
            f"| {_shown(name, default)} | {_values(field)} | {field.description or ''} |"
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
    """A number as a person writes it: `30`, `0.5`, `2592000`, `100 years`."""
    if value == MAX_SECONDS:
        return "100 years"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def _describe_command(path: str, command: Any) -> list[str]:
    summary = " ".join((command.help or "").strip().split("\n\n")[0].split())
    lines = [f"### `pgqueue {path}`", "", summary, ""]
    params = [p for p in command.params if p.name != "help"]
    if not params:
        return lines
    context = typer.Context(command, info_name=f"pgqueue {path}".strip())
    lines += ["| argument or flag | default | meaning |", "| --- | --- | --- |"]
    for param in params:
        field = _setting_of(param) if param.param_type_name == "option" else None
        if param.param_type_name == "option":
            names = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        else:  # as the usage line shows it: `QUEUE`, `[ID]...`
            names = f"`{' '.join(param.get_usage_pieces(context))}`"
        default = param.default
        if getattr(param, "is_flag", False) and not default:
            shown = "off"
        elif default is None and field is not None:
            shown = _shown(
                field, Settings.model_fields[field].get_default(call_default_factory=True)
            )
            shown = "" if shown == "unset" else shown
        elif default in (None, (), []) or callable(default):
            shown = ""
        else:
            shown = f"`{_number(default)}`"
        help_text = _HELP_SUFFIX.sub("", getattr(param, "help", None) or "")
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
        *_describe_settings(root),
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
