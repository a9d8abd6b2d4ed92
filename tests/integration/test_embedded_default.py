"""With no PGQUEUE_DATABASE_URL, the CLI runs on an embedded cluster it starts and reuses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgqueue.embedded import EmbeddedCluster


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's tmp_path: as root where user namespaces are unavailable, the
    # server runs as `nobody`, which must be able to reach the directory.
    root = Path(tempfile.mkdtemp(prefix="pgq-emb-", dir="/tmp"))
    root.chmod(0o755)
    yield root / "cluster"
    EmbeddedCluster(root / "cluster").stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def _pgqueue(*args: str, embedded_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PGQUEUE_DATABASE_URL"}
    env["PGQUEUE_EMBEDDED_DIR"] = str(embedded_dir)
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_migrate_and_size_work_on_the_embedded_cluster(embedded_dir: Path) -> None:
    first = _pgqueue("migrate", embedded_dir=embedded_dir)
    assert first.returncode == 0, first.stderr
    announcements = [line for line in first.stderr.splitlines() if "embedded PostgreSQL" in line]
    assert len(announcements) == 1
    assert str(embedded_dir) in announcements[0]

    size = _pgqueue("size", "default", embedded_dir=embedded_dir)
    assert size.returncode == 0, size.stderr
    assert size.stdout.strip() == "0"


def test_a_second_command_reuses_the_running_cluster(embedded_dir: Path) -> None:
    assert _pgqueue("migrate", embedded_dir=embedded_dir).returncode == 0
    postmaster_pid = (embedded_dir / "pgdata" / "postmaster.pid").read_text().split()[0]
    assert _pgqueue("size", embedded_dir=embedded_dir).returncode == 0
    assert (embedded_dir / "pgdata" / "postmaster.pid").read_text().split()[0] == postmaster_pid


def test_a_stopped_cluster_is_started_again(embedded_dir: Path) -> None:
    assert _pgqueue("migrate", embedded_dir=embedded_dir).returncode == 0
    EmbeddedCluster(embedded_dir).stop()
    result = _pgqueue("size", embedded_dir=embedded_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
