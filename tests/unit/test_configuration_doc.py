"""docs/configuration.md is exactly what the code generates: no setting or flag goes undocumented."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_reference_matches_the_code() -> None:
    generator = runpy.run_path(str(DOCS / "generate_configuration.py"))
    expected = generator["render"]()
    assert (DOCS / "configuration.md").read_text() == expected, (
        "docs/configuration.md is stale: run `python docs/generate_configuration.py`"
    )


def test_defaults_are_written_as_a_user_writes_them() -> None:
    page = (DOCS / "configuration.md").read_text()
    for python_repr in ("`True`", "`False`", "`['", "`[]`", "`None`", ".0`", "e+0"):
        assert python_repr not in page, f"{python_repr} in docs/configuration.md"
    assert "| `PGQUEUE_QUEUE` | `--queue` (`work`) |" in page
    assert "| `30d` (2592000 seconds) |" in page
    assert "| `PGQUEUE_WORKER_SYNCHRONOUS_COMMIT` |  | `true` |" in page


def test_each_settings_flag_is_one_its_commands_help_shows() -> None:
    from typer.testing import CliRunner

    from pgqueue.cli import app

    page = (DOCS / "configuration.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `PGQUEUE_")]
    checked = 0
    for row in rows:
        flag_cell = row.split(" | ")[1]
        for flag, commands in re.findall(r"`(--[\w-]+)` \(([^)]*)\)", flag_cell):
            for command in re.findall(r"`([\w ]+)`", commands):
                help_text = CliRunner().invoke(app, [*command.split(), "--help"]).output
                assert re.search(rf"(?m)^\s+(?:-\w, )?{flag}\b", help_text), (flag, command)
                checked += 1
    assert checked >= 10
