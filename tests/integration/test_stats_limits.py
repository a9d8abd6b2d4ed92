"""Jobs held back by limits in stats and `pgqueue queues`, against real PostgreSQL.

Limits are set up by hand, as the limited claim leaves them (docs/limits.md): `job_limits` rows as a
worker registers them, leased rows carrying `limit_key`, starts in `limit_starts`. No limited job
class is defined here: a worker in this process importing one would claim every queue the limited
way (tests/acceptance/limited_jobs.py runs them in real workers).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgqueue.stats import QueueStats, read_stats
from tests.cli_runner import run_pgqueue

MS = timedelta(milliseconds=1)


def _now(conn: psycopg.Connection[Any]) -> datetime:
    moment: datetime = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    return moment


def _ready(
    conn: psycopg.Connection[Any], queue: str, job_type: str, payload: str = "{}", n: int = 1
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, run_at)"
        " SELECT %s, %s, %s::jsonb, now() - interval '1 second' FROM generate_series(1, %s)",
        (queue, job_type, payload, n),
    )


def _leased(
    conn: psycopg.Connection[Any], queue: str, job_type: str, limit_key: str | None, n: int = 1
) -> None:
    """Leased rows as a claim leaves them: the limited claim writes limit_key, the plain one not."""
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload, run_at, lease_token,"
        " lease_expires_at, claimed_at, attempts, limit_key)"
        " SELECT %s, %s, '{}', now(), gen_random_uuid(), now() + interval '1 minute', now(), 1, %s"
        " FROM generate_series(1, %s)",
        (queue, job_type, limit_key, n),
    )


def _job_limits(
    conn: psycopg.Connection[Any],
    job_type: str,
    concurrency: int | None = None,
    rate: tuple[int, int] | None = None,
    limit_field: str | None = None,
) -> None:
    rate_limit, period = rate if rate is not None else (None, None)
    conn.execute(
        "INSERT INTO pgqueue.job_limits"
        " (job_type, concurrency, rate_limit, rate_period_seconds, limit_field)"
        " VALUES (%s, %s, %s, %s, %s)",
        (job_type, concurrency, rate_limit, period, limit_field),
    )


def _start(
    conn: psycopg.Connection[Any], kind: str, name: str, limit_key: str, at: datetime
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.limit_starts (kind, name, limit_key, started_at)"
        " VALUES (%s, %s, %s, %s)",
        (kind, name, limit_key, at),
    )


def _queue(conn: psycopg.Connection[Any], name: str, at: datetime | None = None) -> QueueStats:
    [found] = [q for q in read_stats(conn, at=at).queues if q.queue == name]
    return found


def test_nothing_limited_holds_nothing_back(conn: psycopg.Connection[Any]) -> None:
    _ready(conn, "emails", "tests.Plain", n=3)
    _leased(conn, "emails", "tests.Plain", None, n=2)
    emails = _queue(conn, "emails")
    assert (emails.ready, emails.held_by_limits, emails.at_limit) == (3, 0, False)


def test_a_queue_at_its_runtime_concurrency_holds_back_all_its_ready_jobs(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("INSERT INTO pgqueue.queues (name, concurrency) VALUES ('emails', 2)")
    _ready(conn, "emails", "tests.Plain", n=3)
    _leased(conn, "emails", "tests.Plain", None)
    one_free = _queue(conn, "emails")
    assert (one_free.held_by_limits, one_free.at_limit) == (2, False)
    _leased(conn, "emails", "tests.Other", None)  # any type counts against a queue's limit
    full = _queue(conn, "emails")
    assert (full.ready, full.held_by_limits, full.at_limit) == (3, 3, True)


def test_a_queue_at_its_runtime_rate_holds_back_starts_in_the_window_only(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.queues (name, rate_limit, rate_period_seconds) VALUES ('emails', 2, 60)"
    )
    _ready(conn, "emails", "tests.Plain", n=4)
    at = _now(conn)
    _start(conn, "queue", "emails", "", at - timedelta(seconds=60))  # just out of the window
    _start(conn, "queue", "emails", "", at - timedelta(seconds=60) + MS)
    assert (_queue(conn, "emails", at).held_by_limits, _queue(conn, "emails", at).at_limit) == (
        3,
        False,
    )
    _start(conn, "queue", "emails", "", at)
    emails = _queue(conn, "emails", at)
    assert (emails.held_by_limits, emails.at_limit) == (4, True)


def test_a_class_concurrency_reached_holds_back_that_key_only(
    conn: psycopg.Connection[Any],
) -> None:
    _job_limits(conn, "tests.Partner", concurrency=2, limit_field="partner")
    _leased(conn, "calls", "tests.Partner", "1", n=2)  # partner 1 is full
    _leased(conn, "calls", "tests.Partner", "2")  # partner 2 has a slot left
    _leased(conn, "other", "tests.Partner", None)  # claimed without limits: counts nothing
    _ready(conn, "calls", "tests.Partner", '{"partner": 1}', n=3)
    _ready(conn, "calls", "tests.Partner", '{"partner": 2}', n=3)
    _ready(conn, "calls", "tests.Plain", n=5)
    calls = _queue(conn, "calls")
    # All three of partner 1's, two of partner 2's (one may start), none of the plain jobs.
    assert (calls.ready, calls.held_by_limits, calls.at_limit) == (11, 5, False)


def test_a_class_limit_counts_leases_in_every_queue_and_a_missing_key_as_empty(
    conn: psycopg.Connection[Any],
) -> None:
    _job_limits(conn, "tests.Whole", concurrency=1)
    _leased(conn, "a", "tests.Whole", "")
    _ready(conn, "b", "tests.Whole", n=2)
    _job_limits(conn, "tests.Keyed", concurrency=1, limit_field="partner")
    _leased(conn, "a", "tests.Keyed", "")
    _ready(conn, "c", "tests.Keyed", '{"partner": null}')
    _ready(conn, "c", "tests.Keyed", '{"partner": 7}')
    assert _queue(conn, "b").held_by_limits == 2
    assert _queue(conn, "c").held_by_limits == 1


def test_a_class_rate_reached_holds_back_its_ready_jobs_until_the_window_passes(
    conn: psycopg.Connection[Any],
) -> None:
    _job_limits(conn, "tests.Rated", rate=(1, 60))
    _ready(conn, "calls", "tests.Rated", n=2)
    at = _now(conn)
    _start(conn, "job_type", "tests.Rated", "", at - timedelta(seconds=30))
    assert _queue(conn, "calls", at).held_by_limits == 2
    later = at + timedelta(seconds=30)
    assert _queue(conn, "calls", later).held_by_limits == 1  # one may start again


def test_the_stricter_of_a_queue_and_a_class_limit_counts(conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO pgqueue.queues (name, concurrency) VALUES ('calls', 5)")
    _job_limits(conn, "tests.Whole", concurrency=1)
    _leased(conn, "calls", "tests.Whole", "")
    _ready(conn, "calls", "tests.Whole", n=3)  # the class allows none of these
    _ready(conn, "calls", "tests.Plain", n=6)  # the queue allows four more jobs in all
    calls = _queue(conn, "calls")
    assert (calls.ready, calls.held_by_limits, calls.at_limit) == (9, 5, False)


def test_stats_and_queues_show_held_jobs_and_a_queue_at_its_limit(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    env = {"PGQUEUE_DATABASE_URL": database_url}
    conn.execute("INSERT INTO pgqueue.queues (name, concurrency) VALUES ('emails', 1)")
    _leased(conn, "emails", "tests.Plain", None)
    _ready(conn, "emails", "tests.Plain", n=2)
    _ready(conn, "other", "tests.Plain")

    as_json = run_pgqueue("stats", "--json", env=env)
    assert as_json.exit_code == 0, as_json.stderr
    by_name = {q["queue"]: q for q in json.loads(as_json.stdout)["queues"]}
    assert (by_name["emails"]["held_by_limits"], by_name["emails"]["at_limit"]) == (2, True)
    assert (by_name["other"]["held_by_limits"], by_name["other"]["at_limit"]) == (0, False)

    table = run_pgqueue("stats", env=env)
    assert table.exit_code == 0, table.stderr
    header, *rows = table.stdout.splitlines()[1:4]
    assert header.split()[:3] == ["queue", "ready", "held"]  # fits 80 columns with the held column
    assert {row.split()[0]: row.split()[1:3] for row in rows} == {
        "emails": ["2", "2"],
        "other": ["1", "0"],
    }
    assert "at their runtime limit (pgqueue queues): emails" in table.stdout

    listing = run_pgqueue("queues", env=env)
    assert listing.exit_code == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[3:5] == ["ready", "held"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["emails"].split()[1:7] == ["at", "limit", "-", "2", "2", "1"]
    assert "concurrency 1" in rows["emails"]
    assert rows["other"].split()[1:5] == ["running", "-", "1", "0"]
    documents = run_pgqueue("queues", "--json", env=env)
    by_name = {doc["queue"]: doc for doc in map(json.loads, documents.stdout.splitlines())}
    assert (by_name["emails"]["held_by_limits"], by_name["emails"]["at_limit"]) == (2, True)
