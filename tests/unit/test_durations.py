"""Durations as `--since`, `--older-than` and `PGQUEUE_RETENTION` take them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pgqueue.settings import Settings, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("1.5h", 5400.0),
        (" 30D ", 2592000.0),
    ],
)
def test_parse_duration_reads_seconds_and_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "-1h", "30 days", "1h30m", "1y", "inf", "nan"])
def test_parse_duration_refuses_other_forms_naming_the_accepted_ones(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration: use seconds or a number with a unit"):
        parse_duration(text)


def test_retention_defaults_to_thirty_days() -> None:
    assert Settings().retention == 30 * 86400


@pytest.mark.parametrize(("value", "seconds"), [("7d", 604800.0), ("3600", 3600.0)])
def test_retention_reads_a_duration_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: float
) -> None:
    monkeypatch.setenv("PGQUEUE_RETENTION", value)
    assert Settings().retention == seconds


def test_a_bad_retention_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_RETENTION", "forever")
    with pytest.raises(ValidationError, match="PGQUEUE_RETENTION: 'forever' is not a duration"):
        Settings()
