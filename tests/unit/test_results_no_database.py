"""Results and progress without a database (SPEC 11): keep_result checked at class definition,
progress arguments checked at the call, results encoded as JSON or refused, the outcome of a
completed attempt, the wait loop driven by hand, a child's progress throttle, and run_job."""

from __future__ import annotations

import pickle
import threading
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from pydantic import BaseModel

from pgqueue import Job
from pgqueue.blocking import PROGRESS_SEND_SECONDS, _Progress, _ProgressSender
from pgqueue.errors import (
    InvalidProgressError,
    InvalidResultError,
    JobCancelledError,
    JobDefinitionError,
    JobFailedError,
    JobNotFoundError,
    RemoteJobError,
    WaitTimeoutError,
)
from pgqueue.job import (
    MAX_PROGRESS_MESSAGE_CHARS,
    MAX_RESULT_BYTES,
    encode_result,
    keep_result_seconds,
    reported_progress,
    store_result,
)
from pgqueue.outcome import COMPLETED, Completed, completed, retries
from pgqueue.results import (
    Listen,
    check_wait,
    results_channel,
    status_statement,
    wait_plan,
)
from pgqueue.sql import Statement, queries_for
from pgqueue.testing import run_job

# ---- keep_result -------------------------------------------------------------------------


def _kept_class(value: object) -> type[Job]:
    class Kept(Job):
        job_name = f"tests.unit.results.Kept{abs(hash(repr(value)))}"
        keep_result = value  # type: ignore[assignment]

        async def handle(self) -> None:
            pass

    return Kept


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7d", 7 * 86400),
        ("12h", 12 * 3600),
        ("30m", 1800),
        ("45s", 45),
        ("2w", 14 * 86400),
        (" 1.5h ", 5400),
        (90, 90),
        (0.5, 0.5),
        (timedelta(days=1), 86400),
    ],
)
def test_keep_result_takes_durations_seconds_and_timedeltas(value: object, seconds: float) -> None:
    assert keep_result_seconds(_kept_class(value)) == seconds


def test_keep_result_is_off_by_default() -> None:
    class NotKept(Job):
        job_name = "tests.unit.results.NotKept"

        async def handle(self) -> None:
            pass

    assert NotKept.keep_result is None and keep_result_seconds(NotKept) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("7 days", 'must be a duration such as "7d", "12h", "30m" or "45s"'),
        ("", "must be a duration"),
        ("forever", "got 'forever'"),
        ([7], "must be a duration"),
        (True, "must be a duration"),
        ("0s", "must be longer than 0"),
        (0, "must be longer than 0"),
        (-5, "must be longer than 0"),
        (float("nan"), "must be longer than 0"),
        (float("inf"), "at most 3155760000 seconds"),
        (10**400, "at most 3155760000 seconds"),
        (timedelta(0), "must be longer than 0"),
    ],
)
def test_a_bad_keep_result_is_refused_when_the_class_is_defined(
    value: object, message: str
) -> None:
    with pytest.raises(JobDefinitionError, match=r"Kept\.keep_result ") as raised:
        _kept_class(value)
    assert message in str(raised.value)


def test_keep_result_is_a_job_setting_not_a_payload_field() -> None:
    with pytest.raises(JobDefinitionError, match="keep_result is a job setting"):

        class Annotated(Job):
            keep_result: str = "7d"

            async def handle(self) -> None:
                pass


def test_a_misspelled_keep_result_is_named() -> None:
    with pytest.raises(JobDefinitionError, match="did you mean keep_result"):

        class Misspelled(Job):
            keep_results = "7d"

            async def handle(self) -> None:
                pass


def test_progress_is_reserved_for_the_method() -> None:
    with pytest.raises(
        JobDefinitionError, match="payload field 'progress', a name reserved for what a job knows"
    ):

        class HasProgressField(Job):
            progress: float = 0.0

            async def handle(self) -> None:
                pass


