"""`Job`: the base class users subclass, the registry of job types, payload encoding and backoff.

A job is a pydantic model: its fields are the payload, validated when the job is created, on
assignment, and again when a worker loads the row back. Its class attributes (`queue`, `max_tries`,
`timeout`, `retry_after`, `retry_on`, `fail_on`, `priority`, `job_name`, `unique`,
`unique_while`, `keep_result`, ...) describe how it runs and are never stored as payload.

Inside `handle`, `self.progress(fraction, message)` reports how far the job got; a worker writes
the latest report with its next heartbeat. `keep_result` keeps what `handle` returns, as JSON
(`encode_result`), for `queue.status` and `wait` (docs/results.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import decimal
import difflib
import enum
import hashlib
import inspect
import json
import numbers
import random
import re
import sys
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, SecretBytes, SecretStr
from pydantic_core import PydanticSerializationError

from pgqueue.errors import (
    InvalidJobNameError,
    InvalidJobSettingError,
    InvalidProgressError,
    InvalidQueueNameError,
    InvalidResultError,
    JobDefinitionError,
    PayloadTooDeepError,
    PayloadTooLargeError,
    SecretInPayloadError,
    UnserializablePayloadError,
)

RetryAfter = float | Sequence[float] | None
ExceptionClasses = tuple[type[BaseException], ...]
# A JSON-escaped NUL: \u0000 preceded by an even number of backslashes (an odd run is a literal).
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# The class attributes a job type sets: refused as payload fields, and suggested for a
# misspelled one (`max_retries`).
CLASS_SETTINGS = (
    "queue",
    "max_tries",
    "timeout",
    "retry_after",
    "retry_on",
    "fail_on",
    "priority",
    "job_name",
    "unique",
    "unique_while",
    "schedule",
    "schedule_timezone",
    "concurrency",
    "rate_limit",
    "limit_key",
    "keep_result",
)
# Every name a payload field may not take: the settings, what a loaded job knows of its row, and
# the method a handler reports progress with.
RESERVED_NAMES = frozenset({*CLASS_SETTINGS, "job_id", "attempts", "progress"})
MAX_QUEUE_NAME_BYTES = 63
MAX_JOB_NAME_BYTES = 255
# PostgreSQL's integer, the type of the priority and max_tries columns.
INT4_MIN = -(2**31)
INT4_MAX = 2**31 - 1
# The longest duration pgqueue takes (delay=, timeout, retry_after): 100 years. now() plus it always
# fits PostgreSQL's interval and timestamptz, and stays a time Python (every reader) can load back.
MAX_DURATION_SECONDS = 100 * 365.25 * 86400
# JSON nesting, the payload object itself being level 1. Well inside pydantic's serializer (255)
# and JSON parser (about 200) and Python's json (about 1000), which workers and tools read with.
MAX_PAYLOAD_DEPTH = 100
# Python's json and pydantic's parser both refuse integers with more digits (sys.int_info's
# default_max_str_digits), so a payload holding one could never be loaded by a worker.
MAX_PAYLOAD_INT_DIGITS = 4300
# The default backoff when `retry_after` is unset: base * 2**(attempt-1), capped, then jittered.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 3600.0

# How long a unique job holds its key (docs/unique-jobs.md): until it is claimed, or until it ends.
UNIQUE_WHILE = ("queued", "active")
UNIQUE_WHILE_DEFAULT = "queued"

# The timezone a schedule's cron expression is read in unless it names one (docs/periodic-jobs.md).
DEFAULT_SCHEDULE_TIMEZONE = "UTC"

# A rate limit is "N/s", "N/m" or "N/h" (docs/limits.md): at most N starts in any such period.
RATE_PERIODS = {"s": 1, "m": 60, "h": 3600}
_RATE_LIMIT = re.compile(r"^\s*([1-9][0-9]{0,8})\s*/\s*([smh])\s*$")

# A stored result is at most this much JSON: job_results is a table every status read looks in,
# not a blob store (return where the data is, an object key say, instead of the data).
MAX_RESULT_BYTES = 1024 * 1024
# progress_message is shown in one line of `pgqueue stats` and the dashboard: longer is cut.
MAX_PROGRESS_MESSAGE_CHARS = 1000

_registry: dict[str, type[Job]] = {}
# Keys of a job's identity in its pydantic private dict (see Job.job_id).
_JOB_ID = "_job_id"
_ATTEMPTS = "_attempts"
# And of what an attempt reported there: its latest progress, where progress is sent on to (a
# blocking job's child process sends it to the worker), and its encoded result.
_PROGRESS = "_progress"
_PROGRESS_SINK = "_progress_sink"
_RESULT = "_result"


class Job(BaseModel):
    """A unit of work: subclass it, declare payload fields, and implement `handle`.

    Class attributes (all optional):
        queue: the queue it is dispatched to (default "default").
        max_tries: attempts before it moves to `failed_jobs` (default 3).
        timeout: seconds one attempt may run (default 60).
        retry_after: seconds before a retry: a number (fixed), a list (per attempt, the last
            repeating), or None (default) for exponential backoff with jitter.
        retry_on: a tuple of exception classes: only these retry, any other error fails the job
            at once (`failed()` runs). Default None: every error retries. pgqueue's timeout is a
            `TimeoutError`.
        fail_on: a tuple of exception classes that fail the job at once, even if `retry_on`
            names a base of theirs. Default None.
        priority: lower runs first within a queue (default 0).
        job_name: the stored type name (default `module.ClassName`); set it so renames keep working.
        unique: the payload fields whose values form the job's unique key (a tuple of names), True
            for the whole payload, or False (default): not unique. See docs/unique-jobs.md.
        unique_while: how long a unique job holds its key: "queued" (default), until a worker
            claims it; "active", until it ends (completed, or moved to failed_jobs).
        schedule: a cron expression (5 fields, or @hourly/@daily/@weekly/@monthly): enqueue the
            job from its field defaults at each fire time, named by `job_name`. Default None.
        schedule_timezone: the IANA timezone `schedule` is read in (default "UTC"). See
            docs/periodic-jobs.md.
        concurrency: at most this many of the type run at once across all workers (default
            None: no limit). See docs/limits.md.
        rate_limit: at most N starts per period across all workers, "N/s", "N/m" or "N/h"
            (default None: no limit).
        limit_key: a payload field: `concurrency` and `rate_limit` then apply per value of it
            (default None: to the type as a whole).
        keep_result: keep what `handle` returns (as JSON) and the final state this long after
            the job completes: "7d", "12h", "30m", "45s", seconds or a timedelta. Default None:
            nothing is kept and completing costs nothing more. See docs/results.md.
    """

    # NaN and infinity must reach encode_payload as floats so they are refused, not turned to null.
    model_config = ConfigDict(
        validate_assignment=True, extra="forbid", ser_json_inf_nan="constants"
    )

    queue: ClassVar[str] = "default"
    max_tries: ClassVar[int] = 3
    timeout: ClassVar[float] = 60
    retry_after: ClassVar[RetryAfter] = None
    retry_on: ClassVar[ExceptionClasses | None] = None
    fail_on: ClassVar[ExceptionClasses | None] = None
    priority: ClassVar[int] = 0
    job_name: ClassVar[str]
    unique: ClassVar[bool | tuple[str, ...]] = False
    unique_while: ClassVar[str] = UNIQUE_WHILE_DEFAULT
    schedule: ClassVar[str | None] = None
    schedule_timezone: ClassVar[str] = DEFAULT_SCHEDULE_TIMEZONE
    concurrency: ClassVar[int | None] = None
    rate_limit: ClassVar[str | None] = None
    limit_key: ClassVar[str | None] = None
    keep_result: ClassVar[str | float | datetime.timedelta | None] = None

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        # Runs before pydantic collects fields, so a mistake gets our error, not its warning.
        _check_class_body(cls, abstract)
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _check_definition(cls)
        if "job_name" not in cls.__dict__:
            cls.job_name = f"{_importable_module_name(cls)}.{cls.__qualname__}"
            problem = _job_name_problem(cls.job_name)
            if problem:
                raise JobDefinitionError(
                    f"{cls.__qualname__}: the default job_name (module.ClassName) {problem}; "
                    "set `job_name` on the class"
                )
        if not abstract:  # a base for other job types is never run, so never looked up
            _register(cls)
            if cls.schedule is not None:
                # Imported here: pgqueue.schedules builds on this module.
                from pgqueue.schedules import define_class_schedule

                define_class_schedule(cls)

    # The row id and attempt live in pydantic's private dict, written by `set_identity`, but are
    # not declared as private attributes: declaring them made pydantic initialise them for every
    # job it validated, which was the costliest step of loading a claimed row.

    @property
    def job_id(self) -> int | None:
        """The row id once dispatched or loaded by a worker; None before."""
        private = self.__pydantic_private__
        return None if private is None else private.get(_JOB_ID)

    @property
    def attempts(self) -> int:
        """Which attempt this is, counting from 1 inside `handle`; 0 before the first claim."""
        private = self.__pydantic_private__
        return 0 if private is None else private.get(_ATTEMPTS, 0)

    def handle(self) -> Any:
        """Do the work. May be `def` (run in a child process the worker can kill) or `async def`.

        What it returns is kept as the job's result when the class sets `keep_result` (it must
        be JSON-encodable: dicts, lists, text, numbers, pydantic models ...); otherwise ignored.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement handle()")

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far this attempt got: `fraction` from 0 to 1, and an optional `message`
        ("40 of 100 done"). Cheap: nothing is sent now; the worker writes the latest report with
        its next heartbeat (within lease / 3), where `queue.status`, `pgqueue stats` and the
        dashboard show it. Works in `def handle` too. A fraction that is not a number from 0 to 1
        (NaN included), or a message that is not text, raises `InvalidProgressError` here.
        """
        report = checked_progress(fraction, message)
        private = self.__pydantic_private__
        if private is None:
            object.__setattr__(self, "__pydantic_private__", {_PROGRESS: report})
            return
        private[_PROGRESS] = report
        sink = private.get(_PROGRESS_SINK)
        if sink is not None:
            sink(report)

    def failed(self, exc: BaseException) -> Any:
        """Called once when the job has used its last try; may be `def` or `async def`."""
        return None


def _importable_module_name(cls: type[Job]) -> str:
    """The module name a worker can import: `python -m pkg.mod` runs it as `__main__`."""
    if cls.__module__ == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return str(spec.name)
    return cls.__module__


_PLAIN_VALUES = (int, float, str, bytes, list, tuple, dict, set, type(None))


def _check_class_body(cls: type[Job], abstract: bool) -> None:
    """The mistakes a job class's own body can make, in the words of the one who wrote it: a
    job setting written as a payload field, a misspelled setting, no `handle`.

    A class without `handle` is refused unless declared `abstract=True` (`class
    EmailJob(Job, abstract=True)`): a base that other job types share, which is never
    registered, so never dispatched or run.
    """
    name = cls.__qualname__
    annotations = inspect.get_annotations(cls)
    for field in sorted(RESERVED_NAMES & set(annotations)):
        if _is_class_var(annotations[field]):
            continue  # `queue: ClassVar[str] = "emails"` says what it is
        if field not in CLASS_SETTINGS:
            raise JobDefinitionError(
                f"{name} declares a payload field {field!r}, a name reserved for what a job "
                "knows of itself (job_id, attempts, progress()); rename the field"
            )
        if field in cls.__dict__:
            raise JobDefinitionError(
                f"{name}.{field} is a job setting, not a payload field: drop the annotation "
                f"(write `{field} = {brief_repr(cls.__dict__[field])}`)"
            )
        raise JobDefinitionError(
            f"{name} declares a payload field {field!r}, a name reserved for job settings; "
            "rename the field"
        )
    for attribute, value in cls.__dict__.items():
        if attribute.startswith("_") or attribute in annotations or attribute in RESERVED_NAMES:
            continue
        if not isinstance(value, _PLAIN_VALUES):
            continue  # methods, properties and other descriptors
        close = difflib.get_close_matches(attribute, CLASS_SETTINGS, n=1, cutoff=0.75)
        if close:
            raise JobDefinitionError(
                f"{name}.{attribute} is not a job setting: did you mean {close[0]}? (the "
                f"settings are {', '.join(CLASS_SETTINGS)}; a payload field needs a type, "
                f"`{attribute}: int = ...`)"
            )
    if not abstract and cls.handle is Job.handle:
        raise JobDefinitionError(
            f"{name} has no handle() method: define `def handle(self) -> None` (or `async def`), "
            f"or, for a base class other job types share, declare it "
            f"`class {cls.__name__}(Job, abstract=True)`"
        )


def _is_class_var(annotation: object) -> bool:
    if isinstance(annotation, str):  # `from __future__ import annotations`
        return re.match(r"^(typing\.|t\.)?ClassVar\b", annotation.strip()) is not None
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _check_definition(cls: type[Job]) -> None:
    clashes = RESERVED_NAMES & set(cls.model_fields)
    if clashes:
        raise JobDefinitionError(
            f"{cls.__qualname__} declares payload field(s) {sorted(clashes)}, which are reserved "
            f"job settings; rename the field(s)"
        )
    try:
        validate_queue_name(cls.queue)
    except InvalidQueueNameError as exc:
        raise JobDefinitionError(f"{cls.__qualname__}.queue: {exc}") from None
    if "job_name" in cls.__dict__:
        problem = _job_name_problem(cls.job_name)
        if problem:
            raise JobDefinitionError(f"{cls.__qualname__}.job_name {problem}")
    bad_setting = _settings_problem(cls)
    if bad_setting:
        raise JobDefinitionError(f"{cls.__qualname__}.{bad_setting}")
    bad_errors = _error_classes_problem(cls)
    if bad_errors:
        raise JobDefinitionError(f"{cls.__qualname__}.{bad_errors}")
    bad_unique = _unique_problem(cls)
    if bad_unique:
        raise JobDefinitionError(f"{cls.__qualname__}.{bad_unique}")
    bad_limit = _limits_problem(cls)
    if bad_limit:
        raise JobDefinitionError(f"{cls.__qualname__}.{bad_limit}")
    try:
        keep_result_seconds(cls)
    except ValueError as exc:
        raise JobDefinitionError(f"{cls.__qualname__}.keep_result {exc}") from None


def _settings_problem(cls: type[Job]) -> str | None:
    """`name what-is-wrong` for the first of max_tries, priority, timeout, retry_after pgqueue
    cannot use; None when all are fine."""
    return _stored_settings_problem(cls) or _timing_problem(cls)


def _stored_settings_problem(cls: type[Job]) -> str | None:
    """The same for the settings written into each row, max_tries and priority (dispatch too)."""
    for name, value, low, high in (
        ("max_tries", cls.max_tries, 1, INT4_MAX),
        ("priority", cls.priority, INT4_MIN, INT4_MAX),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return (
                f"{name} must be an integer from {low} to {high} (PostgreSQL's integer), "
                f"got {brief_repr(value)}"
            )
    return None


def _timing_problem(cls: type[Job]) -> str | None:
    if not _is_seconds(cls.timeout) or cls.timeout == 0:
        return (
            f"timeout must be a finite number of seconds > 0 and at most "
            f"{MAX_DURATION_SECONDS:.0f} (100 years), got {brief_repr(cls.timeout)}"
        )
    return _retry_after_problem(cls.retry_after)


def _retry_after_problem(value: object) -> str | None:
    if value is None:
        return None
    delays = [value] if isinstance(value, int | float) else value
    if isinstance(delays, str | bytes) or not isinstance(delays, Sequence) or not delays:
        return (
            "retry_after must be seconds, a non-empty list of seconds or None, "
            f"got {brief_repr(value)}"
        )
    if not all(_is_seconds(delay) for delay in delays):
        return (
            f"retry_after delays must be finite numbers of seconds from 0 to "
            f"{MAX_DURATION_SECONDS:.0f} (100 years), got {brief_repr(value)}"
        )
    return None


def _error_classes_problem(cls: type[Job]) -> str | None:
    """`name what-is-wrong` for `retry_on` or `fail_on`; None when both are fine."""
    for name in ("retry_on", "fail_on"):
        value = getattr(cls, name)
        if value is None:
            continue
        if isinstance(value, type) and issubclass(value, BaseException):
            return (
                f"{name} must be a tuple of exception classes: write `{name} = ({value.__name__},)`"
            )
        if not isinstance(value, tuple) or not all(
            isinstance(item, type) and issubclass(item, BaseException) for item in value
        ):
            return f"{name} must be a tuple of exception classes (or None), got {brief_repr(value)}"
    return None


def _unique_problem(cls: type[Job]) -> str | None:
    """`name what-is-wrong` for `unique` or `unique_while`; None when both are fine."""
    unique = cls.unique
    if unique is not True and unique is not False:
        if isinstance(unique, str) or not isinstance(unique, tuple | list) or not unique:
            hint = f" (one field is written `({unique!r},)`)" if isinstance(unique, str) else ""
            return (
                "unique must be a tuple of payload field names, True (the whole payload) or "
                f"False, got {brief_repr(unique)}{hint}"
            )
        for name in unique:
            if not isinstance(name, str):
                return f"unique names payload fields by name (strings), got {brief_repr(name)}"
            if name not in cls.model_fields:
                close = difflib.get_close_matches(name, list(cls.model_fields), n=1)
                return (
                    f"unique names {name!r}, which is not a payload field of the class"
                    + (f": did you mean {close[0]!r}?" if close else "")
                    + f" (its fields: {', '.join(cls.model_fields) or 'none'})"
                )
    if not isinstance(cls.unique_while, str) or cls.unique_while not in UNIQUE_WHILE:
        return (
            'unique_while must be "queued" (the key is held until a worker claims the job) or '
            f'"active" (until the job ends), got {brief_repr(cls.unique_while)}'
        )
    return None


@dataclasses.dataclass(frozen=True)
class JobLimits:
    """A job type's own limits, as the limited claim takes them (docs/limits.md).

    Parameters:
        concurrency: at most this many leased at once across all workers, or None.
        rate_limit: at most this many starts per `rate_period_seconds`, or None.
        rate_period_seconds: 1, 60 or 3600 with a rate limit, else None.
        limit_field: the payload field both apply per value of, or None (the whole type).
    """

    concurrency: int | None
    rate_limit: int | None
    rate_period_seconds: int | None
    limit_field: str | None


def parse_rate_limit(value: str) -> tuple[int, int]:
    """`"100/m"` -> (100, 60): starts allowed and the period in seconds; ValueError if malformed."""
    match = _RATE_LIMIT.match(value)
    if match is None:
        raise ValueError(
            f'a rate limit is "N/s", "N/m" or "N/h" with N a whole number from 1, got {value!r}'
        )
    return int(match.group(1)), RATE_PERIODS[match.group(2)]


def job_limits(job_class: type[Job]) -> JobLimits | None:
    """The limits `job_class` declares, or None when it declares none (checked at definition)."""
    if job_class.concurrency is None and job_class.rate_limit is None:
        return None
    rate, period = (
        (None, None) if job_class.rate_limit is None else parse_rate_limit(job_class.rate_limit)
    )
    return JobLimits(job_class.concurrency, rate, period, job_class.limit_key)


def _limits_problem(cls: type[Job]) -> str | None:
    """`name what-is-wrong` for `concurrency`, `rate_limit` or `limit_key`; None when fine."""
    concurrency = cls.concurrency
    if concurrency is not None and (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= INT4_MAX
    ):
        return (
            f"concurrency must be a whole number of jobs from 1 (or None), "
            f"got {brief_repr(concurrency)}"
        )
    if cls.rate_limit is not None:
        if not isinstance(cls.rate_limit, str):
            return f'rate_limit must be a string such as "100/m", got {brief_repr(cls.rate_limit)}'
        try:
            parse_rate_limit(cls.rate_limit)
        except ValueError as exc:
            return f"rate_limit: {exc}"
    key = cls.limit_key
    if key is None:
        return None
    if not isinstance(key, str):
        return f"limit_key names one payload field (a string), got {brief_repr(key)}"
    if key not in cls.model_fields:
        close = difflib.get_close_matches(key, list(cls.model_fields), n=1)
        return (
            f"limit_key names {key!r}, which is not a payload field of the class"
            + (f": did you mean {close[0]!r}?" if close else "")
            + f" (its fields: {', '.join(cls.model_fields) or 'none'})"
        )
    if concurrency is None and cls.rate_limit is None:
        return "limit_key needs a limit to apply per key: set concurrency or rate_limit too"
    return None


def _is_seconds(value: object) -> bool:
    """Whether `value` is a number of seconds from 0 to MAX_DURATION_SECONDS (NaN is not)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value <= MAX_DURATION_SECONDS
    )


