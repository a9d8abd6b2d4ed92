"""How many jobs a worker claims ahead of its slots (pgqueue.worker.Prefetch), without a database."""

from __future__ import annotations

from pgqueue.worker import PREFETCH_CAP_PER_SLOT, PREFETCH_MIN_CAP, Prefetch


def test_a_new_worker_claims_only_for_its_slots() -> None:
    prefetch = Prefetch(concurrency=10)
    assert prefetch.size == 0
    assert prefetch.capacity == 10


def test_slow_jobs_get_no_buffer_ahead() -> None:
    prefetch = Prefetch(concurrency=50)
    for _ in range(5):  # 50 slots, jobs of 10 s: 5 starts a second, claims of 2 ms
        prefetch.observe(started=5, seconds=1.0, round_trip=0.002, starved=False)
    assert prefetch.size == 0  # 2 x 5/s x 2 ms rounds to nothing


def test_fast_jobs_buffer_twice_what_the_slots_start_during_a_claim() -> None:
    prefetch = Prefetch(concurrency=50)
    for _ in range(10):  # 20,000 starts a second, claims of 4 ms
        prefetch.observe(started=200, seconds=0.01, round_trip=0.004, starved=False)
    assert prefetch.size == 160  # 2 x 20,000/s x 4 ms
    assert prefetch.capacity == 210
    assert prefetch.threshold == 105


def test_slots_that_ran_dry_double_the_buffer_from_at_least_the_concurrency() -> None:
    prefetch = Prefetch(concurrency=50)
    prefetch.observe(started=0, seconds=0.0, round_trip=0.004, starved=True)
    assert prefetch.size == 50
    prefetch.observe(started=0, seconds=0.0, round_trip=0.004, starved=True)
    assert prefetch.size == 100


def test_the_buffer_is_capped() -> None:
    small = Prefetch(concurrency=1)
    big = Prefetch(concurrency=100)
    for prefetch in (small, big):
        for _ in range(20):
            prefetch.observe(started=10_000, seconds=0.1, round_trip=0.05, starved=True)
    assert small.size == PREFETCH_MIN_CAP
    assert big.size == PREFETCH_CAP_PER_SLOT * 100


def test_the_buffer_shrinks_when_jobs_slow_down() -> None:
    prefetch = Prefetch(concurrency=50)
    for _ in range(10):
        prefetch.observe(started=200, seconds=0.01, round_trip=0.004, starved=False)
    for _ in range(20):
        prefetch.observe(started=1, seconds=1.0, round_trip=0.004, starved=False)
    assert prefetch.size == 0
