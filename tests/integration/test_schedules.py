"""Periodic jobs on real PostgreSQL: one job per fire time however many workers race, daylight-saving
days, catch-up, pause/resume, and `pgqueue schedules`. The clock is the fire plan's `now`
parameter, standing in for the database's now(), so hours of schedule pass in a second."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgqueue
from pgqueue import Job
from pgqueue import schedules as schedules_module
from pgqueue.schedules import Check, Schedule, fire_plan, register_plan
from pgqueue.sql import run_plan
from tests.cli_runner import one_error, run_pgqueue

SCHEMA = "pgqueue"
MAX_PAYLOAD = 65536
BASE = datetime(2030, 1, 1, tzinfo=UTC)


class SyncShop(Job):
    job_name = "tests.integration.schedules.SyncShop"
    queue = "shops"
    max_tries = 5

    shop_id: int

    def handle(self) -> None:
        pass


@pytest.fixture(autouse=True)
def isolated_schedules() -> Iterator[None]:
    """Schedules a test defines are gone afterwards, so no other test's worker registers them."""
    saved = dict(schedules_module._registry)
    yield
    schedules_module._registry.clear()
    schedules_module._registry.update(saved)


def check(conn: psycopg.Connection[Any], entries: list[Schedule], now: datetime) -> Check:
    """One check of a worker's schedules, at `now`."""
    return run_plan(fire_plan({e.name: e for e in entries}, SCHEMA, MAX_PAYLOAD, now), conn)


def register(conn: psycopg.Connection[Any], entries: list[Schedule]) -> None:
    run_plan(register_plan({e.name: e for e in entries}, SCHEMA), conn)


def fire_times(conn: psycopg.Connection[Any]) -> list[datetime]:
    rows = conn.execute("SELECT scheduled_for FROM pgqueue.jobs ORDER BY scheduled_for, id")
    return [row[0] for row in rows.fetchall()]


def test_three_workers_racing_enqueue_exactly_one_job_per_fire_time(database_url: str) -> None:
    entry = pgqueue.schedule("* * * * *", SyncShop(shop_id=3), name="race")
    rounds = 6
    barrier = threading.Barrier(3)
    fired: list[list[int]] = [[], [], []]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as own:
                barrier.wait()
                register(own, [entry])
                for minute in range(rounds):
                    barrier.wait()  # all three check at the same instant of the same clock
                    result = check(own, [entry], BASE + timedelta(minutes=minute, seconds=5))
                    fired[index].extend(f.job_id for f in result.fired)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The first check sets the first fire time (00:01); each later one fires once.
        assert fire_times(conn) == [BASE + timedelta(minutes=m) for m in range(1, rounds)]
        assert sorted(job_id for ids in fired for job_id in ids) == [
            row[0] for row in conn.execute("SELECT id FROM pgqueue.jobs ORDER BY id").fetchall()
        ]
        last, upcoming = conn.execute(
            "SELECT last_fire_at, next_fire_at FROM pgqueue.schedules WHERE name = 'race'"
        ).fetchone() or (None, None)
    assert (last, upcoming) == (BASE + timedelta(minutes=5), BASE + timedelta(minutes=6))


def test_a_fired_job_is_an_ordinary_job_carrying_its_fire_time(
    conn: psycopg.Connection[Any],
) -> None:
    entry = pgqueue.schedule("*/15 * * * *", SyncShop(shop_id=3), name="sync-shop-3")
    check(conn, [entry], BASE)
    result = check(conn, [entry], BASE + timedelta(minutes=15, seconds=1))
    assert [(f.name, f.fire_at) for f in result.fired] == [
        ("sync-shop-3", BASE + timedelta(minutes=15))
    ]
    row = conn.execute(
        "SELECT id, queue, job_type, payload, max_tries, attempts, scheduled_for,"
        " run_at <= now() FROM pgqueue.jobs"
    ).fetchone()
    assert row == (
        result.fired[0].job_id,
        "shops",
        SyncShop.job_name,
        {"shop_id": 3},
        5,
        0,
        BASE + timedelta(minutes=15),
        True,  # ready at once: the fire time is a label, not a delay
    )


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # Spring forward, 2026-03-29: 02:30 does not exist; it runs once, at 03:00 CEST.
        (
            datetime(2026, 3, 29, tzinfo=UTC),
            [
                datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
                datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
                datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
            ],
        ),
        # Fall back, 2026-10-25: 02:30 happens twice; it runs once, at the first (CEST).
        (
            datetime(2026, 10, 25, tzinfo=UTC),
            [
                datetime(2026, 10, 24, 0, 30, tzinfo=UTC),
                datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
            ],
        ),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_daylight_saving_days_neither_skip_nor_double_a_run(
    conn: psycopg.Connection[Any], day: datetime, expected: list[datetime]
) -> None:
    class Nightly(Job):
        job_name = "tests.integration.schedules.Nightly"
        queue = "reports"
        schedule = "30 2 * * *"
        schedule_timezone = "Europe/Berlin"
        day: str = ""

        def handle(self) -> None:
            pass

    entry = schedules_module.defined_schedules()[Nightly.job_name]
    # A worker checking every 10 minutes from noon the day before to noon the day after.
    moment = day - timedelta(hours=36)
    while moment <= day + timedelta(hours=36):
        check(conn, [entry], moment)
        moment += timedelta(minutes=10)
    assert fire_times(conn) == expected
    payloads = conn.execute("SELECT DISTINCT payload FROM pgqueue.jobs").fetchall()
    assert payloads == [({"day": ""},)]  # run from the field defaults