def brief_repr(value: object, limit: int = 60) -> str:
    """A repr for an error message, cut to `limit` characters (never raising, even for huge ints)."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:  # past 4300 digits repr() raises
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except Exception:  # a user value's broken __repr__ must not hide the real error
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _register(cls: type[Job]) -> None:
    existing = _registry.get(cls.job_name)
    # Re-running a class body (importlib.reload, a notebook cell) replaces the old class.
    same_definition = existing is not None and (
        existing.__module__,
        existing.__qualname__,
    ) == (cls.__module__, cls.__qualname__)
    if existing is not None and not same_definition:
        raise JobDefinitionError(
            f"job name {cls.job_name!r} is used by both {existing.__module__}."
            f"{existing.__qualname__} and {cls.__module__}.{cls.__qualname__}; give one of them "
            "a distinct `job_name`"
        )
    _registry[cls.job_name] = cls


def job_type(name: str) -> type[Job] | None:
    """The registered job class stored under `name`, or None if no imported module defines it."""
    return _registry.get(name)


def registered_job_types() -> Mapping[str, type[Job]]:
    """A read-only view of every job type defined by the modules imported so far."""
    return dict(_registry)


def validate_queue_name(queue: object) -> str:
    """Return `queue` if it can name a queue: non-empty, at most 63 bytes, no control characters."""
    if isinstance(queue, str) and queue in _valid_queue_names:
        return queue
    _check_queue_name(queue)
    assert isinstance(queue, str)
    if len(_valid_queue_names) < 10_000:  # a handful in practice; bounded all the same
        _valid_queue_names.add(queue)
    return queue


_valid_queue_names: set[str] = set()


def _check_queue_name(queue: object) -> None:
    if not isinstance(queue, str) or not queue:
        raise InvalidQueueNameError(
            f"queue name must be a non-empty string, got {brief_repr(queue)}"
        )
    size = _utf8_size(queue)
    if size is None:
        raise InvalidQueueNameError(
            f"queue name {brief_repr(queue)} holds a lone surrogate, which is not valid Unicode; "
            "use plain text"
        )
    if size > MAX_QUEUE_NAME_BYTES:
        raise InvalidQueueNameError(
            f"queue name {queue[:20]!r}... is {size} bytes; the limit is {MAX_QUEUE_NAME_BYTES}"
        )
    if _has_control_character(queue):
        raise InvalidQueueNameError(f"queue name {brief_repr(queue)} holds control characters")


def _utf8_size(text: str) -> int | None:
    """The UTF-8 length of `text`, or None if it holds a lone surrogate (no UTF-8 form)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return None


