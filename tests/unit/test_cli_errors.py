"""Bad configuration is one clear line on stderr and exit code 1, before any database is touched."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["size", "--schema", "1bad"], {}),
        (["size"], {"PGQUEUE_SCHEMA": "bad-name"}),
        (["migrate"], {"PGQUEUE_CONCURRENCY": "zero"}),
    ],
    ids=["flag", "environment", "worker-setting"],
)
def test_invalid_configuration_is_one_line_and_exit_one(
    args: list[str], env: dict[str, str]
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    environment.update({"PGQUEUE_DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/x", **env})
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue", *args],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid configuration: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
