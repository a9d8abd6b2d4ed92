"""What one attempt ended in, as a value, and error text that is always safe to store and log.

Running an attempt returns an `Outcome`; the worker's completer alone turns it into a statement,
a counter and a log line. `after_error` decides what an attempt that raised leads to (a snooze, a
retry, or giving up: `Snooze`, `retry_on`/`fail_on`, `after_failure`'s retry policy), shared by the
worker and `pgqueue.testing.run_job`.

A handler may raise anything: an exception whose text holds NUL or lone surrogates (which a
PostgreSQL `text` column refuses), whose `__str__` raises, or whose message is megabytes long.
`report_error` turns any exception into an `ErrorReport` whose text PostgreSQL accepts, capped at
`MAX_MESSAGE_CHARS` and `MAX_TRACEBACK_CHARS`, with every password masked.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgqueue.errors import InvalidResultError, InvalidSnoozeError, RemoteJobError
from pgqueue.job import (
    MAX_DURATION_SECONDS,
    RetryAfter,
    brief_repr,
    keep_result_seconds,
    retry_delay,
    stored_result,
)

if TYPE_CHECKING:
    from pgqueue.job import Job

# failed_jobs.exception_message and the error in a log line: enough for any real message.
MAX_MESSAGE_CHARS = 8 * 1024
# failed_jobs.traceback: the start (where it began) and the end (where it was raised) are kept.
MAX_TRACEBACK_CHARS = 64 * 1024
# A class name comes from code, but a hostile exception can still make it anything.
MAX_CLASS_NAME_CHARS = 512

Redact = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """An exception described in text PostgreSQL accepts: no NUL, valid UTF-8, capped, redacted."""

    class_name: str
    message: str
    traceback: str = ""

    @property
    def description(self) -> str:
        """`Class: message`, the form `jobs.last_error` uses."""
        return f"{self.class_name}: {self.message}" if self.message else self.class_name

    @property
    def log_text(self) -> str:
        """The description on one line, for the outcome's log line (`one_line`); the full text
        stays in `jobs.last_error` and `failed_jobs`."""
        return one_line(self.description)


@dataclass(frozen=True, slots=True)
class Completed:
    """`handle()` returned: the row is deleted with the next acknowledgement. For a type with
    `keep_result`, `result` is what it returned as JSON text, and the row moves to job_results
    for `keep_seconds` instead (`complete_kept_jobs`); None for every other type."""

    result: str | None = None
    keep_seconds: float = 0.0


# What nearly every attempt ends in: one value, so a plain completion builds nothing.
COMPLETED = Completed()


def completed(job: Job) -> Completed:
    """The outcome of an attempt of `job` whose handler returned: COMPLETED for a type without
    `keep_result` (one class attribute read), else the result `store_result` kept on the job
    (JSON null if none was: a middleware completed the attempt after the handler raised)."""
    if type(job).keep_result is None:
        return COMPLETED
    kept = stored_result(job)
    if kept is not None:
        return Completed(*kept)
    seconds = keep_result_seconds(type(job))
    return COMPLETED if seconds is None else Completed("null", seconds)


@dataclass(frozen=True, slots=True)
class Retry:
    """The attempt failed with tries left: back in the queue after `delay` seconds."""

    delay: float
    error: ErrorReport


@dataclass(frozen=True, slots=True)
class Failed:
    """No try is left (or the row cannot run at all): `failed()` has run; move to failed_jobs."""

    error: ErrorReport
    attempts: int


@dataclass(frozen=True, slots=True)
class Snoozed:
    """`handle()` raised `Snooze`: back in the queue after `seconds`, no try spent."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Released:
    """Shutdown took the job back before it finished: it returns untouched, no try spent."""


