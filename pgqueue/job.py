"""`Job`: the base class users subclass, the registry of job types, payload encoding and backoff.

A job is a pydantic model: its fields are the payload, validated when the job is created, on
assignment, and again when a worker loads the row back. Its class attributes (`queue`, `max_tries`,
`timeout`, `retry_after`, `priority`, `job_name`) describe how it runs and are never stored as payload.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import inspect
import json
import random
import re
import sys
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretBytes, SecretStr

from pgqueue.errors import (
    InvalidQueueNameError,
    JobDefinitionError,
    PayloadTooLargeError,
    SecretInPayloadError,
    UnserializablePayloadError,
)

RetryAfter = float | Sequence[float] | None
# A JSON-escaped NUL: \u0000 preceded by an even number of backslashes (an odd run is a literal).
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

RESERVED_NAMES = frozenset(
    {"queue", "max_tries", "timeout", "retry_after", "priority", "job_name", "job_id", "attempts"}
)
MAX_QUEUE_NAME_BYTES = 63
# The default backoff when `retry_after` is unset: base * 2**(attempt-1), capped, then jittered.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 3600.0

_registry: dict[str, type[Job]] = {}


class Job(BaseModel):
    """A unit of work: subclass it, declare payload fields, and implement `handle`.

    Class attributes (all optional):
        queue: the queue it is dispatched to (default "default").
        max_tries: attempts before it moves to `failed_jobs` (default 3).
        timeout: seconds one attempt may run (default 60).
        retry_after: seconds before a retry: a number (fixed), a list (per attempt, the last
            repeating), or None (default) for exponential backoff with jitter.
        priority: lower runs first within a queue (default 0).
        job_name: the stored type name (default `module.ClassName`); set it so renames keep working.
    """

    # NaN and infinity must reach encode_payload as floats so they are refused, not turned to null.
    model_config = ConfigDict(
        validate_assignment=True, extra="forbid", ser_json_inf_nan="constants"
    )

    queue: ClassVar[str] = "default"
    max_tries: ClassVar[int] = 3
    timeout: ClassVar[float] = 60
    retry_after: ClassVar[RetryAfter] = None
    priority: ClassVar[int] = 0
    job_name: ClassVar[str]

    _job_id: int | None = PrivateAttr(default=None)
    _attempts: int = PrivateAttr(default=0)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Runs before pydantic collects fields, so a reserved name gets our error, not its warning.
        clashes = RESERVED_NAMES & set(inspect.get_annotations(cls))
        if clashes:
            raise JobDefinitionError(
                f"{cls.__qualname__} declares payload field(s) {sorted(clashes)}, which are "
                "reserved job settings; rename the field(s)"
            )
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _check_definition(cls)
        if "job_name" not in cls.__dict__:
            cls.job_name = f"{_importable_module_name(cls)}.{cls.__qualname__}"
        _register(cls)

    @property
    def job_id(self) -> int | None:
        """The row id once dispatched or loaded by a worker; None before."""
        return self._job_id

    @property
    def attempts(self) -> int:
        """Which attempt this is, counting from 1 inside `handle`; 0 before the first claim."""
        return self._attempts

    def handle(self) -> Any:
        """Do the work. May be `def` (run in a child process the worker can kill) or `async def`."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle()")

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
    if not isinstance(cls.max_tries, int) or isinstance(cls.max_tries, bool) or cls.max_tries < 1:
        raise JobDefinitionError(f"{cls.__qualname__}.max_tries must be an integer >= 1")
    if not isinstance(cls.timeout, int | float) or cls.timeout <= 0:
        raise JobDefinitionError(f"{cls.__qualname__}.timeout must be a number of seconds > 0")
    if not isinstance(cls.priority, int):
        raise JobDefinitionError(f"{cls.__qualname__}.priority must be an integer")
    _check_retry_after(cls)


