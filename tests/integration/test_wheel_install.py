"""A plain, non-editable install of the built wheel can migrate a new database."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pgqueue_migrate_works_from_the_installed_wheel(
    tmp_path: Path, empty_database_url: str
) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("pgqueue-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pgqueue/migrations/env.py" in names
    assert "pgqueue/sql/queries.sql" in names
    assert "pgqueue/py.typed" in names
    # The dashboard's templates and assets are package data, not Python: a wheel without them
    # installs and imports fine but answers every page with an error.
    assert "pgqueue/dashboard/templates/base.html" in names
    assert "pgqueue/dashboard/static/dashboard.js" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{wheel}[binary]"],
        check=True,
        capture_output=True,
    )
    # Run from an empty directory so nothing of the checkout can be picked up.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env["PGQUEUE_DATABASE_URL"] = empty_database_url
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(env_dir / "bin" / "pgqueue"), "migrate"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_database_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'pgqueue'"
            )
        }
    assert {"jobs", "failed_jobs", "workers"} <= tables