def _has_control_character(text: str) -> bool:
    return any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in text)


# A name that reads as a number ("42", "-1.5", "1e3") would be mistaken for a job id.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_valid_job_names: set[str] = set()


def _job_name_problem(name: object) -> str | None:
    """What is wrong with `name` as a stored job type name, or None if it is fine."""
    if not isinstance(name, str):
        return f"must be a string such as 'billing.send_invoice', got {brief_repr(name)}"
    if not name.strip():
        return f"must not be empty or only whitespace, got {name!r}"
    if name != name.strip():
        return f"must not start or end with whitespace, got {name!r}"
    if _NUMBER.fullmatch(name):
        return (
            f"must not be a number ({name!r} reads like a job id); use a dotted name such as "
            "'billing.send_invoice'"
        )
    if _has_control_character(name):
        return f"must not hold control characters, got {brief_repr(name)}"
    size = _utf8_size(name)
    if size is None:
        return f"holds a lone surrogate, which is not valid Unicode, got {brief_repr(name)}"
    if size > MAX_JOB_NAME_BYTES:
        return f"is {size} bytes; the limit is {MAX_JOB_NAME_BYTES}, got {brief_repr(name)}"
    return None


def _checked_job_name(job_class: type[Job], name: object) -> str:
    problem = _job_name_problem(name)
    if problem:
        raise InvalidJobNameError(
            f"{job_class.__name__}.job_name {problem}; "
            + (
                "dispatch a subclass of Job, not Job itself"
                if job_class is Job
                else "it passed when the class was defined, so it was reassigned since: set it "
                "back to a valid name"
            )
        )
    assert isinstance(name, str)
    if len(_valid_job_names) < 10_000:  # a handful in practice; bounded all the same
        _valid_job_names.add(name)
    return name


