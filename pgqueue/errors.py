"""Every error pgqueue raises on purpose.

PgQueueError
├── ConfigurationError      a setting or flag has a value pgqueue cannot use
├── JobDefinitionError      a Job subclass is malformed (reserved name, bad queue, duplicate name)
│   └── ScheduleDefinitionError     a schedule's cron expression, timezone, name or job is invalid
├── DispatchError           a job was refused before anything was written (also a ValueError)
│   ├── PayloadTooLargeError
│   ├── SecretInPayloadError
│   ├── InvalidQueueNameError
│   ├── InvalidJobNameError         the class's job_name was changed to one pgqueue cannot store
│   ├── InvalidJobSettingError      the class's max_tries or priority was changed to a bad value
│   ├── InvalidPriorityError        priority= is not an integer within PostgreSQL's int4
│   ├── InvalidScheduleError        delay=/run_at= is not a time pgqueue can store
│   ├── InvalidUniqueOptionError    unique_key= or on_conflict= has a value pgqueue cannot use
│   └── UnserializablePayloadError
│       └── PayloadTooDeepError     nested deeper than MAX_PAYLOAD_DEPTH, or holding itself
├── UnsupportedConnectionError   `conn=` is not a connection pgqueue can write through
├── DatabaseError           PostgreSQL could not be reached or refused a statement
│   ├── DatabaseUnavailableError    down, starting, full or read-only for now: retrying may succeed
│   └── DispatchOutcomeUnknownError the connection broke after the job was sent: check, then retry
├── FailedJobNotFoundError  no row in failed_jobs has the id asked for
├── JobNotFoundError        no job has the id asked for (`pgqueue cancel`, `wait`, `pgqueue status`)
├── JobFailedError          `wait()`: the job ended in failed_jobs (it carries the id and the error)
├── WaitTimeoutError        `wait()` gave up after its timeout (also a TimeoutError)
├── InvalidProgressError    `self.progress()` got a fraction outside 0..1 or a bad message
├── ScheduleNotFoundError   no row in schedules has the name asked for
├── ScheduleInUseError      a schedule a running worker still defines cannot be forgotten
├── EmbeddedPostgresError   the embedded PostgreSQL could not be found, started or reused
├── AppImportError          an --app module raised while being imported
├── MetricsServerError      the metrics server could not listen on its port
│
│   Stored in failed_jobs.exception_class as `pgqueue.errors.<Name>` (a stable interface):
├── UnknownJobTypeError     a row names a job type no imported module defines
├── InvalidPayloadError     a row's payload cannot be loaded into its job type
├── LeaseExpiredError       the last try's worker stopped renewing its lease
├── JobTimeoutError         an attempt ran past its timeout (also a TimeoutError)
├── InvalidSnoozeError      `Snooze(seconds)` got a value pgqueue cannot wait (also a ValueError)
├── InvalidResultError      a keep_result job's handle() returned a value that cannot be stored as JSON
├── ChildProcessDiedError   the process running a blocking job died
├── JobCancelledError       the job was cancelled (`pgqueue cancel`, `queue.cancel`)
└── RemoteJobError          a child's exception that could not cross back as itself
"""

from __future__ import annotations


class PgQueueError(Exception):
    """The root of every error pgqueue raises on purpose."""


class ConfigurationError(PgQueueError):
    """A setting or flag has a value pgqueue cannot use."""


class JobDefinitionError(PgQueueError):
    """A Job subclass is malformed: fix the class, not the call."""


class ScheduleDefinitionError(JobDefinitionError, ValueError):
    """A schedule's cron expression, timezone, name or job is invalid (raised at import)."""


class DispatchError(PgQueueError, ValueError):
    """A job was refused before any SQL ran; the caller's transaction is untouched."""


class PayloadTooLargeError(DispatchError):
    """The job's JSON payload is over the configured size limit."""


class SecretInPayloadError(DispatchError):
    """The job holds a SecretStr/SecretBytes value, which must never be stored in a queue."""


class InvalidQueueNameError(DispatchError):
    """The queue name is empty, longer than 63 bytes or holds control characters."""


class InvalidJobNameError(DispatchError):
    """The class's `job_name` was changed after definition to a name pgqueue cannot store."""


class InvalidJobSettingError(DispatchError):
    """The class's `max_tries` or `priority` was changed after definition to a bad value."""


class InvalidPriorityError(DispatchError):
    """`priority=` is not an integer within PostgreSQL's int4 range."""


class InvalidScheduleError(DispatchError):
    """`delay=`/`run_at=` is not a time pgqueue can store (negative, infinite, too far, naive)."""