# ---- progress ----------------------------------------------------------------------------


class Reports(Job):
    job_name = "tests.unit.results.Reports"

    async def handle(self) -> None:
        pass


@pytest.mark.parametrize(
    ("fraction", "stored"), [(0, 0.0), (1, 1.0), (0.4, 0.4), (Fraction(1, 4), 0.25)]
)
def test_progress_takes_a_fraction_from_0_to_1(fraction: Any, stored: float) -> None:
    job = Reports()
    job.progress(fraction, "step 2 of 8")
    assert reported_progress(job) == (stored, "step 2 of 8")


@pytest.mark.parametrize(
    "fraction", [-0.01, 1.01, 40, float("nan"), float("inf"), "0.5", None, True, 10**400]
)
def test_a_bad_fraction_raises_at_the_call(fraction: Any) -> None:
    job = Reports()
    with pytest.raises(InvalidProgressError, match=r"progress\(\) takes a fraction from 0 to 1"):
        job.progress(fraction)
    assert reported_progress(job) is None
    assert isinstance(InvalidProgressError("x"), ValueError)


def test_a_message_that_is_not_text_raises_at_the_call() -> None:
    with pytest.raises(InvalidProgressError, match="takes a message as text"):
        Reports().progress(0.5, 42)  # type: ignore[arg-type]


def test_a_long_message_is_cut_and_each_report_is_a_new_value() -> None:
    job = Reports()
    job.progress(0.5, "x" * 10_000)
    first = reported_progress(job)
    assert first is not None and first[1] is not None
    assert len(first[1]) == MAX_PROGRESS_MESSAGE_CHARS and first[1].endswith("...")
    job.progress(0.5, first[1])
    assert reported_progress(job) is not first  # so a worker sends a repeated report again


# ---- encoding results --------------------------------------------------------------------


class Size(BaseModel):
    width: int


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"width": 100, "sizes": (1, 2)}, '{"width":100,"sizes":[1,2]}'),
        (None, "null"),
        ("done", '"done"'),
        (Size(width=3), '{"width":3}'),
        (datetime(2026, 1, 2, tzinfo=UTC), '"2026-01-02T00:00:00Z"'),
        ([{"nested": [1.5]}], '[{"nested":[1.5]}]'),
    ],
)
def test_results_are_encoded_as_json(value: Any, text: str) -> None:
    assert encode_result(Reports, value) == text


def _cycle() -> list[Any]:
    looped: list[Any] = []
    looped.append(looped)
    return looped


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


UNKEEPABLE = [
    (object(), "cannot be kept as JSON"),
    ({1, object()}, "cannot be kept as JSON"),
    (_cycle(), "cannot be kept as JSON"),
    ("lone \ud800", "cannot be kept as JSON"),
    (float("nan"), "NaN or infinity"),
    ({"x": float("-inf")}, "NaN or infinity"),
    ("nul \x00 inside", "a NUL character"),
    (_deep(150), "nested more than 100 levels deep"),
    (10**5000, "an integer of 5001 digits"),
    ("x" * MAX_RESULT_BYTES, f"over the {MAX_RESULT_BYTES}-byte limit"),
]


@pytest.mark.parametrize(
    ("value", "message"), UNKEEPABLE, ids=[message for _, message in UNKEEPABLE]
)
def test_results_that_cannot_be_kept_are_refused_with_the_reason(value: Any, message: str) -> None:
    with pytest.raises(InvalidResultError) as raised:
        encode_result(Reports, value)
    assert str(raised.value).startswith("Reports.handle() returned ")
    assert message in str(raised.value)


def test_text_that_only_looks_like_a_problem_is_kept() -> None:
    assert encode_result(Reports, {"note": "NaN [[[ \\u0000"}) == '{"note":"NaN [[[ \\\\u0000"}'