def dispatch_settings(job_class: type[Job]) -> tuple[str, str, int, int]:
    """The (queue, job_name, priority, max_tries) to store for `job_class`, checked again.

    They were checked when the class was defined, but a class attribute can be reassigned at any
    time; a value that pgqueue cannot store is refused here, before any SQL, with
    InvalidQueueNameError, InvalidJobNameError or InvalidJobSettingError. `timeout` and
    `retry_after` are not stored (a worker uses its own class's), so only definition checks them.
    The usual case costs two set lookups and a few type and range comparisons.
    """
    queue = validate_queue_name(job_class.queue)
    name = getattr(job_class, "job_name", None)  # the Job base class itself has none
    if not (isinstance(name, str) and name in _valid_job_names):
        name = _checked_job_name(job_class, name)
    priority, max_tries = job_class.priority, job_class.max_tries
    if (
        type(priority) is int
        and INT4_MIN <= priority <= INT4_MAX
        and type(max_tries) is int
        and 1 <= max_tries <= INT4_MAX
    ):
        return queue, name, priority, max_tries
    problem = _stored_settings_problem(job_class)
    if problem:
        raise InvalidJobSettingError(
            f"{job_class.__name__}.{problem}; it passed when the class was defined, so it was "
            "reassigned since: set it back to a valid value"
        )
    return queue, name, int(priority), int(max_tries)  # int() turns an IntEnum into a plain int


