"""Concurrency and rate limits enforced inside the claim, across real `pgqueue work` processes
(docs/limits.md). Handlers write their start and end to the ledger; overlap is measured there."""

from __future__ import annotations

import json
import signal
from typing import Any

import psycopg

from tests.acceptance.helpers import count, wait_for
from tests.cli_runner import run_pgqueue

APP = ("--app", "tests.acceptance.limited_jobs")
FAST = ("--queue", "limited", "--concurrency", "8", "--sleep", "0.1")


def _dispatch(
    conn: psycopg.Connection[Any],
    job_type: str,
    payloads: list[dict[str, Any]],
    queue: str = "limited",
) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO pgqueue.jobs (queue, job_type, payload) VALUES (%s, %s, %s)",
            [(queue, job_type, json.dumps(payload)) for payload in payloads],
        )


def _max_overlap(
    conn: psycopg.Connection[Any],
    key: str = "",
    *,
    end: str = "end",
    since: str = "-infinity",
    until: str = "infinity",
) -> int:
    """The most jobs running at one instant: at each start (from `since` to `until`), those
    started and not yet ended."""
    suffix = f":{key}" if key else ""
    row = conn.execute(
        """
        WITH spans AS (
            SELECT s.job_id, s.at AS started, coalesce(e.at, 'infinity') AS ended
            FROM ledger AS s
            LEFT JOIN ledger AS e ON e.job_id = s.job_id AND e.attempt = s.attempt
                AND e.event = %(end)s
            WHERE s.event = %(start)s
        )
        SELECT coalesce(max(n), 0) FROM (
            SELECT (SELECT count(*) FROM spans AS o
                    WHERE o.started <= p.started AND o.ended > p.started) AS n
            FROM spans AS p
            WHERE p.started BETWEEN %(since)s::timestamptz AND %(until)s::timestamptz
        ) AS at_each_start
        """,
        {
            "start": f"start{suffix}",
            "end": f"{end}{suffix}",
            "since": since,
            "until": until,
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_concurrency_limit_holds_across_three_workers(ledger: Any, start_worker: Any) -> None:
    _dispatch(ledger, "limits.TwoAtOnce", [{"seconds": 0.2}] * 12)
    workers = [start_worker(*APP, *FAST) for _ in range(3)]
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event = 'end'") == 12, 20)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
    assert _max_overlap(ledger) == 2
    # None was rescheduled or spent a try while it waited: each ran once, on its first attempt.
    assert count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start' AND attempt = 1") == 12


def test_a_limit_key_limits_each_value_on_its_own(ledger: Any, start_worker: Any) -> None:
    payloads = [{"partner": partner, "seconds": 0.3} for partner in (1, 2) for _ in range(6)]
    _dispatch(ledger, "limits.TwoPerPartner", payloads)
    workers = [start_worker(*APP, *FAST) for _ in range(3)]
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event LIKE 'end:%'") == 12)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
    assert _max_overlap(ledger, "1") == 2
    assert _max_overlap(ledger, "2") == 2
    # The two partners ran side by side: four at once in all at some instant.
    row = ledger.execute(
        "SELECT count(*) FROM ledger AS s WHERE s.event LIKE 'start:%' AND EXISTS ("
        " SELECT FROM ledger AS o WHERE o.event LIKE 'start:%' AND o.event <> s.event"
        " AND abs(extract(epoch FROM o.at - s.at)) < 0.15)"
    ).fetchone()
    assert row is not None and row[0] > 0


def test_held_back_jobs_do_not_hide_the_claimable_jobs_behind_them(
    ledger: Any, start_worker: Any
) -> None:
    _dispatch(ledger, "limits.TwoAtOnce", [{"seconds": 2}] * 20)
    _dispatch(ledger, "limits.Unlimited", [{"seconds": 0}] * 5)
    worker = start_worker(*APP, *FAST)
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event = 'end'") >= 5, 10)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)
    # The five unlimited jobs ran while the first two limited ones were still running.
    assert count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 7


def test_a_rate_limit_allows_at_most_n_starts_in_any_period_of_database_time(
    ledger: Any, start_worker: Any
) -> None:
    _dispatch(ledger, "limits.FivePerSecond", [{}] * 15)
    workers = [start_worker(*APP, *FAST) for _ in range(3)]
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event = 'claimed'") == 15)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
    busiest = count(
        ledger,
        "SELECT max((SELECT count(*) FROM ledger AS o WHERE o.at >= s.at"
        " AND o.at < s.at + interval '1 second')) FROM ledger AS s",
    )
    assert busiest == 5
    spread = ledger.execute("SELECT extract(epoch FROM max(at) - min(at)) FROM ledger").fetchone()
    assert spread is not None and spread[0] >= 2.0  # 15 starts at 5/s: three windows


def test_a_runtime_queue_limit_applies_to_the_next_claim_and_clear_lifts_it(
    ledger: Any, start_worker: Any, database_url: str
) -> None:
    env = {"PGQUEUE_DATABASE_URL": database_url}
    # Plain workers: no job type they import declares a limit.
    workers = [
        start_worker("--queue", "runtime", "--concurrency", "8", "--sleep", "0.1") for _ in range(2)
    ]
    wait_for(lambda: count(ledger, "SELECT count(*) FROM pgqueue.workers") == 2)
    limited = run_pgqueue("queues", "limit", "runtime", "--concurrency", "2", env=env)
    assert limited.exit_code == 0, limited.stderr
    _dispatch(ledger, "acceptance.Record", [{"seconds": 0.4}] * 12, queue="runtime")
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") >= 4)
    cleared_at = ledger.execute("SELECT clock_timestamp()::text").fetchone()
    assert cleared_at is not None
    cleared = run_pgqueue("queues", "limit", "runtime", "--clear", env=env)
    assert cleared.exit_code == 0, cleared.stderr
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event = 'finish'") == 12)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
    assert _max_overlap(ledger, end="finish", until=cleared_at[0]) == 2
    # Once cleared, the rest ran side by side.
    assert _max_overlap(ledger, end="finish") > 2


def test_a_killed_workers_slots_come_back_when_its_leases_are_rescued(
    ledger: Any, start_worker: Any
) -> None:
    fast_rescue = {"PGQUEUE_RESCUE_INTERVAL": "0.5"}
    _dispatch(ledger, "limits.TwoAtOnce", [{"seconds": 60}] * 2)
    victim = start_worker(*APP, *FAST, "--lease", "2", env=fast_rescue)
    wait_for(lambda: count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start'") == 2)
    victim.kill()
    victim.wait(timeout=10)
    survivor = start_worker(*APP, *FAST, "--lease", "2", env=fast_rescue)
    # The killed worker's leases held both slots; once rescued, both jobs start again.
    wait_for(
        lambda: (
            count(ledger, "SELECT count(*) FROM ledger WHERE event = 'start' AND attempt = 2") == 2
        ),
        15,
    )
    survivor.kill()  # its jobs sleep a minute; nothing is left to check
    survivor.wait(timeout=10)


def test_the_metrics_show_the_jobs_a_limit_holds_back(ledger: Any, start_worker: Any) -> None:
    from tests.acceptance.test_metrics import _free_port, _scrape

    _dispatch(ledger, "limits.TwoAtOnce", [{"seconds": 30}] * 10)
    port = _free_port()
    worker = start_worker(
        *APP, *FAST, "--metrics-port", str(port), "--lease", "0.6", "--grace", "0.1"
    )
    held = 'pgqueue_queue_held_by_limits{queue="limited"}'

    def held_back() -> float | None:
        try:
            return _scrape(port).get(held)
        except OSError:  # the metrics server is not up yet
            return None

    # Two run (the limit), the other eight wait: the heartbeat (lease / 3) refreshes the gauge.
    wait_for(lambda: held_back() == 8.0, 20)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)