def test_a_plain_type_stores_nothing_and_completes_with_the_shared_outcome() -> None:
    job = Reports()
    store_result(job, object())  # not JSON, and nobody asked for it
    assert completed(job) is COMPLETED and COMPLETED.result is None


def test_a_kept_type_completes_with_its_result_and_how_long_to_keep_it() -> None:
    kept = _kept_class("2h")()
    store_result(kept, {"a": 1})
    assert completed(kept) == Completed('{"a":1}', 7200.0)


def test_a_kept_type_with_nothing_stored_completes_with_json_null() -> None:
    assert completed(_kept_class("90s")()) == Completed("null", 90.0)


def test_an_invalid_result_never_retries_whatever_retry_on_says() -> None:
    class RetriesEverything(Job):
        job_name = "tests.unit.results.RetriesEverything"
        retry_on = (Exception,)

        async def handle(self) -> None:
            pass

    assert retries(RetriesEverything, InvalidResultError("x")) is False
    assert (
        retries(RetriesEverything, RemoteJobError("pgqueue.errors.InvalidResultError", "x"))
        is False
    )
    assert retries(RetriesEverything, ValueError("x")) is True


# ---- status and wait, driven by hand -----------------------------------------------------

QUERIES = queries_for("pgqueue")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _row(state: str, **fields: Any) -> tuple[Any, ...]:
    values = {
        "result": None,
        "exception_class": None,
        "exception_message": None,
        **fields,
    }
    return (
        7,
        state,
        "q",
        "t",
        1,
        None,
        None,
        values["result"],
        values["exception_class"],
        values["exception_message"],
        NOW,
        NOW,
        None,
    )


def _plan(timeout: float | None = 10, poll: float = 1.0) -> Any:
    plan = wait_plan(status_statement(QUERIES, 7), 7, timeout, poll)
    assert isinstance(next(plan), Statement)
    return plan


def test_the_results_channel_is_the_schema_s_own_and_fits_an_identifier() -> None:
    assert results_channel("pgqueue") == "pgqueue:results"
    long = results_channel("s" * 63)
    assert len(long) == 63 and long.endswith(":results")


def test_wait_returns_a_completed_job_s_result() -> None:
    plan = _plan()
    with pytest.raises(StopIteration) as done:
        plan.send([_row("completed", result='{"width": 100}')])
    assert done.value.value == {"width": 100}


def test_wait_listens_between_reads_until_the_job_ends() -> None:
    plan = _plan(timeout=None, poll=2.5)
    assert plan.send([_row("queued")]) == Listen(2.5)
    assert isinstance(plan.send(None), Statement)
    assert plan.send([_row("running")]) == Listen(2.5)
    plan.send(None)
    with pytest.raises(StopIteration) as done:
        plan.send([_row("completed", result="[1]")])
    assert done.value.value == [1]


def test_wait_returns_none_for_a_job_it_saw_that_then_vanished() -> None:
    plan = _plan()
    plan.send([_row("running")])
    plan.send(None)
    with pytest.raises(StopIteration) as done:
        plan.send([])
    assert done.value.value is None


def test_wait_for_an_id_unknown_at_the_first_read_raises_job_not_found_error() -> None:
    with pytest.raises(JobNotFoundError, match="no job 7 is known"):
        _plan().send([])


def test_wait_raises_job_failed_error_carrying_the_error() -> None:
    with pytest.raises(JobFailedError) as raised:
        _plan().send(
            [_row("failed", exception_class="builtins.ValueError", exception_message="bad")]
        )
    assert (raised.value.job_id, raised.value.exception_class) == (7, "builtins.ValueError")
    assert raised.value.exception_message == "bad"
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (copy.job_id, str(copy)) == (7, "job 7 failed: builtins.ValueError: bad")


def test_wait_raises_job_cancelled_error_for_a_cancelled_job() -> None:
    row = _row(
        "cancelled",
        exception_class="pgqueue.errors.JobCancelledError",
        exception_message="cancelled before it ran",
    )
    with pytest.raises(JobCancelledError, match="job 7 was cancelled: cancelled before it ran"):
        _plan().send([row])