# Per class: (unique, unique_while) as last checked, and what they mean (see unique_settings).
_unique_settings: dict[type[Job], tuple[object, object, tuple[tuple[str, ...] | None, str]]] = {}


def unique_settings(job_class: type[Job]) -> tuple[tuple[str, ...] | None, str]:
    """(the fields forming the key, unique_while) for `job_class`, checked again at dispatch.

    The fields come sorted; `()` means the whole payload, None that the class is not unique. A
    value reassigned since definition that pgqueue cannot use raises InvalidJobSettingError.
    """
    unique, unique_while = job_class.unique, job_class.unique_while
    cached = _unique_settings.get(job_class)
    if cached is not None and cached[0] is unique and cached[1] is unique_while:
        return cached[2]
    problem = _unique_problem(job_class)
    if problem:
        raise InvalidJobSettingError(
            f"{job_class.__name__}.{problem}; it passed when the class was defined, so it was "
            "reassigned since: set it back to a valid value"
        )
    fields: tuple[str, ...] | None
    if unique is False:
        fields = None
    elif unique is True:
        fields = ()
    else:
        assert isinstance(unique, tuple | list)
        fields = tuple(sorted(set(unique)))
    assert isinstance(unique_while, str)
    _unique_settings[job_class] = (unique, unique_while, (fields, unique_while))
    return fields, unique_while


def derived_unique_key(job: Job, fields: tuple[str, ...]) -> str:
    """The key text of a unique job: its `fields` (all of them for `()`) as canonical JSON, keys
    sorted and named by field, so equal values give equal keys whatever their order or aliases."""
    values = job.model_dump(mode="json", include=set(fields) if fields else None, by_alias=False)
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_unique_key(job_name: str, key: str) -> str:
    """What `jobs.unique_key` stores: the SHA-256 (hex) of the job name and the key, a newline
    between (job names hold no control characters), so keys are scoped per job type and index
    alike whatever their length."""
    return hashlib.sha256(f"{job_name}\n{key}".encode()).hexdigest()


def encode_payload(job: Job, max_bytes: int) -> str:
    """The job's payload as JSON text, refusing what JSONB or a worker could not take back.

    Refused, each with an UnserializablePayloadError (or the subclass named) whose message names
    the field when it can: a value pydantic cannot serialise (an unknown type, a lone surrogate,
    bytes that are not UTF-8), NaN or infinity, a NUL character in a key or a value, an integer of
    more than MAX_PAYLOAD_INT_DIGITS digits, nesting deeper than MAX_PAYLOAD_DEPTH or a cycle
    (PayloadTooDeepError), a secret (SecretInPayloadError), more than `max_bytes` of JSON
    (PayloadTooLargeError).

    The fast path is pydantic's own serializer and a few substring tests on its output. The exact,
    slower checks run only when a cheap test says they might matter: a field type that may hold a
    secret or a cycle (walked, iteratively), a `NaN`/`Infinity`/`\\u0000` token, a text long
    enough to nest too deep or to hold too long an integer.
    """
    job_class = type(job)
    may_hold_secret = _may_hold_secret.get(job_class)
    if may_hold_secret is None:
        may_hold_secret = _may_hold_secret[job_class] = _can_hold_secret(job_class)
    if may_hold_secret:
        _walk_payload(job, max_bytes)
    try:
        # str tests below, not bytes: `in` on a short bytes object costs several times more.
        text: str = job.__pydantic_serializer__.to_json(job).decode()
    except PydanticSerializationError as exc:
        raise _unserializable(job, exc) from exc
    if ("NaN" in text or "Infinity" in text) and _json_shape(text)[2]:
        where = _culprit(job, lambda part: part is not None and _json_shape(part)[2])
        raise UnserializablePayloadError(
            f"{where} holds NaN or infinity, which JSON cannot store; use None or a finite number"
        )
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        where = _culprit(job, lambda part: part is not None and bool(_ESCAPED_NUL.search(part)))
        raise UnserializablePayloadError(
            f"{where} holds a NUL character (in a key or a value), which PostgreSQL's JSONB "
            "cannot store; remove it, e.g. text.replace('\\x00', '')"
        )
    size = len(text) if text.isascii() else len(text.encode())
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"{job_class.__name__}: payload is {size} bytes, over the {max_bytes}-byte limit; "
            "store large data elsewhere and pass its id (or raise PGQUEUE_MAX_PAYLOAD_BYTES)"
        )
    # Nesting past the limit needs that many opening brackets; an integer past it, that many digits.
    if (
        size > 2 * MAX_PAYLOAD_DEPTH
        and text.count("[") + text.count("{") > MAX_PAYLOAD_DEPTH
        and _json_shape(text)[0] > MAX_PAYLOAD_DEPTH
    ):
        where = _culprit(
            job, lambda part: part is not None and _json_shape(part)[0] > MAX_PAYLOAD_DEPTH
        )
        raise PayloadTooDeepError(
            f"{where} is nested more than {MAX_PAYLOAD_DEPTH} levels deep, which workers "
            "cannot load back; flatten it"
        )
    if size > MAX_PAYLOAD_INT_DIGITS and _LONG_DIGITS.search(text):
        digits = _json_shape(text)[1]
        if digits > MAX_PAYLOAD_INT_DIGITS:
            where = _culprit(
                job,
                lambda part: part is not None and _json_shape(part)[1] > MAX_PAYLOAD_INT_DIGITS,
            )
            raise UnserializablePayloadError(
                f"{where} holds an integer of {digits} digits; workers read payloads with "
                f"parsers that refuse integers over {MAX_PAYLOAD_INT_DIGITS} digits: store it as "
                "a str"
            )
    return text


