"""Nothing a row, a handler or an outage does takes a real `pgqueue work` process down, and a
worker that lost its lease (paused, cut off) stops instead of running beside the next attempt."""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg
from psycopg import sql

from pgqueue import Queue, Settings
from pgqueue.outcome import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS
from tests.acceptance import jobs
from tests.acceptance.helpers import count as _count
from tests.acceptance.helpers import wait_for as _wait_for
from tests.cli_runner import run_pgqueue

FAST_RESCUE = {"PGQUEUE_RESCUE_INTERVAL": "0.5"}
PASSWORD = "s3cret-pw"


def _failed(ledger: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    # payload->>'kind', not the payload: a poison row's payload is too deep for Python's json.
    return ledger.execute(
        "SELECT payload->>'kind', job_type, exception_class, exception_message, traceback "
        "FROM pgqueue.failed_jobs ORDER BY id"
    ).fetchall()


def test_poison_rows_fail_alone_and_the_rest_of_their_batch_runs(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any, database_url: str
) -> None:
    with Queue(settings) as queue:
        queue.bulk([jobs.Record() for _ in range(20)])
    poison = [
        '{"seconds": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"seconds": ' + "9" * 5001 + "}",
        '"just a string"',
        "null",
        '{"seconds": "soon"}',
        '{"unexpected": 1}',
    ]
    for payload in poison:
        ledger.execute(
            "INSERT INTO pgqueue.jobs (queue, job_type, payload) "
            "VALUES ('default', 'acceptance.Record', %s::jsonb)",
            (payload,),
        )
    ledger.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload) "
        "VALUES ('default', E'no.such.Type\\nINFO forged line', '{}')"
    )
    worker = start_worker("--stop-when-empty", "--concurrency", "50")
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert not any(line.startswith("INFO forged line") for line in stderr.splitlines())
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 20
    assert _count(ledger, "SELECT count(*) FROM pgqueue.jobs") == 0
    failed = _failed(ledger)
    classes = sorted(row[2] for row in failed)
    assert classes == ["pgqueue.errors.InvalidPayloadError"] * 6 + [
        "pgqueue.errors.UnknownJobTypeError"
    ]
    # The failed-job tools read the poison rows too (Python's json cannot: they show as text).
    env = {"PGQUEUE_DATABASE_URL": database_url}
    listed = run_pgqueue("failed", "list", "--json", env=env)
    assert listed.exit_code == 0, listed.stderr
    deep_id = ledger.execute(
        "SELECT id FROM pgqueue.failed_jobs WHERE length(payload::text) > 10000 LIMIT 1"
    ).fetchone()
    assert deep_id is not None
    shown = run_pgqueue("failed", "show", str(deep_id[0]), env=env)
    assert shown.exit_code == 0, shown.stderr


def _hostile_env(database_url: str) -> dict[str, str]:
    # The test server trusts local connections, so the password is sent and ignored: what
    # matters is that the worker knows it and must never store or log it.
    return {"PGQUEUE_DATABASE_URL": f"{database_url} password={PASSWORD}"}


def test_hostile_exceptions_are_stored_safely_and_the_worker_goes_on(
    settings: Settings,
    ledger: psycopg.Connection[Any],
    start_worker: Any,
    database_url: str,
) -> None:
    kinds = ["nul", "surrogate", "unprintable", "huge", "dsn", "exit"]
    with Queue(settings) as queue:
        queue.bulk([jobs.RaisesHostile(kind=kind) for kind in kinds])
        queue.bulk([jobs.BlockingRaisesHostile(kind=kind) for kind in kinds])
        queue.bulk([jobs.Record() for _ in range(5)])
    worker = start_worker("--stop-when-empty", env=_hostile_env(database_url))
    _, stderr = worker.communicate(timeout=90)
    assert worker.returncode == 0, stderr
    assert "Traceback (most recent call last)" not in stderr.split("failed")[0]
    assert PASSWORD not in stderr
    assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 5
    rows = _failed(ledger)
    assert len(rows) == 2 * len(kinds)
    by_kind: dict[tuple[str, str], tuple[str, str, str]] = {
        (kind, job_type): (cls, message, tb) for kind, job_type, cls, message, tb in rows
    }
    for job_type in ("acceptance.RaisesHostile", "acceptance.BlockingRaisesHostile"):
        assert by_kind["nul", job_type][1] == "bad \\x00 byte"
        assert by_kind["surrogate", job_type][1] == "bad \\udc80 surrogate"
        cls, message, _ = by_kind["unprintable", job_type]
        assert cls == "tests.acceptance.jobs._UnprintableError"
        assert message == "<str() of this exception raised RuntimeError>"
        _, message, tb = by_kind["huge", job_type]
        assert message.startswith("xxxx") and "characters cut" in message
        assert len(message) <= MAX_MESSAGE_CHARS + 64
        assert len(tb) <= MAX_TRACEBACK_CHARS + 64
        _, message, tb = by_kind["dsn", job_type]
        assert "could not reach" in message and "***" in message
        assert PASSWORD not in message and PASSWORD not in tb
        assert by_kind["exit", job_type][0] == "builtins.SystemExit"


