"""Completion rates from workers' counters (`Stats.since`, `RateWindow`), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgqueue.stats import QueueStats, RateWindow, Stats, WorkerCounter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _stats(seconds: float, workers: dict[str, WorkerCounter], *queues: str) -> Stats:
    return Stats(
        taken_at=T0 + timedelta(seconds=seconds),
        queues=tuple(QueueStats(q, 0, 0, 0, 0, 0, None) for q in queues),
        workers=workers,
    )


def _rates(stats: Stats) -> dict[str, float | None]:
    return {q.queue: q.completed_per_minute for q in stats.queues}


def test_rate_is_counter_growth_per_minute_of_workers_serving_one_queue() -> None:
    before = _stats(0, {"w": WorkerCounter(("a",), 10)}, "a", "b")
    after = _stats(30, {"w": WorkerCounter(("a",), 40)}, "a", "b").since(before)
    assert _rates(after) == {"a": pytest.approx(60.0), "b": 0.0}
    assert after.completed_per_minute == pytest.approx(60.0)


def test_a_worker_that_registered_between_reads_counts_in_full() -> None:
    before = _stats(0, {}, "a")
    after = _stats(60, {"new": WorkerCounter(("a",), 25)}, "a").since(before)
    assert _rates(after) == {"a": pytest.approx(25.0)}


def test_a_busy_worker_serving_several_queues_makes_their_rates_unknown() -> None:
    workers_before = {"multi": WorkerCounter(("a", "b"), 0), "solo": WorkerCounter(("c",), 0)}
    workers_after = {"multi": WorkerCounter(("a", "b"), 6), "solo": WorkerCounter(("c",), 3)}
    before = _stats(0, workers_before, "a", "b", "c")
    after = _stats(60, workers_after, "a", "b", "c").since(before)
    assert _rates(after) == {"a": None, "b": None, "c": pytest.approx(3.0)}
    assert after.completed_per_minute == pytest.approx(9.0)


def test_an_idle_worker_serving_several_queues_leaves_their_rates_known() -> None:
    workers = {"multi": WorkerCounter(("a", "b"), 5)}
    after = _stats(60, workers, "a", "b").since(_stats(0, workers, "a", "b"))
    assert _rates(after) == {"a": 0.0, "b": 0.0}


def test_since_a_later_or_equal_read_changes_nothing() -> None:
    stats = _stats(10, {}, "a")
    assert stats.since(_stats(10, {}, "a")) is stats


def test_rate_window_reports_nothing_on_the_first_read() -> None:
    window = RateWindow(60)
    first = window.add(_stats(0, {}, "a"))
    assert first.window_seconds is None
    assert _rates(first) == {"a": None}


def test_rate_window_measures_from_the_newest_read_at_least_a_window_old() -> None:
    window = RateWindow(60)
    for second in range(0, 100, 10):
        latest = window.add(_stats(second, {"w": WorkerCounter(("a",), second)}, "a"))
    # Reads at 0..90 s: the newest one at least 60 s before 90 s is the one at 30 s.
    assert latest.window_seconds == pytest.approx(60.0)
    assert _rates(latest) == {"a": pytest.approx(60.0)}


def test_rate_window_uses_the_first_read_until_reads_span_a_window() -> None:
    window = RateWindow(60)
    window.add(_stats(0, {}, "a"))
    latest = window.add(_stats(5, {}, "a"))
    assert latest.window_seconds == pytest.approx(5.0)


def test_to_json_gives_nulls_for_unknowns() -> None:
    document = _stats(0, {}, "a").to_json()
    assert document["completed_per_minute"] is None
    assert document["queues"][0]["oldest_wait_seconds"] is None
    assert document["taken_at"] == "2026-01-01T00:00:00+00:00"
