"""Every Python example in the README runs as written, in order, against a migrated database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_python_examples_run_as_written(tmp_path: Path, database_url: str) -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 3
    # The README's blocks build on each other, as a reader pastes them into one session.
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env["PGQUEUE_DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(database_url) as conn:
        counts = conn.execute(
            "SELECT count(*) FILTER (WHERE run_at <= now()), count(*) FROM pgqueue.jobs "
            "WHERE queue = 'emails'"
        ).fetchone()
    # 42, 7, 1000 in bulk and 43 are ready; 8 is delayed by five minutes.
    assert counts == (1003, 1004)
    assert result.stdout.split() == ["1003", "1004"]
