"""The one way tests run the `pgqueue` CLI, and the one check of an error's shape.

`run_pgqueue` runs in process by default (typer's CliRunner through the real entry point, so the
root command's error handling and exit codes are the ones a shell sees); `process=True` runs
`python -m pgqueue` for `work` cases that need a process of their own (signals, a worker loop,
ports), and `script=True` runs the installed `pgqueue` console script, as a user types it (its
sys.path does not start with the current directory, as `python -m`'s does). Either way the
caller's `PGQUEUE_*` variables are dropped: a run sees only `env`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from pgqueue.cli import app

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    """What one `pgqueue` run did."""

    exit_code: int
    stdout: str
    stderr: str


def run_pgqueue(
    *args: str,
    env: Mapping[str, str] | None = None,
    process: bool = False,
    script: bool = False,
    cwd: Path | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> Run:
    """Run `pgqueue ARGS` with exactly the `PGQUEUE_*` variables in `env` (and `input` on stdin)."""
    if process or script:
        command = (
            [str(Path(sys.executable).with_name("pgqueue"))]
            if script
            else [sys.executable, "-m", "pgqueue"]
        )
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
        environment.update(env or {})
        done = subprocess.run(
            [*command, *args],
            env=environment,
            cwd=cwd or REPO,
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        return Run(done.returncode, done.stdout, done.stderr)
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PGQUEUE_")}
    logger = logging.getLogger("pgqueue")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        result = CliRunner().invoke(
            app, list(args), input=input, env={**unset, **(env or {})}, catch_exceptions=False
        )
    finally:  # `work` points pgqueue's logger at the runner's stderr, which is gone after it
        logger.handlers[:], logger.level, logger.propagate = saved
    return Run(result.exit_code, result.stdout, result.stderr)


def one_error(run: Run, exit_code: int, *, secret: str | None = None) -> str:
    """Assert `run` failed with `exit_code` and one `error: ...` line on stderr, no traceback
    anywhere, and never showed `secret`; return that line."""
    assert run.exit_code == exit_code, (run.exit_code, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    if secret is not None:
        assert secret not in run.stdout + run.stderr
    return lines[0]
