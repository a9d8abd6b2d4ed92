"""Periodic jobs without a database: fire times (daylight-saving changes included), catch-up, and
the definition checks that run when a module is imported."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import pgqueue
from pgqueue import Job
from pgqueue import schedules as schedules_module
from pgqueue.errors import JobDefinitionError, ScheduleDefinitionError
from pgqueue.schedules import defined_schedules, parse_cron


@pytest.fixture(autouse=True)
def isolated_schedules() -> Iterator[None]:
    """Schedules a test defines are gone afterwards: in-process workers of other tests would
    otherwise register them."""
    saved = dict(schedules_module._registry)
    yield
    schedules_module._registry.clear()
    schedules_module._registry.update(saved)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def fire_times(expression: str, timezone: str, start: datetime, end: datetime) -> list[datetime]:
    cron = parse_cron(expression, timezone, "test")
    times, moment = [], start
    while (moment := cron.next_after(moment)) <= end:
        times.append(moment)
    return times


class TestDaylightSaving:
    """Europe/Berlin "30 2 * * *": 02:30 local does not exist on 2026-03-29 and happens twice on
    2026-10-25; each day still has exactly one run."""

    def test_spring_forward_day_runs_once_just_after_the_gap(self) -> None:
        times = fire_times(
            "30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), utc(2026, 3, 31, 12)
        )
        # 02:30 CET = 01:30 UTC; on the 29th 03:00 CEST = 01:00 UTC; then 02:30 CEST = 00:30 UTC.
        assert times == [
            utc(2026, 3, 28, 1, 30),
            utc(2026, 3, 29, 1, 0),
            utc(2026, 3, 30, 0, 30),
            utc(2026, 3, 31, 0, 30),
        ]

    def test_fall_back_day_runs_once_at_the_first_0230(self) -> None:
        times = fire_times(
            "30 2 * * *", "Europe/Berlin", utc(2026, 10, 23, 12), utc(2026, 10, 27, 12)
        )
        assert times == [
            utc(2026, 10, 24, 0, 30),
            utc(2026, 10, 25, 0, 30),  # 02:30 CEST; the 02:30 CET an hour later is not a run
            utc(2026, 10, 26, 1, 30),
            utc(2026, 10, 27, 1, 30),
        ]

    def test_asked_during_the_repeated_hour_the_next_run_is_tomorrow(self) -> None:
        # 01:20 UTC is 02:20 CET, the second pass of 02:xx: today's 02:30 already ran at 00:30.
        cron = parse_cron("30 2 * * *", "Europe/Berlin", "test")
        assert cron.next_after(utc(2026, 10, 25, 1, 20)) == utc(2026, 10, 26, 1, 30)

    def test_hourly_runs_every_real_hour_across_fall_back(self) -> None:
        times = fire_times(
            "0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 22), utc(2026, 10, 25, 4)
        )
        assert times == [utc(2026, 10, 24, 23) + timedelta(hours=h) for h in range(6)]

    def test_hourly_runs_every_real_hour_across_spring_forward(self) -> None:
        times = fire_times("0 * * * *", "Europe/Berlin", utc(2026, 3, 28, 22), utc(2026, 3, 29, 4))
        assert times == [utc(2026, 3, 28, 23) + timedelta(hours=h) for h in range(6)]

    @pytest.mark.parametrize("expression", ["30 2 * * *", "0 * * * *", "*/20 1-3 * * *"])
    @pytest.mark.parametrize("day", [utc(2026, 3, 28, 20), utc(2026, 10, 24, 20)])
    def test_latest_at_or_before_agrees_with_walking_forward(
        self, expression: str, day: datetime
    ) -> None:
        cron = parse_cron(expression, "Europe/Berlin", "test")
        forward = fire_times(
            expression, "Europe/Berlin", day - timedelta(days=2), day + timedelta(1)
        )
        for minutes in range(0, 24 * 60, 7):
            moment = day + timedelta(minutes=minutes, seconds=13)
            expected = max(t for t in forward if t <= moment)
            assert cron.latest_at_or_before(moment) == expected


class TestFireTimes:
    def test_next_after_is_strictly_after(self) -> None:
        cron = parse_cron("*/15 * * * *", "UTC", "test")
        assert cron.next_after(utc(2026, 1, 1, 12, 0)) == utc(2026, 1, 1, 12, 15)
        assert cron.next_after(utc(2026, 1, 1, 11, 59, 59)) == utc(2026, 1, 1, 12, 0)

    def test_latest_at_or_before_includes_the_moment_itself(self) -> None:
        cron = parse_cron("*/15 * * * *", "UTC", "test")
        assert cron.latest_at_or_before(utc(2026, 1, 1, 12, 0)) == utc(2026, 1, 1, 12, 0)
        assert cron.latest_at_or_before(utc(2026, 1, 1, 12, 14, 59)) == utc(2026, 1, 1, 12, 0)

    def test_after_a_long_outage_the_catch_up_is_the_latest_missed_time(self) -> None:
        cron = parse_cron("* * * * *", "UTC", "test")
        week_later = utc(2026, 1, 8, 9, 41, 30)
        assert cron.latest_at_or_before(week_later) == utc(2026, 1, 8, 9, 41)

    @pytest.mark.parametrize(
        ("alias", "after", "expected"),
        [
            ("@hourly", utc(2026, 1, 1, 12, 30), utc(2026, 1, 1, 13)),
            ("@daily", utc(2026, 1, 1, 12, 30), utc(2026, 1, 2)),
            ("@weekly", utc(2026, 1, 1, 12, 30), utc(2026, 1, 4)),  # Sunday
            ("@monthly", utc(2026, 1, 1, 12, 30), utc(2026, 2, 1)),
        ],
    )
    def test_aliases(self, alias: str, after: datetime, expected: datetime) -> None:
        assert parse_cron(alias, "UTC", "test").next_after(after) == expected

    def test_timezone_moves_the_fire_time(self) -> None:
        cron = parse_cron("17 3 * * *", "America/New_York", "test")
        assert cron.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 8, 17)


class TestDefinition:
    @pytest.mark.parametrize(
        ("expression", "problem"),
        [
            ("61 * * * *", "bad minute"),
            ("* * * *", "needs 5 fields"),
            ("0 * * * * *", "needs 5 fields"),  # seconds: cron has 5 fields
            ("@yearly", "needs 5 fields"),
            ("0 0 31 2 *", "invalid cron expression"),
            ("", "needs 5 fields"),
        ],
    )
    def test_invalid_expression_names_the_schedule(self, expression: str, problem: str) -> None:
        with pytest.raises(ScheduleDefinitionError, match=r"schedule 'tests\.Bad'") as caught:

            class Bad(Job):
                job_name = "tests.Bad"
                schedule = expression

                def handle(self) -> None:
                    pass

        assert problem in str(caught.value)
        assert isinstance(caught.value, ValueError)

    def test_unknown_timezone_names_the_schedule(self) -> None:
        with pytest.raises(ScheduleDefinitionError, match=r"schedule 'sync-3'.*'Mars/Base'"):
            pgqueue.schedule("@daily", Payload(shop_id=3), name="sync-3", timezone="Mars/Base")

    def test_class_with_a_required_field_is_refused(self) -> None:
        with pytest.raises(ScheduleDefinitionError, match="field\\(s\\) day have none"):

            class Report(Job):
                job_name = "tests.Report"
                schedule = "@daily"
                day: str

                def handle(self) -> None:
                    pass

    def test_class_schedule_is_named_by_job_name(self) -> None:
        class Nightly(Job):
            job_name = "reports.nightly"
            queue = "reports"
            schedule = "17 3 * * *"
            schedule_timezone = "Europe/Berlin"
            day: str = ""

            def handle(self) -> None:
                pass

        entry = defined_schedules()["reports.nightly"]
        assert (entry.cron.expression, entry.cron.timezone) == ("17 3 * * *", "Europe/Berlin")
        assert entry.job_class is Nightly
        assert entry.defined_by == __name__
        assert entry.payload(1000) == '{"day":""}'

    def test_parameterised_schedule_keeps_a_copy_of_its_job(self) -> None:
        job = Payload(shop_id=3)
        entry = pgqueue.schedule("*/15 * * * *", job, name="sync-shop-3")
        job.shop_id = 4
        assert entry.payload(1000) == '{"shop_id":3}'
        assert defined_schedules()["sync-shop-3"].defined_by == __name__

    def test_schedule_is_a_reserved_name_for_payload_fields(self) -> None:
        with pytest.raises(JobDefinitionError, match="reserved"):

            class Clash(Job):
                schedule_timezone: str

                def handle(self) -> None:
                    pass

    def test_a_name_used_by_a_class_schedule_is_refused_for_another(self) -> None:
        class Hourly(Job):
            job_name = "tests.hourly"
            schedule = "@hourly"

            def handle(self) -> None:
                pass

        with pytest.raises(ScheduleDefinitionError, match="defined twice"):
            pgqueue.schedule("@daily", Payload(shop_id=1), name="tests.hourly")

    def test_a_job_that_cannot_be_enqueued_is_refused(self) -> None:
        with pytest.raises(ScheduleDefinitionError, match="NaN"):
            pgqueue.schedule("@daily", Floaty(value=float("nan")), name="nan")

    @pytest.mark.parametrize("name", ["", " ", "a\nb", 3])
    def test_invalid_names_are_refused(self, name: object) -> None:
        with pytest.raises(ScheduleDefinitionError, match="name"):
            pgqueue.schedule("@daily", Payload(shop_id=1), name=name)  # type: ignore[arg-type]


class Payload(Job):
    job_name = "tests.unit.schedules.Payload"
    shop_id: int

    def handle(self) -> None:
        pass


class Floaty(Job):
    job_name = "tests.unit.schedules.Floaty"
    value: float

    def handle(self) -> None:
        pass