def test_missed_fire_times_give_one_catch_up_run_for_the_latest(
    conn: psycopg.Connection[Any],
) -> None:
    entry = pgqueue.schedule("*/15 * * * *", SyncShop(shop_id=1), name="catch-up")
    check(conn, [entry], BASE + timedelta(minutes=5))  # next fire: 00:15
    # No worker ran for five hours: twenty fire times passed.
    later = BASE + timedelta(hours=5, minutes=7)
    assert [f.fire_at for f in check(conn, [entry], later).fired] == [BASE + timedelta(hours=5)]
    assert check(conn, [entry], later).fired == []
    assert check(conn, [entry], later + timedelta(minutes=9)).fired != []
    assert fire_times(conn) == [
        BASE + timedelta(hours=5),
        BASE + timedelta(hours=5, minutes=15),
    ]


def test_a_new_schedule_does_not_fire_for_times_before_it_was_registered(
    conn: psycopg.Connection[Any],
) -> None:
    entry = pgqueue.schedule("* * * * *", SyncShop(shop_id=1), name="fresh")
    first = check(conn, [entry], BASE + timedelta(seconds=30))
    assert first.fired == []
    assert 29 <= first.wait_seconds <= 30  # it sleeps until the next fire time
    assert fire_times(conn) == []


def test_a_fire_time_passing_while_paused_is_skipped(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    entry = pgqueue.schedule("0 * * * *", SyncShop(shop_id=1), name="hourly-sync")
    env = {"PGQUEUE_DATABASE_URL": database_url}
    check(conn, [entry], BASE + timedelta(minutes=10))  # next fire: 01:00
    paused = run_pgqueue("schedules", "pause", "hourly-sync", env=env)
    assert (paused.exit_code, paused.stdout) == (0, "paused schedule hourly-sync\n")
    skipped = check(conn, [entry], BASE + timedelta(hours=1, minutes=1))
    assert (skipped.fired, skipped.skipped) == ([], ["hourly-sync"])
    assert run_pgqueue("schedules", "resume", "hourly-sync", env=env).exit_code == 0
    # Resumed at 01:30: the 01:00 that passed while paused is not caught up; 02:00 runs.
    assert check(conn, [entry], BASE + timedelta(hours=1, minutes=30)).fired == []
    assert [
        f.fire_at for f in check(conn, [entry], BASE + timedelta(hours=2, seconds=1)).fired
    ] == [BASE + timedelta(hours=2)]
    assert fire_times(conn) == [BASE + timedelta(hours=2)]


def test_resumed_after_a_pause_with_no_worker_running_nothing_is_caught_up(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    entry = pgqueue.schedule("0 * * * *", SyncShop(shop_id=1), name="quiet")
    env = {"PGQUEUE_DATABASE_URL": database_url}
    check(conn, [entry], BASE)
    assert run_pgqueue("schedules", "pause", "quiet", env=env).exit_code == 0
    assert run_pgqueue("schedules", "resume", "quiet", env=env).exit_code == 0
    # Three fire times passed while it was paused and no worker checked it.
    assert check(conn, [entry], BASE + timedelta(hours=3, minutes=5)).fired == []
    assert fire_times(conn) == []


def test_a_changed_expression_is_computed_afresh_and_the_old_one_stops_firing(
    conn: psycopg.Connection[Any],
) -> None:
    old = pgqueue.schedule("*/15 * * * *", SyncShop(shop_id=1), name="changing")
    check(conn, [old], BASE)  # next fire: 00:15
    new = pgqueue.schedule("*/10 * * * *", SyncShop(shop_id=1), name="changing")
    register(conn, [new])  # a worker of the new version starts
    # A worker of the old version still running changes nothing.
    assert check(conn, [old], BASE + timedelta(minutes=16)).fired == []
    assert check(conn, [new], BASE + timedelta(minutes=16)).fired == []  # sets 00:20
    assert [f.fire_at for f in check(conn, [new], BASE + timedelta(minutes=21)).fired] == [
        BASE + timedelta(minutes=20)
    ]


def test_a_forgotten_schedule_whose_worker_still_runs_is_registered_again(
    conn: psycopg.Connection[Any],
) -> None:
    entry = pgqueue.schedule("@hourly", SyncShop(shop_id=1), name="back")
    check(conn, [entry], BASE)
    conn.execute("DELETE FROM pgqueue.schedules")
    check(conn, [entry], BASE + timedelta(minutes=1))
    assert conn.execute("SELECT name FROM pgqueue.schedules").fetchall() == [("back",)]


def test_pgqueue_schedules_lists_each_schedule(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    nightly = pgqueue.schedule(
        "17 3 * * *", SyncShop(shop_id=1), name="nightly", timezone="Europe/Berlin"
    )
    sync = pgqueue.schedule("*/15 * * * *", SyncShop(shop_id=2), name="sync-shop-2")
    check(conn, [nightly, sync], BASE)
    check(conn, [nightly, sync], BASE + timedelta(minutes=15, seconds=1))
    conn.execute("UPDATE pgqueue.schedules SET paused = true WHERE name = 'nightly'")
    env = {"PGQUEUE_DATABASE_URL": database_url}

    listed = run_pgqueue("schedules", env=env)
    assert listed.exit_code == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split() == [
        "name", "expression", "timezone", "last", "fire", "next", "fire", "paused", "defined", "by"
    ]  # fmt: skip
    assert lines[0].split() == [
        "nightly", "17", "3", "*", "*", "*", "Europe/Berlin", "-", "2030-01-01", "03:17+01:00",
        "yes", __name__,
    ]  # fmt: skip
    assert lines[1].split() == [
        "sync-shop-2", "*/15", "*", "*", "*", "*", "UTC", "2030-01-01", "00:15+00:00",
        "2030-01-01", "00:30+00:00", "no", __name__,
    ]  # fmt: skip
    assert run_pgqueue("schedules", "list", env=env).stdout == listed.stdout

    as_json = run_pgqueue("schedules", "--json", env=env)
    documents = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert documents[1] == {
        "name": "sync-shop-2",
        "expression": "*/15 * * * *",
        "timezone": "UTC",
        "job_type": SyncShop.job_name,
        "queue": "shops",
        "defined_by": __name__,
        "paused": False,
        "last_fire_at": "2030-01-01T00:15:00+00:00",
        "next_fire_at": "2030-01-01T00:30:00+00:00",
        "seen_at": documents[1]["seen_at"],
        "defined": True,
    }


def test_a_schedule_no_running_worker_defines_shows_as_such_and_can_be_forgotten(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    entry = pgqueue.schedule("@daily", SyncShop(shop_id=1), name="gone")
    check(conn, [entry], BASE)
    env = {"PGQUEUE_DATABASE_URL": database_url}
    refused = run_pgqueue("schedules", "forget", "gone", env=env)
    assert "still defined by a running worker" in one_error(refused, 1)

    # Its worker stopped, without this version of the app, three minutes ago.
    conn.execute("UPDATE pgqueue.schedules SET seen_at = now() - interval '3 minutes'")
    listed = run_pgqueue("schedules", env=env)
    assert "(no running worker defines it)" in listed.stdout.splitlines()[1]
    assert json.loads(run_pgqueue("schedules", "--json", env=env).stdout)["defined"] is False

    forgot = run_pgqueue("schedules", "forget", "gone", env=env)
    assert (forgot.exit_code, forgot.stdout) == (0, "forgot schedule gone\n")
    assert run_pgqueue("schedules", env=env).stdout.startswith("no schedules")


@pytest.mark.parametrize("verb", ["pause", "resume", "forget"])
def test_an_unknown_schedule_name_is_one_error_line(database_url: str, verb: str) -> None:
    run = run_pgqueue("schedules", verb, "nope", env={"PGQUEUE_DATABASE_URL": database_url})
    assert "no schedule named 'nope'" in one_error(run, 1)
