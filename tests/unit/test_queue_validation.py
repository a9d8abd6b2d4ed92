"""Queue/AsyncQueue refuse bad dispatches before any SQL runs.

The queues point at 127.0.0.1:1, where nothing listens: a dispatch that got as far as the database
would fail with DatabaseError, so the specific errors below prove the refusal came first. As a
tripwire that fails at once rather than after the pool's 30-second wait, opening the dispatch pool
raises AssertionError in every test here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NoReturn

import pytest
from pydantic import SecretStr

from pgqueue import AsyncQueue, Job, Queue, Settings
from pgqueue.errors import (
    DispatchError,
    InvalidJobNameError,
    InvalidJobSettingError,
    InvalidPriorityError,
    InvalidQueueNameError,
    InvalidScheduleError,
    PayloadTooDeepError,
    PayloadTooLargeError,
    SecretInPayloadError,
    UnserializablePayloadError,
    UnsupportedConnectionError,
)

UNREACHABLE_URL = "postgresql://user:pw@127.0.0.1:1/nodb"
MAX_PAYLOAD_BYTES = 64


class Note(Job):
    job_name = "tests.unit.test_queue_validation.Note"
    text: str = "hello"

    def handle(self) -> None:
        pass


class Measurement(Job):
    job_name = "tests.unit.test_queue_validation.Measurement"
    value: Any = 1.0

    def handle(self) -> None:
        pass


class Login(Job):
    job_name = "tests.unit.test_queue_validation.Login"
    password: SecretStr

    def handle(self) -> None:
        pass


def _refuse_to_connect(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the queue tried to open a database connection")


async def _refuse_to_connect_async(*args: object, **kwargs: object) -> NoReturn:
    _refuse_to_connect()


@pytest.fixture(autouse=True)
def no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Queue, "_get_pool", _refuse_to_connect)
    monkeypatch.setattr(AsyncQueue, "_get_pool", _refuse_to_connect_async)


@pytest.fixture
def offline_settings() -> Settings:
    return Settings(database_url=UNREACHABLE_URL, max_payload_bytes=MAX_PAYLOAD_BYTES)


@pytest.fixture
def queue(offline_settings: Settings) -> Queue:
    return Queue(offline_settings)


@pytest.fixture
def async_queue(offline_settings: Settings) -> AsyncQueue:
    return AsyncQueue(offline_settings)


def test_oversize_payload_raises_payload_too_large(queue: Queue) -> None:
    with pytest.raises(PayloadTooLargeError):
        queue.dispatch(Note(text="a" * MAX_PAYLOAD_BYTES))


def test_secret_value_raises_secret_in_payload(queue: Queue) -> None:
    with pytest.raises(SecretInPayloadError):
        queue.dispatch(Login(password=SecretStr("hunter2")))


def test_nan_payload_raises_unserializable_payload(queue: Queue) -> None:
    with pytest.raises(UnserializablePayloadError):
        queue.dispatch(Measurement(value=float("nan")))


def test_delay_and_run_at_together_raise_dispatch_error(queue: Queue) -> None:
    with pytest.raises(DispatchError, match="either delay= or run_at="):
        queue.dispatch(Note(), delay=5, run_at=datetime.now(UTC) + timedelta(minutes=1))


def test_naive_run_at_raises_dispatch_error(queue: Queue) -> None:
    with pytest.raises(DispatchError, match="timezone-aware"):
        queue.dispatch(Note(), run_at=datetime(2030, 1, 1, 12, 0))


def test_negative_delay_raises_dispatch_error(queue: Queue) -> None:
    with pytest.raises(DispatchError, match="delay must be a finite number of seconds >= 0"):
        queue.dispatch(Note(), delay=-1)


def test_negative_timedelta_delay_raises_dispatch_error(queue: Queue) -> None:
    with pytest.raises(DispatchError, match="delay must be a finite number of seconds >= 0"):
        queue.dispatch(Note(), delay=timedelta(seconds=-1))


@pytest.mark.parametrize("delay", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_delay_raises_dispatch_error(queue: Queue, delay: float) -> None:
    # NaN slips past `delay < 0`; infinity would schedule the job for a time that never comes.
    with pytest.raises(DispatchError, match="delay"):
        queue.dispatch(Note(), delay=delay)


def test_boolean_priority_raises_dispatch_error(queue: Queue) -> None:
    with pytest.raises(DispatchError, match="priority"):
        queue.dispatch(Note(), priority=True)


def test_non_job_argument_raises_dispatch_error(queue: Queue) -> None:
    with pytest.raises(DispatchError, match="takes a Job instance"):
        queue.dispatch({"text": "hello"})  # type: ignore[arg-type]


def test_bulk_with_one_bad_item_raises_naming_its_index(queue: Queue) -> None:
    jobs = [Note(), Note(), Note(text="a" * MAX_PAYLOAD_BYTES), Note()]
    with pytest.raises(PayloadTooLargeError, match=r"bulk\(\) item 2:"):
        queue.bulk(jobs)


def test_bulk_with_non_job_item_raises_naming_its_index(queue: Queue) -> None:
    with pytest.raises(DispatchError, match=r"bulk\(\) item 1 is a dict"):
        queue.bulk([Note(), {"text": "hello"}])  # type: ignore[list-item]


def test_size_of_invalid_queue_name_raises_invalid_queue_name(queue: Queue) -> None:
    with pytest.raises(InvalidQueueNameError):
        queue.size("a\nb")


def test_unsupported_connection_raises_unsupported_connection_error(queue: Queue) -> None:
    with pytest.raises(UnsupportedConnectionError, match=r"builtins\.object"):
        queue.dispatch(Note(), conn=object())


def test_invalid_job_is_refused_before_connection_is_checked(queue: Queue) -> None:
    with pytest.raises(PayloadTooLargeError):
        queue.dispatch(Note(text="a" * MAX_PAYLOAD_BYTES), conn=object())


def test_refused_dispatch_leaves_job_id_unset(queue: Queue) -> None:
    job = Note(text="a" * MAX_PAYLOAD_BYTES)
    with pytest.raises(PayloadTooLargeError):
        queue.dispatch(job)
    assert job.job_id is None


def test_queue_repr_hides_password(queue: Queue) -> None:
    assert "pw" not in repr(queue)


def test_async_queue_repr_hides_password(async_queue: AsyncQueue) -> None:
    assert "pw" not in repr(async_queue)


async def test_async_oversize_payload_raises_payload_too_large(async_queue: AsyncQueue) -> None:
    with pytest.raises(PayloadTooLargeError):
        await async_queue.dispatch(Note(text="a" * MAX_PAYLOAD_BYTES))


async def test_async_naive_run_at_raises_dispatch_error(async_queue: AsyncQueue) -> None:
    with pytest.raises(DispatchError, match="timezone-aware"):
        await async_queue.dispatch(Note(), run_at=datetime(2030, 1, 1, 12, 0))


async def test_async_bulk_with_one_bad_item_raises_naming_its_index(
    async_queue: AsyncQueue,
) -> None:
    jobs = [Note(), Login(password=SecretStr("hunter2"))]
    with pytest.raises(SecretInPayloadError, match=r"bulk\(\) item 1:"):
        await async_queue.bulk(jobs)


async def test_async_unsupported_connection_raises_unsupported_connection_error(
    async_queue: AsyncQueue,
) -> None:
    with pytest.raises(UnsupportedConnectionError, match=r"builtins\.object"):
        await async_queue.dispatch(Note(), conn=object())


def test_dispatch_error_is_a_value_error() -> None:
    assert issubclass(DispatchError, ValueError)


# dispatch() arguments refused before any connection is opened: (arguments, error, message).
BAD_ARGUMENTS = [
    ({"priority": 2**31}, InvalidPriorityError, "-2147483648 to 2147483647"),
    ({"priority": 2**63}, InvalidPriorityError, "-2147483648 to 2147483647"),
    ({"priority": 1.5}, InvalidPriorityError, "must be an integer"),
    ({"delay": timedelta(days=999_999_999)}, InvalidScheduleError, "at most 3155760000"),
    ({"delay": 1e300}, InvalidScheduleError, "at most 3155760000"),
    ({"delay": 10**5000}, InvalidScheduleError, "an integer of about 5001 digits"),
    ({"delay": "60"}, InvalidScheduleError, "seconds \\(a number\\) or a timedelta"),
    ({"run_at": "2030-01-01"}, InvalidScheduleError, "timezone-aware datetime, got str"),
    ({"run_at": datetime.max.replace(tzinfo=UTC)}, InvalidScheduleError, "outside"),
    (
        {"run_at": datetime.max.replace(tzinfo=timezone(timedelta(hours=-1)))},
        InvalidScheduleError,
        "cannot be converted to UTC",
    ),
]
BAD_IDS = [
    "priority-2**31",
    "priority-2**63",
    "priority-float",
    "delay-999999999-days",
    "delay-1e300",
    "delay-10**5000",
    "delay-str",
    "run-at-str",
    "run-at-year-9999-end",
    "run-at-past-9999-in-utc",
]


@pytest.mark.parametrize(("arguments", "error", "message"), BAD_ARGUMENTS, ids=BAD_IDS)
def test_bad_dispatch_argument_is_refused_before_connecting(
    queue: Queue, arguments: dict[str, Any], error: type[DispatchError], message: str
) -> None:
    with pytest.raises(error, match=message):
        queue.dispatch(Note(), **arguments)


@pytest.mark.parametrize(("arguments", "error", "message"), BAD_ARGUMENTS, ids=BAD_IDS)
async def test_async_bad_dispatch_argument_is_refused_before_connecting(
    async_queue: AsyncQueue, arguments: dict[str, Any], error: type[DispatchError], message: str
) -> None:
    with pytest.raises(error, match=message):
        await async_queue.dispatch(Note(), **arguments)


def test_run_at_is_sent_in_utc(queue: Queue) -> None:
    berlin = timezone(timedelta(hours=1))
    statement = queue._dispatch(Note(), None, datetime(2030, 1, 1, 13, tzinfo=berlin), None)
    assert statement.params["run_at"] == datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert statement.params["run_at"].tzinfo is UTC


def test_int_enum_priority_is_sent_as_a_plain_int(queue: Queue) -> None:
    import enum

    class Priority(enum.IntEnum):
        HIGH = -10

    statement = queue._dispatch(Note(), None, None, Priority.HIGH)
    assert type(statement.params["priority"]) is int


@pytest.mark.parametrize(
    ("attribute", "value", "error"),
    [
        ("max_tries", 2**31, InvalidJobSettingError),
        ("priority", -(2**31) - 1, InvalidJobSettingError),
        ("job_name", None, InvalidJobNameError),
        ("job_name", "   ", InvalidJobNameError),
        ("queue", "", InvalidQueueNameError),
    ],
    ids=repr,
)
def test_class_attribute_reassigned_after_definition_is_refused_by_bulk(
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
    attribute: str,
    value: object,
    error: type[DispatchError],
) -> None:
    monkeypatch.setattr(Note, attribute, value)
    with pytest.raises(error, match=rf"bulk\(\) item 0: .*{attribute.replace('_', '.')}"):
        queue.bulk([Note(), Note()])


def test_cyclic_payload_in_bulk_is_refused_naming_its_index(queue: Queue) -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(PayloadTooDeepError, match=r"bulk\(\) item 1: .*contains itself"):
        queue.bulk([Measurement(), Measurement(value=cycle)])


def test_bulk_checks_each_class_once_yet_refuses_every_bad_payload(queue: Queue) -> None:
    jobs = [Measurement(value=i) for i in range(50)] + [Measurement(value="a\ud800")]
    with pytest.raises(UnserializablePayloadError, match=r"bulk\(\) item 50: .*lone surrogate"):
        queue.bulk(jobs)