def test_wait_times_out_with_a_timeout_error_and_never_listens_past_the_deadline() -> None:
    plan = _plan(timeout=0.2, poll=5)
    step = plan.send([_row("scheduled")])
    assert isinstance(step, Listen) and step.seconds <= 0.2
    time.sleep(0.25)
    plan.send(None)
    with pytest.raises(WaitTimeoutError, match=r"job 7 is still scheduled after waiting 0\.2 s"):
        plan.send([_row("scheduled")])
    assert issubclass(WaitTimeoutError, TimeoutError)


@pytest.mark.parametrize(
    ("timeout", "poll"), [(-1, 1), (float("nan"), 1), ("5", 1), (1, 0), (1, -2), (1, None)]
)
def test_wait_arguments_are_checked(timeout: Any, poll: Any) -> None:
    with pytest.raises(ValueError, match=r"wait\(\) takes"):
        check_wait(timeout, poll)


def test_status_takes_an_int_id() -> None:
    with pytest.raises(TypeError, match="a job id is an int, got str"):
        status_statement(QUERIES, "7")  # type: ignore[arg-type]
    assert status_statement(QUERIES, 2**70).params["id"] == 0


# ---- a blocking job's progress, throttled in its child process ---------------------------


class _Pipe:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.lock = threading.Lock()

    def send(self, value: Any) -> None:
        with self.lock:
            self.sent.append(value)


def test_a_burst_of_reports_sends_the_first_now_and_the_latest_after_the_interval() -> None:
    pipe = _Pipe()
    sender = _ProgressSender(pipe)  # type: ignore[arg-type]
    for step in range(1, 101):
        sender.report((step / 100, f"{step}"))
    assert pipe.sent == [_Progress(0.01, "1")]
    time.sleep(PROGRESS_SEND_SECONDS * 3)
    assert pipe.sent == [_Progress(0.01, "1"), _Progress(1.0, "100")]
    sender.close()


def test_nothing_is_sent_once_the_sender_is_closed() -> None:
    pipe = _Pipe()
    sender = _ProgressSender(pipe)  # type: ignore[arg-type]
    sender.report((0.1, None))
    sender.report((0.2, None))  # waits for the timer
    sender.close()
    time.sleep(PROGRESS_SEND_SECONDS * 3)
    sender.report((0.3, None))
    assert pipe.sent == [_Progress(0.1, None)]


# ---- run_job -----------------------------------------------------------------------------


class Resize(Job):
    job_name = "tests.unit.results.Resize"
    keep_result = "1d"

    width: int

    def handle(self) -> dict[str, Any]:
        self.progress(0.5, "halfway")
        return {"width": self.width, "at": datetime(2026, 1, 1, tzinfo=UTC)}


class ReturnsAnObject(Job):
    job_name = "tests.unit.results.ReturnsAnObject"
    keep_result = "1d"
    max_tries = 3

    async def handle(self) -> object:
        return object()


class PlainReturns(Job):
    job_name = "tests.unit.results.PlainReturns"

    async def handle(self) -> tuple[int, int]:
        return (1, 2)


def test_run_job_gives_a_kept_result_as_wait_would_and_the_last_progress() -> None:
    run = run_job(Resize(width=3))
    assert run.outcome == "completed"
    assert run.result == {"width": 3, "at": "2026-01-01T00:00:00Z"}
    assert run.progress == (0.5, "halfway")


def test_run_job_gives_a_plain_type_s_value_as_returned() -> None:
    assert run_job(PlainReturns()).result == (1, 2)


def test_run_job_fails_a_result_that_cannot_be_kept_without_retrying() -> None:
    run = run_job(ReturnsAnObject())
    assert (run.outcome, run.attempts, run.result) == ("failed", 1, None)
    assert [type(error) for error in run.errors] == [InvalidResultError]
