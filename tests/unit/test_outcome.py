"""Outcome values and error text that PostgreSQL and a log line always accept (no database)."""

from __future__ import annotations

import pickle

import pytest

import pgqueue
import pgqueue.blocking
import pgqueue.errors
from pgqueue.errors import InvalidSnoozeError
from pgqueue.job import MAX_DURATION_SECONDS, Job
from pgqueue.outcome import (
    MAX_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    Snooze,
    Snoozed,
    after_error,
    after_failure,
    class_name,
    clean_text,
    report_error,
)
from pgqueue.settings import Settings
from pgqueue.worker import Backoff


class Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for you")


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_nul_and_lone_surrogates_become_visible_escapes() -> None:
    text = clean_text("a\x00b\udc80c", 100)
    assert text == "a\\x00b\\udc80c"
    text.encode("utf-8")  # encodable: PostgreSQL accepts it


def test_a_message_is_capped_and_says_how_much_was_cut() -> None:
    text = clean_text("x" * (MAX_MESSAGE_CHARS + 500), MAX_MESSAGE_CHARS)
    assert text.startswith("x" * MAX_MESSAGE_CHARS)
    assert text.endswith("... [500 characters cut]")


def test_a_traceback_keeps_its_start_and_its_end() -> None:
    text = clean_text(
        "S" + "m" * (2 * MAX_TRACEBACK_CHARS) + "E", MAX_TRACEBACK_CHARS, keep_end=True
    )
    assert text.startswith("S") and text.endswith("E")
    assert len(text) <= MAX_TRACEBACK_CHARS + 64
    assert f"[{MAX_TRACEBACK_CHARS + 2} characters cut]" in text


def test_text_under_the_limit_is_unchanged() -> None:
    assert clean_text("plain", 10) == "plain"


def test_an_exception_whose_str_raises_is_described_not_raised() -> None:
    report = report_error(_raised(Unprintable()))
    assert report.class_name == f"{__name__}.Unprintable"
    assert report.message == "<str() of this exception raised ValueError>"
    assert "Traceback" in report.traceback


def test_passwords_are_masked_before_the_cut() -> None:
    settings = Settings(database_url="postgresql://app:hunter2-pw@db/app")
    error = _raised(RuntimeError("x" * MAX_MESSAGE_CHARS + " postgresql://app:hunter2-pw@db/app"))
    report = report_error(error, None, settings.redact)
    assert "hunter2-pw" not in report.message + report.traceback
    head = report_error(
        RuntimeError("postgresql://app:hunter2-pw@db/app " + "y" * 10), "", settings.redact
    )
    assert head.message.startswith("postgresql://app:***@db/app")


def test_description_is_class_and_message() -> None:
    assert report_error(RuntimeError("boom"), "").description == "builtins.RuntimeError: boom"
    assert report_error(RuntimeError(), "").description == "builtins.RuntimeError"


@pytest.mark.parametrize(
    "name",
    [
        "UnknownJobTypeError",
        "InvalidPayloadError",
        "LeaseExpiredError",
        "JobTimeoutError",
        "ChildProcessDiedError",
    ],
)
def test_pgqueue_errors_are_stored_under_a_stable_name(name: str) -> None:
    error = getattr(pgqueue.errors, name)("x")
    assert class_name(error) == f"pgqueue.errors.{name}"


def test_old_import_paths_still_work_and_errors_cross_processes() -> None:
    assert pgqueue.blocking.JobTimeoutError is pgqueue.errors.JobTimeoutError
    assert pgqueue.blocking.ChildProcessDiedError is pgqueue.errors.ChildProcessDiedError
    assert isinstance(pgqueue.errors.JobTimeoutError("t"), TimeoutError)
    remote = pgqueue.errors.RemoteJobError("mod.Gone", "text")
    assert class_name(pickle.loads(pickle.dumps(remote))) == "mod.Gone"


def test_after_failure_retries_until_the_last_try() -> None:
    assert after_failure(5, 1, 3) == 5.0
    assert after_failure([1, 2], 2, 3) == 2.0
    assert after_failure(5, 3, 3) is None
    assert after_failure(None, 4, 3) is None


def test_backoff_grows_with_jitter_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=0.1, cap=1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for delay, step in zip(delays, steps, strict=True):
        assert step / 2 <= delay <= step
    backoff.reset()
    assert backoff.next_delay() <= 0.1


