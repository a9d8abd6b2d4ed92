"""Workers under fire: many at once, SIGKILLs under a supervisor, a PostgreSQL crash, killed
connections. No job may be lost; a job may run twice only where a worker died while running it."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import Queue, Settings
from pgqueue.embedded import EmbeddedCluster
from tests.acceptance import jobs
from tests.acceptance.helpers import count as _count
from tests.acceptance.helpers import wait_for as _wait_for

FAST_RESCUE = {"PGQUEUE_RESCUE_INTERVAL": "0.5"}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _assert_each_job_finished(ledger: psycopg.Connection[Any], total: int) -> None:
    assert _count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0
    assert _count(ledger, "SELECT count(*) FROM pgqueue.failed_jobs") == 0
    finished = "SELECT count(DISTINCT job_id) FROM ledger WHERE event = 'finish'"
    assert _count(ledger, finished) == total


def test_four_workers_of_eight_slots_run_twenty_thousand_jobs_exactly_once(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        for _ in range(20):
            queue.bulk([jobs.Record() for _ in range(1000)])
    workers = [
        start_worker("--concurrency", "8", "--stop-when-empty", "--log-level", "warning")
        for _ in range(4)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=240)
        assert worker.returncode == 0, stderr
    _assert_each_job_finished(ledger, 20_000)
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 20_000
    assert _count(ledger, "SELECT count(DISTINCT pid) FROM ledger") == 4


def test_processes_flag_runs_workers_under_one_parent(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.Record(seconds=0.01) for _ in range(1000)])
    parent = start_worker("--processes", "2", "--concurrency", "8", "--stop-when-empty")
    _, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 0, stderr
    _assert_each_job_finished(ledger, 1000)
    assert _count(ledger, "SELECT count(DISTINCT pid) FROM ledger") == 2


def test_sigkilling_random_workers_under_a_supervisor_loses_no_job(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    total = 6000
    with Queue(settings) as queue:
        queue.bulk([jobs.Record(seconds=0.02) for _ in range(total)])
    supervisor = start_worker(
        "--processes",
        "3",
        "--concurrency",
        "8",
        "--lease",
        "1",
        "--log-level",
        "warning",
        env=FAST_RESCUE,
    )
    killed: set[int] = set()
    chaos_ends = time.monotonic() + 30
    rng = random.Random(7)
    while time.monotonic() < chaos_ends:
        time.sleep(2)
        children = _children(supervisor.pid)
        if children:
            victim = rng.choice(children)
            killed.add(victim)

            os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0, timeout=120)
    supervisor.send_signal(signal.SIGTERM)
    _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, stderr
    assert len(killed) >= 10
    _assert_each_job_finished(ledger, total)
    reran = ledger.execute(
        "SELECT job_id, array_agg(pid ORDER BY at) FROM ledger WHERE event = 'start' "
        "GROUP BY job_id HAVING count(*) > 1"
    ).fetchall()
    for job_id, pids in reran:
        assert set(pids[:-1]) <= killed, f"job {job_id} ran again though its worker lived"


@contextlib.contextmanager
def _crash_then_drain(
    cluster: EmbeddedCluster, ledger: psycopg.Connection[Any], settings: Settings
) -> Iterator[psycopg.Connection[Any]]:
    """Crash PostgreSQL (an immediate restart), then yield a new connection once the workers
    have emptied the jobs table."""
    cluster.restart("immediate")
    ledger.close()
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as fresh:
        _wait_for(lambda: _count(fresh, "SELECT count(*) FROM pgqueue.jobs") == 0, timeout=120)
        yield fresh


def test_a_postgresql_crash_restart_loses_no_job_and_workers_carry_on(
    settings: Settings,
    ledger: psycopg.Connection[Any],
    start_worker: Any,
    embedded_cluster: EmbeddedCluster | None,
) -> None:
    if embedded_cluster is None:
        pytest.skip("needs the test suite's own cluster to restart")
    total = 3000
    with Queue(settings) as queue:
        queue.bulk([jobs.Record(seconds=0.005) for _ in range(total)])
    workers = [
        start_worker("--concurrency", "8", "--lease", "2", env=FAST_RESCUE) for _ in range(2)
    ]
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") > 300)
    with _crash_then_drain(embedded_cluster, ledger, settings) as fresh:
        assert [worker.poll() for worker in workers] == [None, None]
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=60)
            assert worker.returncode == 0, stderr
            assert "listener lost" in stderr
        _assert_each_job_finished(fresh, total)


def test_after_a_postgresql_crash_a_finished_job_never_costs_a_try(
    settings: Settings,
    ledger: psycopg.Connection[Any],
    start_worker: Any,
    embedded_cluster: EmbeddedCluster | None,
) -> None:
    # With asynchronous worker commits the crash loses the last acknowledgements: those rows are
    # rescued with their only try spent and end in failed_jobs. Durable worker writes keep them.
    if embedded_cluster is None:
        pytest.skip("needs the test suite's own cluster to restart")
    total = 2000
    with Queue(settings) as queue:
        queue.bulk([jobs.OnlyTry() for _ in range(total)])
    worker = start_worker("--concurrency", "16", "--lease", "2", env=FAST_RESCUE)
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.jobs") < total - 300)
    with _crash_then_drain(embedded_cluster, ledger, settings) as fresh:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
        failed = fresh.execute(
            "SELECT exception_class, count(*) FROM pgqueue.failed_jobs GROUP BY 1"
        ).fetchall()
        assert failed == []


def test_killed_worker_connections_are_replaced_without_losing_jobs(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    total = 3000
    with Queue(settings) as queue:
        queue.bulk([jobs.Record(seconds=0.005) for _ in range(total)])
    workers = [start_worker("--concurrency", "8", env=FAST_RESCUE) for _ in range(2)]
    for _ in range(3):
        _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") > 0)
        time.sleep(0.5)
        ledger.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'pgqueue-%' AND pid <> pg_backend_pid()"
        )
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0, timeout=120)
    assert [worker.poll() for worker in workers] == [None, None]
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
    _assert_each_job_finished(ledger, total)
