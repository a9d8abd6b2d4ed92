"""Running the test project's manage.py as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).parent / "project"


def manage(
    database_url: str, *args: str, timeout: float = 90, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `python manage.py ARGS` in the project, on `database_url`, as a person would."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PGQUEUE_", "DJANGO_"))
    }
    env["TESTPROJECT_DATABASE_URL"] = database_url
    completed = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args)} exited {completed.returncode}:\n{completed.stderr}"
        )
    return completed