# A run of digits longer than MAX_PAYLOAD_INT_DIGITS, matched from its first digit only (linear).
_LONG_DIGITS = re.compile(f"(?<![0-9])[0-9]{{{MAX_PAYLOAD_INT_DIGITS + 1}}}")
# JSON tokens that matter to _json_shape: strings (skipped whole), brackets, numbers, NaN/Infinity.
_JSON_TOKEN = re.compile(
    r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{\]}]|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|-?Infinity'
)


def _json_shape(text: str) -> tuple[int, int, bool]:
    """(deepest nesting, most digits of one integer, whether NaN/Infinity occur) of JSON text.

    Only tokens outside strings count, so a string holding "[[[" or "NaN" is not mistaken.
    """
    depth = deepest = longest = 0
    non_finite = False
    for token in _JSON_TOKEN.findall(text):
        first = token[0]
        if first == '"':
            continue
        if first in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif first in "]}":
            depth -= 1
        elif token[-1] in "Ny":
            non_finite = True
        elif token.lstrip("-").isdigit():
            longest = max(longest, len(token.lstrip("-")))
    return deepest, longest, non_finite


def _culprit(job: Job, holds: Callable[[str | None], bool]) -> str:
    """`Class.field` for the first payload field whose JSON on its own `holds` the problem
    (`None` when that field alone cannot be serialised), else just `Class`. Slow path only."""
    names = [*type(job).model_fields, *(job.__pydantic_extra__ or {})]
    for name in names:
        try:
            part: str | None = job.model_dump_json(include={name})
        except PydanticSerializationError:
            part = None
        if holds(part):
            return f"{type(job).__name__}.{name}"
    return type(job).__name__


def _unserializable(job: Job, exc: PydanticSerializationError) -> UnserializablePayloadError:
    """The error to raise when pydantic cannot serialise `job`, saying which field and why."""
    message = str(exc)
    where = _culprit(job, lambda part: part is None)
    if "surrogates not allowed" in message:
        return UnserializablePayloadError(
            f"{where} holds a lone surrogate (text that is not valid Unicode, often from a "
            "decode with errors='surrogateescape'), which has no UTF-8 form; clean it first, "
            "e.g. text.encode('utf-8', 'replace').decode()"
        )
    if "invalid utf-8" in message:
        return UnserializablePayloadError(
            f"{where} holds bytes that are not UTF-8, and JSON stores bytes as UTF-8 text; "
            "decode them yourself, or store base64 (model_config = ConfigDict("
            "ser_json_bytes='base64', val_json_bytes='base64'))"
        )
    if "depth exceeded" in message or "Circular reference" in message:
        return PayloadTooDeepError(
            f"{where} is nested more than {MAX_PAYLOAD_DEPTH} levels deep or contains itself, "
            "which JSON cannot store; flatten it"
        )
    return UnserializablePayloadError(
        f"{where} holds a value pydantic cannot serialise to JSON ({brief_repr(message, 200)}); "
        "give the field a JSON-compatible type or a field_serializer"
    )


# Field types that can never hold a SecretStr/SecretBytes value, so dispatch can skip the walk.
_PLAIN_TYPES: tuple[type, ...] = (
    int,
    float,
    str,
    bytes,
    bool,
    type(None),
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
    enum.Enum,
)


# Whether a job class's fields can hold a secret (or a cycle), by class: filled on first dispatch.
# A dict, not functools.cache: this lookup runs once per job, and the dict is twice as fast.
_may_hold_secret: dict[type[Job], bool] = {}


def _can_hold_secret(job_class: type[Job]) -> bool:
    if job_class.model_config.get("extra") == "allow":
        return True
    return not all(_is_plain(field.annotation) for field in job_class.model_fields.values())


def _is_plain(annotation: Any) -> bool:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return issubclass(annotation, _PLAIN_TYPES) and not issubclass(
            annotation, SecretStr | SecretBytes
        )
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin in (list, tuple, set, frozenset, dict, typing.Union, types.UnionType):
        return all(arg is Ellipsis or _is_plain(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_plain(typing.get_args(annotation)[0])
    return False


# Exact types the payload walk steps over at once: they can hold neither a secret nor a cycle.
_LEAF_TYPES = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        decimal.Decimal,
    }
)
_Items = Iterator[tuple[Any, Any]]


def _walk_payload(job: Job, max_bytes: int) -> None:
    """Refuse a secret, a cycle or nesting past MAX_PAYLOAD_DEPTH anywhere in the payload.

    It walks models, dataclasses, mappings and sequences with an explicit stack, so no payload can
    make it raise RecursionError, and stops after `max_bytes` containers: each costs at least a
    byte of JSON, and a structure that shares one list many times over would otherwise take
    exponential time. A quick walk that keeps no path goes first; the exact one, which can say
    where the problem is, runs only when the quick one saw something.
    """
    if _looks_clean(job, max_bytes):
        return
    # One frame per open container: its (key, value) iterator and whether keys are attributes.
    frames: list[tuple[_Items, bool]] = [(_fields_of(job), True)]
    keys: list[Any] = [None]  # the key being visited in each frame, for the error's path
    open_ids: dict[int, None] = {id(job): None}  # containers on the current path (a cycle test)
    budget = max_bytes
    while frames:
        for key, value in frames[-1][0]:
            if type(value) in _LEAF_TYPES:
                continue
            keys[-1] = key
            if isinstance(value, SecretStr | SecretBytes):
                raise SecretInPayloadError(
                    f"{type(job).__name__}: {_path(frames, keys)} holds a secret value; store an "
                    "identifier instead"
                )
            children = _children_of(value)
            if children is None:
                continue
            if id(value) in open_ids:
                raise PayloadTooDeepError(
                    f"{type(job).__name__}: {_path(frames, keys)} contains itself (a cycle), "
                    "which JSON cannot store; break the cycle"
                )
            if len(frames) >= MAX_PAYLOAD_DEPTH:
                raise PayloadTooDeepError(
                    f"{type(job).__name__}: {_path(frames, keys)} is nested more than "
                    f"{MAX_PAYLOAD_DEPTH} levels deep, which workers cannot load back; flatten it"
                )
            budget -= 1
            if budget < 0:
                raise PayloadTooLargeError(
                    f"{type(job).__name__}: the payload holds more than {max_bytes} lists, dicts "
                    f"and models, so its JSON is over the {max_bytes}-byte limit; store large data "
                    "elsewhere and pass its id (or raise PGQUEUE_MAX_PAYLOAD_BYTES)"
                )
            frames.append(children)
            keys.append(None)
            open_ids[id(value)] = None
            break
        else:
            frames.pop()
            keys.pop()
            open_ids.popitem()