@dataclass(frozen=True, slots=True)
class Lost:
    """The worker no longer holds the lease (another worker may run it): nothing is written."""

    reason: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The job was cancelled while this worker held it (`pgqueue cancel`): it was stopped, or
    never started; moved to failed_jobs as `JobCancelledError` after `attempts` tries, and
    `failed()` is not run."""

    error: ErrorReport
    attempts: int


Outcome = Completed | Retry | Snoozed | Failed | Cancelled | Released | Lost


class Snooze(Exception):  # noqa: N818 (it reports nothing wrong: see below)
    """Raise `Snooze(seconds)` in `handle` to put the job back for `seconds`, spending no try.

    The job runs again after `seconds` (0 to 100 years) with its attempt count unchanged, as many
    times as it snoozes; `jobs.last_error` keeps what it was. It works in a `def handle` too (it
    crosses back from the child process). A value that is not seconds in that range raises
    `InvalidSnoozeError` where `Snooze` is built, which fails the attempt like any error.

    It is not a `PgQueueError`: it is how a handler chooses its outcome, not an error, so an
    `except PgQueueError` in the handler (around a dispatch, say) does not swallow it, and
    `retry_on`/`fail_on` never apply to it.
    """

    def __init__(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= MAX_DURATION_SECONDS  # NaN and infinity fail this too
        ):
            raise InvalidSnoozeError(
                f"Snooze takes seconds from 0 to {MAX_DURATION_SECONDS:.0f} (100 years), got "
                f"{brief_repr(seconds)}"
            )
        super().__init__(seconds)  # the args a child process pickles it back with
        self._seconds = float(seconds)

    @property
    def seconds(self) -> float:
        """How long the job waits before it runs again."""
        return self._seconds

    def __str__(self) -> str:
        return f"snoozed for {self._seconds:g} s"


def after_error(
    job_class: type[Job], error: BaseException, attempts: int, max_tries: int
) -> Snoozed | float | None:
    """What attempt number `attempts` ending in `error` leads to: `Snoozed` (it raised `Snooze`),
    the seconds before the next try, or None: give up now (`failed()`, then failed_jobs).

    It gives up when no try is left, or when the class's `retry_on`/`fail_on` say `error` does
    not retry (`retries`).
    """
    if isinstance(error, Snooze):
        return Snoozed(error.seconds)
    if not retries(job_class, error):
        return None
    return after_failure(job_class.retry_after, attempts, max_tries)


def retries(job_class: type[Job], error: BaseException) -> bool:
    """Whether `error` may retry: it is one of `retry_on` (when set) and none of `fail_on`.

    pgqueue's own attempt timeout is a `JobTimeoutError`, a `TimeoutError`. An exception from a
    `def handle` that could not cross back from its process as itself (a `RemoteJobError`)
    matches the class it was by that class's exact name. A result that cannot be kept
    (`InvalidResultError`) never retries: the same code returns the same value.
    """
    if _matches(error, (InvalidResultError,)):
        return False
    if job_class.fail_on is not None and _matches(error, job_class.fail_on):
        return False
    return job_class.retry_on is None or _matches(error, job_class.retry_on)


def _matches(error: BaseException, classes: tuple[type[BaseException], ...]) -> bool:
    if isinstance(error, classes):
        return True
    if isinstance(error, RemoteJobError):
        return any(error.class_name == f"{c.__module__}.{c.__qualname__}" for c in classes)
    return False


def after_failure(retry_after: RetryAfter, attempts: int, max_tries: int) -> float | None:
    """Seconds before the next try after failed attempt number `attempts`, or None: give up.

    At most `MAX_DURATION_SECONDS` (100 years): a `retry_after` reassigned at run time to
    something absurd still gives a delay PostgreSQL can add to `now()`.
    """
    if attempts < max_tries:
        return min(retry_delay(retry_after, attempts), MAX_DURATION_SECONDS)
    return None


def report_error(
    error: BaseException, formatted: str | None = None, redact: Redact | None = None
) -> ErrorReport:
    """Describe `error` safely. `formatted` is its traceback if already formatted (a child
    process's), else it is formatted here; `redact` masks passwords in the text."""
    if formatted is None:
        formatted = format_traceback(error)
    return ErrorReport(
        clean_text(class_name(error), MAX_CLASS_NAME_CHARS),
        clean_text(safe_str(error), MAX_MESSAGE_CHARS, redact),
        clean_text(formatted, MAX_TRACEBACK_CHARS, redact, keep_end=True),
    )


# pydantic's ValidationError text: a location line, then its indented message ending in the
# error's type and input (payload data, which a log line should not carry), then a link.
_PYDANTIC_DETAIL = re.compile(r"\s*\[type=\w+(?:, input_value=.*, input_type=\w+)?\]$")
_PYDANTIC_LINK = "For further information visit"


def one_line(text: str) -> str:
    """`text` as one line: its lines joined with `; `.

    A pydantic ValidationError's layout (`1 validation error for SendEmail`, then per error a
    location line, its indented message and a link) becomes `1 validation error for SendEmail;
    user_id: Field required`: the link and the rejected input are left out.
    """
    if "\n" not in text and "\r" not in text:
        return text
    parts: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(_PYDANTIC_LINK):
            continue
        if raw[:1].isspace() and parts:  # indented: the message of the location above
            parts[-1] = f"{parts[-1]}: {_PYDANTIC_DETAIL.sub('', line)}"
        else:
            parts.append(line)
    return "; ".join(parts)


def class_name(error: BaseException) -> str:
    """The name stored in `failed_jobs.exception_class`: `module.QualName` of the error's class
    (for an error from a child process that could not cross back, the original class's name)."""
    if isinstance(error, RemoteJobError):
        return str(error.class_name)
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def safe_str(error: BaseException) -> str:
    """`str(error)`, or a stand-in saying why there is none when `__str__` itself raises."""
    try:
        return str(error)
    except Exception as broken:
        return f"<str() of this exception raised {type(broken).__name__}>"


def format_traceback(error: BaseException) -> str:
    """The traceback of `error` as text; the standard library already survives a raising
    `__str__`, and anything else it trips over is reported instead of raised."""
    try:
        return "".join(traceback.format_exception(error))
    except Exception as broken:
        return f"<the traceback could not be formatted: {type(broken).__name__}>"


def clean_text(
    text: str, limit: int, redact: Redact | None = None, *, keep_end: bool = False
) -> str:
    """`text` made storable in a PostgreSQL `text` column and at most about `limit` characters.

    NUL becomes the visible `\\x00`; a lone surrogate (which UTF-8 cannot encode) becomes its
    `\\udXXX` escape; passwords are masked before cutting, so no cut can leave part of one. A cut
    says how much it removed; with `keep_end` it keeps the start and the larger end.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if redact is not None:
        text = redact(text)
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_end:
        head = limit // 4
        return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[head + cut :]}"
    return f"{text[:limit]}... [{cut} characters cut]"
