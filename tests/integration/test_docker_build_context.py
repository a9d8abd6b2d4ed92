"""The Docker build context (only what .dockerignore lets in) is enough to build pgqueue's wheel,
migrations included: the Dockerfile's builder stage, without Docker and offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deployment_files import REPO


@pytest.mark.slow
def test_the_build_context_builds_a_wheel_with_the_migrations(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    rules = (REPO / ".dockerignore").read_text().splitlines()
    for rule in rules:
        if rule.startswith("!"):
            source = REPO / rule[1:].rstrip("/")
            if source.is_dir():
                shutil.copytree(
                    source,
                    context / source.name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            else:
                shutil.copy2(source, context / source.name)

    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "--quiet", "--wheel-dir", str(tmp_path / "wheels"), ".[binary]"],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=300,
    )

    (wheel,) = (tmp_path / "wheels").glob("pgqueue-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pgqueue/migrations/env.py" in names
    assert "pgqueue/sql/queries.sql" in names