def _looks_clean(job: Job, max_bytes: int) -> bool:
    """Whether a quick walk finds no secret, no nesting past MAX_PAYLOAD_DEPTH and no more than
    `max_bytes` containers (a cycle shows as one of the last two). It may see more values than
    are serialised, never fewer, so True is certain and False only asks for the exact walk."""
    pending: list[tuple[Iterable[Any], int]] = [(_values_of(job), 1)]
    budget = max_bytes
    while pending:
        values, depth = pending.pop()
        for value in values:
            kind = type(value)
            if kind in _LEAF_TYPES:
                continue
            inner: Iterable[Any]
            if kind is list or kind is tuple:
                inner = value
            elif kind is dict:
                inner = value.values()
            elif isinstance(value, SecretStr | SecretBytes):
                return False
            else:
                children = _children_of(value)
                if children is None:
                    continue
                inner = [item for _, item in children[0]]
            budget -= 1
            if depth >= MAX_PAYLOAD_DEPTH or budget < 0:
                return False
            pending.append((inner, depth + 1))
    return True


def _values_of(model: BaseModel) -> Iterable[Any]:
    """Every attribute value a model holds: its fields (in `__dict__`) and its extras."""
    extra = model.__pydantic_extra__
    values = model.__dict__.values()
    return [*values, *extra.values()] if extra else values


def _children_of(value: Any) -> tuple[_Items, bool] | None:
    """An iterator over `value`'s (key, item) pairs and whether keys are attributes; None for a
    leaf. The exact built-in types are tested first: they are nearly all a payload holds."""
    kind = type(value)
    if kind is list or kind is tuple:
        return enumerate(value), False
    if kind is dict:
        return iter(value.items()), False
    if isinstance(value, BaseModel):
        return _fields_of(value), True
    if isinstance(value, Mapping):
        return iter(value.items()), False
    if isinstance(value, list | tuple | set | frozenset):
        return enumerate(value), False
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return ((field.name, getattr(value, field.name)) for field in fields), True
    return None


def _fields_of(model: BaseModel) -> _Items:
    for name in [*type(model).model_fields, *(model.__pydantic_extra__ or {})]:
        yield name, getattr(model, name)


def _path(frames: list[tuple[_Items, bool]], keys: list[Any], limit: int = 160) -> str:
    """Where the walk is, as `payload.field[0]['key']`, shortened in the middle past `limit`."""
    parts = ["payload"]
    for (_, attributes), key in zip(frames, keys, strict=True):
        parts.append(f".{key}" if attributes else f"[{brief_repr(key, 40)}]")
    path = "".join(parts)
    return path if len(path) <= limit else f"{path[: limit // 2]}...{path[-limit // 2 :]}"


def load_job(
    job_class: type[Job], payload: str | bytes | Mapping[str, Any], job_id: int, attempts: int
) -> Job:
    """Rebuild a stored job, validating its payload again (the class may have changed since).

    A worker passes the row's JSON text: pydantic parses and validates it in one pass, and its
    parser refuses what would crash Python's (nesting past its recursion limit, numbers past the
    int conversion limit) with a ValidationError instead.
    """
    if isinstance(payload, str | bytes):
        job = job_class.model_validate_json(payload)
    else:
        job = job_class.model_validate(payload)
    set_identity(job, job_id, attempts)
    return job


def set_identity(job: Job, job_id: int, attempts: int = 0) -> None:
    """Record the row id (and attempt) on a job; direct, since this runs once per job on hot paths."""
    private = job.__pydantic_private__
    if private is None:  # no private attributes declared by the class: the usual case
        object.__setattr__(job, "__pydantic_private__", {_JOB_ID: job_id, _ATTEMPTS: attempts})
    else:
        private[_JOB_ID] = job_id
        private[_ATTEMPTS] = attempts


def retry_delay(retry_after: RetryAfter, attempt: int) -> float:
    """Seconds to wait before retrying after failed attempt number `attempt` (1-based).

    A number is a fixed delay; a list gives the delay per attempt, its last entry repeating; None is
    exponential backoff (1 s, 2 s, 4 s, ... capped at an hour), each drawn at random from its upper
    half, so a burst of failures does not retry in lockstep.
    """
    if retry_after is None:
        # The exponent is bounded first: 2.0**1024 overflows a float long before the cap applies.
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(attempt - 1, 64))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
    if isinstance(retry_after, int | float):
        return float(retry_after)
    return float(retry_after[min(attempt, len(retry_after)) - 1])


# ---- results and progress (docs/results.md) ------------------------------------------------

# Per class: keep_result as last checked and its seconds (see keep_result_seconds).
_keep_seconds: dict[type[Job], tuple[object, float]] = {}


def keep_result_seconds(job_class: type[Job]) -> float | None:
    """How long a completed job of `job_class` keeps its result, in seconds; None: not kept.

    Raises ValueError (saying which forms are accepted) for a `keep_result` pgqueue cannot use:
    checked when the class is defined, and again if it was reassigned since. The usual case is
    a class attribute read (None) or one dict lookup.
    """
    value = job_class.keep_result
    if value is None:
        return None
    cached = _keep_seconds.get(job_class)
    if cached is not None and cached[0] is value:
        return cached[1]
    seconds = _keep_duration(value)
    _keep_seconds[job_class] = (value, seconds)
    return seconds