# ---- Snooze, retry_on and fail_on: what an attempt that raised leads to ----------------------


class _Plain(Job, abstract=True):
    max_tries = 3
    retry_after = 5


class _RetryOnTimeout(_Plain, abstract=True):
    retry_on = (TimeoutError,)


class _FailOnPermission(_Plain, abstract=True):
    fail_on = (PermissionError,)


class _RetryOsErrorButNotPermission(_Plain, abstract=True):
    retry_on = (OSError,)
    fail_on = (PermissionError,)


@pytest.mark.parametrize(
    "seconds", [float("nan"), float("inf"), -1, -0.001, MAX_DURATION_SECONDS + 1, True, "5", None]
)
def test_snooze_refuses_anything_but_seconds_from_0_to_100_years(seconds: object) -> None:
    with pytest.raises(InvalidSnoozeError, match="Snooze takes seconds from 0 to") as caught:
        Snooze(seconds)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_snooze_takes_0_and_100_years_and_ints() -> None:
    assert Snooze(0).seconds == 0.0
    assert Snooze(MAX_DURATION_SECONDS).seconds == MAX_DURATION_SECONDS
    assert Snooze(60).seconds == 60.0 and str(Snooze(60)) == "snoozed for 60 s"


def test_snooze_is_importable_from_pgqueue_and_is_no_pgqueue_error() -> None:
    assert pgqueue.Snooze is Snooze
    assert not isinstance(Snooze(1), pgqueue.errors.PgQueueError)


def test_snooze_survives_the_pickle_a_child_process_sends_it_back_in() -> None:
    back = pickle.loads(pickle.dumps(Snooze(2.5)))
    assert isinstance(back, Snooze) and back.seconds == 2.5


def test_a_snooze_is_snoozed_even_on_the_last_try_and_whatever_retry_on_says() -> None:
    assert after_error(_Plain, Snooze(30), 3, 3) == Snoozed(30.0)
    assert after_error(_RetryOnTimeout, Snooze(0), 1, 3) == Snoozed(0.0)


def test_without_retry_on_every_error_retries_until_the_last_try() -> None:
    assert after_error(_Plain, ValueError("x"), 1, 3) == 5.0
    assert after_error(_Plain, ValueError("x"), 3, 3) is None


def test_retry_on_retries_only_the_errors_it_names() -> None:
    assert after_error(_RetryOnTimeout, TimeoutError("slow"), 1, 3) == 5.0
    assert after_error(_RetryOnTimeout, ValueError("bad"), 1, 3) is None
    assert after_error(_RetryOnTimeout, TimeoutError("slow"), 3, 3) is None  # no try left


def test_pgqueues_own_timeout_and_a_dead_child_follow_retry_on() -> None:
    timed_out = pgqueue.errors.JobTimeoutError("handle() ran past its 1 s timeout")
    assert after_error(_RetryOnTimeout, timed_out, 1, 3) == 5.0
    died = pgqueue.errors.ChildProcessDiedError("the process running handle() died (exit -9)")
    assert after_error(_RetryOnTimeout, died, 1, 3) is None


def test_fail_on_gives_up_on_the_errors_it_names_and_retries_the_others() -> None:
    assert after_error(_FailOnPermission, PermissionError("no"), 1, 3) is None
    assert after_error(_FailOnPermission, ConnectionError("down"), 1, 3) == 5.0


def test_fail_on_wins_over_a_retry_on_that_names_a_base_of_the_error() -> None:
    assert after_error(_RetryOsErrorButNotPermission, ConnectionError("down"), 1, 3) == 5.0
    assert after_error(_RetryOsErrorButNotPermission, PermissionError("no"), 1, 3) is None
    assert after_error(_RetryOsErrorButNotPermission, ValueError("bad"), 1, 3) is None


def test_an_error_that_could_not_cross_back_matches_its_exact_class_by_name() -> None:
    remote = pgqueue.errors.RemoteJobError("builtins.TimeoutError", "slow")
    assert after_error(_RetryOnTimeout, remote, 1, 3) == 5.0
    other = pgqueue.errors.RemoteJobError("mod.Unpicklable", "x")
    assert after_error(_RetryOnTimeout, other, 1, 3) is None
    assert after_error(_FailOnPermission, other, 1, 3) == 5.0