def _check_retry_after(cls: type[Job]) -> None:
    value = cls.retry_after
    if value is None:
        return
    delays = [value] if isinstance(value, int | float) else value
    if isinstance(delays, str) or not isinstance(delays, Sequence) or not delays:
        raise JobDefinitionError(
            f"{cls.__qualname__}.retry_after must be seconds, a non-empty list of seconds, or None"
        )
    if any(not isinstance(d, int | float) or isinstance(d, bool) or d < 0 for d in delays):
        raise JobDefinitionError(f"{cls.__qualname__}.retry_after delays must be numbers >= 0")


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
        raise InvalidQueueNameError(f"queue name must be a non-empty string, got {queue!r}")
    if len(queue.encode()) > MAX_QUEUE_NAME_BYTES:
        raise InvalidQueueNameError(
            f"queue name {queue[:20]!r}... is {len(queue.encode())} bytes; the limit is "
            f"{MAX_QUEUE_NAME_BYTES}"
        )
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in queue):
        raise InvalidQueueNameError(f"queue name {queue!r} holds control characters")


def encode_payload(job: Job, max_bytes: int) -> str:
    """The job's payload as JSON text, refusing what JSONB or the queue must not hold.

    The fast path is pydantic's own serializer; the slower, exact checks run only when a cheap
    test says they might matter (a field that may hold a secret, a `NaN`/`Infinity` token).
    """
    job_class = type(job)
    if _may_hold_secret(job_class):
        secret = _find_secret(job)
        if secret is not None:
            raise SecretInPayloadError(
                f"{job_class.__name__}: {secret} holds a secret value; store an identifier instead"
            )
    text = job.model_dump_json()
    if ("NaN" in text or "Infinity" in text) and _holds_non_finite_float(job):
        raise UnserializablePayloadError(
            f"{job_class.__name__}: the payload holds NaN or infinity, which JSON cannot store"
        )
    if _ESCAPED_NUL.search(text):
        raise UnserializablePayloadError(
            f"{job_class.__name__}: the payload holds a NUL character, which PostgreSQL's JSONB "
            "cannot store"
        )
    size = len(text) if text.isascii() else len(text.encode())
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"{job_class.__name__}: payload is {size} bytes, over the {max_bytes}-byte limit; "
            "store large data elsewhere and pass its id (or raise PGQUEUE_MAX_PAYLOAD_BYTES)"
        )
    return text


def _holds_non_finite_float(job: Job) -> bool:
    try:
        json.dumps(job.model_dump(mode="json"), allow_nan=False)
    except ValueError:
        return True
    return False


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


@functools.cache
def _may_hold_secret(job_class: type[Job]) -> bool:
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


def _find_secret(value: Any, path: str = "payload") -> str | None:
    """The path of the first SecretStr/SecretBytes inside `value`, walking models and containers."""
    if isinstance(value, SecretStr | SecretBytes):
        return path
    if isinstance(value, BaseModel):
        extra = value.__pydantic_extra__ or {}
        for name in [*type(value).model_fields, *extra]:
            found = _find_secret(getattr(value, name), f"{path}.{name}")
            if found:
                return found
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            found = _find_secret(getattr(value, item.name), f"{path}.{item.name}")
            if found:
                return found
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found = _find_secret(item, f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = _find_secret(item, f"{path}[{index}]")
            if found:
                return found
    return None


def load_job(job_class: type[Job], payload: Mapping[str, Any], job_id: int, attempts: int) -> Job:
    """Rebuild a stored job, validating its payload again (the class may have changed since)."""
    job = job_class.model_validate(payload)
    set_identity(job, job_id, attempts)
    return job


def set_identity(job: Job, job_id: int, attempts: int = 0) -> None:
    """Record the row id (and attempt) on a job; direct, since this runs once per job on hot paths."""
    private = job.__pydantic_private__
    assert private is not None
    private["_job_id"] = job_id
    private["_attempts"] = attempts


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