def _keep_duration(value: object) -> float:
    forms = 'a duration such as "7d", "12h", "30m" or "45s", a number of seconds or a timedelta'
    seconds: float
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        # The form retention and --older-than take; imported here, once per class, so a module
        # that only defines jobs does not load pydantic-settings.
        from pgqueue.settings import parse_duration

        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ValueError(
                f"must be {forms} (None keeps nothing), got {brief_repr(value)}"
            ) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value  # compared before any float(): an int may be too big for one
    else:
        raise ValueError(f"must be {forms} (None keeps nothing), got {brief_repr(value)}")
    if not 0 < seconds <= MAX_DURATION_SECONDS:  # NaN fails this too
        raise ValueError(
            f"must be longer than 0 and at most {MAX_DURATION_SECONDS:.0f} seconds (100 years), "
            f"got {brief_repr(value)}; None keeps nothing"
        )
    return float(seconds)


def encode_result(job_class: type[Job], value: Any) -> str:
    """What `handle` returned, as the JSON text job_results stores, or InvalidResultError.

    Anything pydantic serialises is taken (dicts, lists, tuples, text, numbers, None, pydantic
    models, dataclasses, datetimes, UUIDs ...). Refused, as for payloads: a value it cannot
    serialise (an unknown type, a lone surrogate, a cycle), NaN or infinity, a NUL character
    (JSONB cannot hold one), nesting past MAX_PAYLOAD_DEPTH, an integer of more than
    MAX_PAYLOAD_INT_DIGITS digits (readers could not load it back), and more than
    MAX_RESULT_BYTES of JSON.
    """
    where = f"{job_class.__name__}.handle() returned"
    try:
        text: str = pydantic_core.to_json(value, inf_nan_mode="constants").decode()
    except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidResultError(
            f"{where} {brief_repr(value)}, which cannot be kept as JSON "
            f"({brief_repr(str(exc), 200)}); return JSON-compatible data (dicts, lists, text, "
            "numbers, pydantic models), or unset keep_result"
        ) from None
    problem = None
    size = len(text) if text.isascii() else len(text.encode())
    if size > MAX_RESULT_BYTES:
        problem = (
            f"{size} bytes of JSON, over the {MAX_RESULT_BYTES}-byte limit for a kept result; "
            "store large data elsewhere and return where it is"
        )
    elif ("NaN" in text or "Infinity" in text) and _json_shape(text)[2]:
        problem = "NaN or infinity, which JSON cannot store; use None or a finite number"
    elif "\\u0000" in text and _ESCAPED_NUL.search(text):
        problem = "a NUL character, which PostgreSQL's JSONB cannot store; remove it"
    elif text.count("[") + text.count("{") > MAX_PAYLOAD_DEPTH or _LONG_DIGITS.search(text):
        deepest, digits, _ = _json_shape(text)
        if deepest > MAX_PAYLOAD_DEPTH:
            problem = f"data nested more than {MAX_PAYLOAD_DEPTH} levels deep; flatten it"
        elif digits > MAX_PAYLOAD_INT_DIGITS:
            problem = f"an integer of {digits} digits, more than readers load back; return a str"
    if problem is not None:
        raise InvalidResultError(f"{where} {problem}")
    return text


def store_result(job: Job, value: Any) -> None:
    """Keep what `job.handle()` returned on the job for the worker to write, if its class sets
    `keep_result` (else nothing, at the cost of a class attribute read). Raises
    InvalidResultError for a value that cannot be stored."""
    if type(job).keep_result is None:
        return
    store_encoded_result(job, encode_result(type(job), value))


def store_encoded_result(job: Job, text: str) -> None:
    """`store_result` for a result already encoded (by a blocking job's child process)."""
    try:
        seconds = keep_result_seconds(type(job))
    except ValueError as exc:
        raise InvalidJobSettingError(
            f"{type(job).__name__}.keep_result {exc}; it passed when the class was defined, so "
            "it was reassigned since: set it back to a valid value"
        ) from None
    if seconds is None:
        return
    private = job.__pydantic_private__
    if private is None:
        object.__setattr__(job, "__pydantic_private__", {_RESULT: (text, seconds)})
    else:
        private[_RESULT] = (text, seconds)


def stored_result(job: Job) -> tuple[str, float] | None:
    """The (JSON text, seconds to keep) `store_result` kept on `job`; None when nothing is."""
    private = job.__pydantic_private__
    return None if private is None else private.get(_RESULT)


ProgressReport = tuple[float, str | None]


def checked_progress(fraction: object, message: object = None) -> ProgressReport:
    """(fraction, message) as `Job.progress` stores them, or InvalidProgressError saying why.

    The message is cut to MAX_PROGRESS_MESSAGE_CHARS; the worker makes it storable text.
    """
    value = -1.0
    if type(fraction) is float:  # the usual case, tested first: a handler may call this often
        value = fraction
    elif isinstance(fraction, numbers.Real) and not isinstance(fraction, bool):
        with contextlib.suppress(OverflowError):  # an int too big for a float is out of range
            value = float(fraction)
    if not 0 <= value <= 1:  # NaN fails this too
        raise InvalidProgressError(
            f"progress() takes a fraction from 0 to 1 (0.4 for 40%), got {brief_repr(fraction)}"
        )
    if message is not None and not isinstance(message, str):
        raise InvalidProgressError(
            f"progress() takes a message as text (or None), got {brief_repr(message)}"
        )
    if message is not None and len(message) > MAX_PROGRESS_MESSAGE_CHARS:
        message = message[: MAX_PROGRESS_MESSAGE_CHARS - 3] + "..."
    return value, message


def reported_progress(job: Job) -> ProgressReport | None:
    """The latest (fraction, message) `job.progress()` reported; None if it never did. Each
    report is a new tuple, so `is` tells a new report from one already sent."""
    private = job.__pydantic_private__
    return None if private is None else private.get(_PROGRESS)


def record_progress(job: Job, report: ProgressReport) -> None:
    """Record a report made elsewhere (a blocking job's child process) as `job`'s latest."""
    private = job.__pydantic_private__
    if private is None:
        object.__setattr__(job, "__pydantic_private__", {_PROGRESS: report})
    else:
        private[_PROGRESS] = report


def send_progress_to(job: Job, sink: Callable[[ProgressReport], None]) -> None:
    """Call `sink` with each report `job.progress()` makes from now on (a child process sends
    them to its worker)."""
    private = job.__pydantic_private__
    if private is None:
        object.__setattr__(job, "__pydantic_private__", {_PROGRESS_SINK: sink})
    else:
        private[_PROGRESS_SINK] = sink
