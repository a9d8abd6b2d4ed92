"""Doctor's formatting, without a database."""

from __future__ import annotations

import pytest

from pgqueue.doctor import Check, Verdict, format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (192, "3m 12s"), (7200, "2h"), (7500, "2h 05m")],
)
def test_durations_read_as_people_write_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_check_prints_as_an_aligned_verdict_line() -> None:
    line = str(Check("workers", Verdict.WARN, "no worker"))
    assert line == "WARN  workers             no worker"
