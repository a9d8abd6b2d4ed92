"""retry_delay: fixed, per-attempt and exponential (jittered) backoff."""

from __future__ import annotations

import pytest

from pgqueue.job import retry_delay

SAMPLES = 500


def test_fixed_number_is_the_delay_for_every_attempt() -> None:
    assert [retry_delay(30, attempt) for attempt in (1, 2, 10)] == [30.0, 30.0, 30.0]


def test_fixed_delay_is_a_float() -> None:
    assert isinstance(retry_delay(30, 1), float)


def test_list_gives_the_delay_per_attempt() -> None:
    assert [retry_delay([5, 60, 600], attempt) for attempt in (1, 2, 3)] == [5.0, 60.0, 600.0]


def test_list_repeats_its_last_delay_after_running_out() -> None:
    assert [retry_delay([5, 60], attempt) for attempt in (3, 4, 50)] == [60.0, 60.0, 60.0]


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 12])
def test_none_draws_from_upper_half_of_exponential_ceiling(attempt: int) -> None:
    ceiling = min(3600.0, 2.0 ** (attempt - 1))
    delays = [retry_delay(None, attempt) for _ in range(SAMPLES)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)


@pytest.mark.parametrize("attempt", [13, 20, 100, 1000])
def test_none_is_capped_at_an_hour_for_large_attempts(attempt: int) -> None:
    delays = [retry_delay(None, attempt) for _ in range(SAMPLES)]
    assert all(1800.0 <= delay <= 3600.0 for delay in delays)


@pytest.mark.parametrize("attempt", [1025, 10_000])
def test_none_stays_capped_past_float_range_of_the_exponent(attempt: int) -> None:
    # A job with a very large max_tries ("retry for days") reaches these attempt numbers.
    assert 1800.0 <= retry_delay(None, attempt) <= 3600.0


def test_none_is_jittered() -> None:
    delays = {retry_delay(None, 5) for _ in range(SAMPLES)}
    assert len(delays) > 1