def test_a_handler_that_swallows_cancellation_is_a_timed_out_try(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(jobs.SwallowsCancellation(seconds=3))
    worker = start_worker("--stop-when-empty")
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert "overruns its timeout" in stderr
    [(_, _, cls, message, _)] = _failed(ledger)
    assert cls == "pgqueue.errors.JobTimeoutError"
    assert "ignored cancellation" in message


def test_sigterm_is_bounded_by_the_grace_whatever_a_handler_does(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        job_id = queue.dispatch(jobs.SwallowsCancellation(seconds=60))
    worker = start_worker("--grace", "1")
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger") == 1)
    worker.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, stderr = worker.communicate(timeout=30)
    took = time.monotonic() - started
    assert took < 6, (took, stderr)
    assert "abandoned" in stderr
    # Released, not failed: the row is back in the queue, its try not spent.
    row = ledger.execute(
        "SELECT attempts, lease_token FROM pgqueue.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == (0, None)


def test_a_second_sigterm_stops_hard_even_when_handlers_ignore_cancellation(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(jobs.SwallowsCancellation(seconds=60))
    worker = start_worker("--grace", "60")
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger") == 1)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    started = time.monotonic()
    worker.communicate(timeout=30)
    assert time.monotonic() - started < 6
    assert worker.returncode == 1


def test_a_worker_paused_past_its_lease_is_fenced_after_it_resumes(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    with Queue(settings) as queue:
        queue.dispatch(jobs.RecordsFailed(seconds=6, fail=True).model_copy())
    paused = start_worker("--lease", "1", "--log-level", "debug", env=FAST_RESCUE)
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 1)
    paused.send_signal(signal.SIGSTOP)
    try:
        other = start_worker("--lease", "1", env=FAST_RESCUE)
        _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 2)
    finally:
        paused.send_signal(signal.SIGCONT)
    # The first attempt would finish 6 s after it started; the fence must stop it long before.
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM pgqueue.failed_jobs") == 1, 30)
    time.sleep(1)
    for process in (paused, other):
        process.send_signal(signal.SIGTERM)
    _, paused_err = paused.communicate(timeout=30)
    other.communicate(timeout=30)
    events = ledger.execute("SELECT pid, event FROM ledger ORDER BY at").fetchall()
    by_paused = [event for pid, event in events if pid == paused.pid]
    assert by_paused == ["start"], events  # never finished, never ran failed()
    assert [event for pid, event in events if pid == other.pid] == [
        "start",
        "finish",
        "failed-called",
    ]
    assert "lease lost" in paused_err
    for stale in ("completed job_id", "retrying job_id", "failed job_id"):
        assert stale not in paused_err


def test_a_database_that_refuses_connections_at_start_is_waited_for(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any, database_url: str
) -> None:
    # Superusers are exempt from connection limits: a plain role with the worker's rights.
    ledger.execute("CREATE ROLE pgqueue_limited LOGIN CONNECTION LIMIT 0")
    ledger.execute("GRANT USAGE ON SCHEMA pgqueue TO pgqueue_limited")
    ledger.execute("GRANT ALL ON ALL TABLES IN SCHEMA pgqueue TO pgqueue_limited")
    ledger.execute("GRANT ALL ON ledger TO pgqueue_limited")
    ledger.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA pgqueue TO pgqueue_limited")
    try:
        limited = psycopg.conninfo.make_conninfo(database_url, user="pgqueue_limited")
        with Queue(settings) as queue:
            queue.dispatch(jobs.Record())
        worker = start_worker(
            "--stop-when-empty", "--sleep", "0.1", env={"PGQUEUE_DATABASE_URL": limited}
        )
        time.sleep(2)
        assert worker.poll() is None, "the worker exited instead of waiting"
        ledger.execute("ALTER ROLE pgqueue_limited CONNECTION LIMIT -1")
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
        assert "database unavailable at start, retrying" in stderr
        assert "Traceback" not in stderr
        assert _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 1
    finally:
        ledger.execute("DROP OWNED BY pgqueue_limited")
        ledger.execute("DROP ROLE pgqueue_limited")


def test_a_read_only_database_gets_backoff_not_a_reconnect_storm(
    settings: Settings, ledger: psycopg.Connection[Any], start_worker: Any
) -> None:
    name = ledger.info.dbname
    ledger.execute(
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(name)
        )
    )
    worker = start_worker("--sleep", "0.1")
    time.sleep(4)
    ledger.execute(
        sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(
            sql.Identifier(name)
        )
    )
    with Queue(settings) as queue:
        queue.dispatch(jobs.Record())
    _wait_for(lambda: _count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 1)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    retries = [line for line in stderr.splitlines() if "database unavailable" in line]
    # 50 ms doubling to a 5 s cap: about 7 tries in 4 s (the old loop made about 64).
    assert 2 <= len(retries) <= 12, retries