class InvalidUniqueOptionError(DispatchError):
    """`unique_key=` is not a non-empty string, or `on_conflict=` is not "skip" or "replace"."""


class UnserializablePayloadError(DispatchError):
    """The payload holds a value JSONB or a worker cannot take (NaN, NUL, bad text, huge int)."""


class PayloadTooDeepError(UnserializablePayloadError):
    """The payload is nested deeper than `pgqueue.job.MAX_PAYLOAD_DEPTH`, or contains itself."""


class UnsupportedConnectionError(PgQueueError):
    """`conn=` is neither a psycopg 3 connection nor a SQLAlchemy session/connection on psycopg."""


class DatabaseError(PgQueueError):
    """PostgreSQL could not be reached or refused a statement."""


class DatabaseUnavailableError(DatabaseError):
    """The server cannot be reached right now or refuses connections for now (down, starting,
    too many connections, read-only); retrying later may succeed."""


class DispatchOutcomeUnknownError(DatabaseError):
    """The connection broke after the job was sent: it may or may not have been enqueued; check
    before retrying, a blind retry may enqueue it twice."""


class FailedJobNotFoundError(PgQueueError):
    """No row in failed_jobs has that id (never failed, or already retried, forgotten or pruned)."""


class JobNotFoundError(PgQueueError):
    """No job has that id: never dispatched, or it ended and nothing of it is kept (`cancel`
    also says this of a job that already completed, failed or was cancelled)."""


class JobFailedError(PgQueueError):
    """`wait()`: the job ended in failed_jobs; `job_id`, `exception_class` and
    `exception_message` say which job and why (a cancelled job raises JobCancelledError)."""

    def __init__(self, job_id: int, exception_class: str, exception_message: str) -> None:
        error = f"{exception_class}: {exception_message}" if exception_message else exception_class
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.exception_class = exception_class
        self.exception_message = exception_message

    def __reduce__(self) -> tuple[type[JobFailedError], tuple[int, str, str]]:
        return (type(self), (self.job_id, self.exception_class, self.exception_message))


class WaitTimeoutError(PgQueueError, TimeoutError):
    """`wait()` gave up after its timeout: the job is still queued, scheduled or running."""


class InvalidProgressError(PgQueueError, ValueError):
    """`self.progress()` got a fraction that is not a number from 0 to 1, or a message that is
    not text."""


class ScheduleNotFoundError(PgQueueError):
    """No row in schedules has that name (never registered by a worker, or forgotten)."""


class ScheduleInUseError(PgQueueError):
    """A running worker still defines the schedule: remove it from the app and restart first."""


class EmbeddedPostgresError(PgQueueError):
    """The embedded PostgreSQL could not be found, initialised or started."""


class AppImportError(PgQueueError):
    """A module named by --app (or PGQUEUE_IMPORTS) raised while being imported."""


class MetricsServerError(PgQueueError):
    """The Prometheus metrics server could not listen on its port (in use, or not allowed)."""


class UnknownJobTypeError(PgQueueError):
    """A row names a job type that no module the worker imported defines; it was not run."""


class LeaseExpiredError(PgQueueError):
    """The worker running the job's last try stopped renewing its lease (killed, lost machine)."""


class InvalidPayloadError(PgQueueError):
    """A row's payload could not be loaded into its job type (malformed, too deep, wrong fields)."""


class JobTimeoutError(PgQueueError, TimeoutError):
    """An attempt ran past its timeout and was stopped (or ignored being stopped: an overrun)."""


class InvalidSnoozeError(PgQueueError, ValueError):
    """`Snooze(seconds)` was given something other than seconds from 0 to 100 years."""


class InvalidResultError(PgQueueError):
    """A job type with `keep_result` returned a value pgqueue cannot store as JSON (an unknown
    type, NaN, a NUL character, too deep, too large); the job fails at once, without a retry."""


class ChildProcessDiedError(PgQueueError):
    """The child process running a blocking job died before reporting a result."""


class JobCancelledError(PgQueueError):
    """The job was cancelled (`pgqueue cancel`, `queue.cancel`): before it ran, or stopped by its
    worker while it ran; `failed()` is not called for it."""


class RemoteJobError(PgQueueError):
    """An exception raised in a child process that could not be sent back as itself."""

    def __init__(self, class_name: str, message: str) -> None:
        super().__init__(f"{class_name}: {message}")
        self.class_name = class_name
        self.message = message

    def __reduce__(self) -> tuple[type[RemoteJobError], tuple[str, str]]:
        # It crosses to failed()'s child process: it must unpickle with both arguments.
        return (type(self), (self.class_name, self.message))
