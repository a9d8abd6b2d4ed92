"""Periodic jobs: the schedule registry, cron fire times, and the plan that fires each one once.

A schedule is defined in an `--app` module, either on a job class (`schedule = "17 3 * * *"`, run
from the field defaults, named by the class's `job_name`) or with `schedule(expr, job, name=...)`
for a job with its own payload. Both are checked when the module is imported: an invalid
expression, timezone or name raises `ScheduleDefinitionError` (a `ValueError`) naming it.

There is no scheduler process and no leader. Every worker runs one supervised service (`serve`)
that registers the schedules its modules define when it starts (`register_schedules`, so they are
listed before their first fire), then checks them at each fire time, and at least every
`MAX_SLEEP_SECONDS`: it reads the database's clock and each row, computes the fire time due, and
fires it with one statement (`fire_schedule` in queries.sql) that moves the row's `next_fire_at`
on only if it still holds the value read, inserting the job in the same statement. However many
workers race, one of them enqueues the job; the others change nothing. Time is the database's
(`now()` in the statements, or a `now` parameter in tests), so a worker's wrong clock changes
nothing; the worker's own clock only times its sleep.

Cron expressions are read by cronsim (5 fields, plus `@hourly`, `@daily`, `@weekly`, `@monthly`)
in the schedule's IANA timezone, as Debian's cron does across daylight-saving changes: a fixed
time in the hour that is skipped runs once, at the first minute after it, and a fixed time in the
hour that repeats runs once, at its first occurrence; `*`-hour schedules run on real time.

Missed fire times (no worker was running) give one catch-up run, for the latest of them. A fire
time that passes while a schedule is paused is skipped, and resuming starts from the next one. A
fired job is an ordinary job (retries, timeouts, failed_jobs) whose row holds its fire time in
`jobs.scheduled_for`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from cronsim import CronSim, CronSimError
from pydantic import ValidationError

from pgqueue.connection import connect, translate
from pgqueue.errors import (
    DatabaseUnavailableError,
    DispatchError,
    ScheduleDefinitionError,
    ScheduleInUseError,
    ScheduleNotFoundError,
)
from pgqueue.job import (
    DEFAULT_SCHEDULE_TIMEZONE,
    MAX_JOB_NAME_BYTES,
    Job,
    brief_repr,
    dispatch_settings,
    encode_payload,
)
from pgqueue.settings import Settings
from pgqueue.sql import Plan, Statement, queries_for, run_plan, run_plan_async

logger = logging.getLogger("pgqueue.worker")

# The aliases SPEC section 8 names, as the 5-field expressions cron gives them.
CRON_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
# The service wakes at the next fire time but at least this often, to keep `seen_at` fresh and to
# notice a resume or a changed definition; well under DEFINED_WITHIN_SECONDS.
MAX_SLEEP_SECONDS = 30.0
# Up to this much is added to each sleep, so a fleet does not hit the row in the same millisecond
# (any of them may fire it: the compare-and-set makes the race harmless either way).
WAKE_JITTER_SECONDS = 0.5
# A schedule no running worker checked for this long is no longer defined by any: listed as such,
# and it can be forgotten. The same two minutes `pgqueue doctor` gives a silent worker.
DEFINED_WITHIN_SECONDS = 120.0
# The payload limit a schedule's job is checked against when defined, before any setting is read:
# the default of PGQUEUE_MAX_PAYLOAD_BYTES (a worker checks it against its own at each fire).
_DEFINITION_PAYLOAD_BYTES: int = Settings.model_fields["max_payload_bytes"].default
# A reference time for checking that an expression ever fires.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cron:
    """A cron expression read in one timezone: the fire times after, or at and before, a moment.

    Times go in and come out timezone-aware; results are in UTC.
    """

    expression: str
    timezone: str
    fields: str  # the 5-field form (aliases expanded)
    zone: ZoneInfo

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment`."""
        for candidate in CronSim(self.fields, moment.astimezone(self.zone)):
            # Around a repeated hour cronsim works in wall time, so a fire time can come out
            # before `moment` (02:30 on the first pass when asked from 02:20 on the second).
            if candidate > moment:
                return candidate.astimezone(UTC)
        raise ScheduleDefinitionError(f"{self.expression!r} has no fire time after {moment}")

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last fire time at or before `moment` (None if none in cronsim's 50 years)."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        found: datetime | None = None
        for candidate in CronSim(self.fields, start.astimezone(self.zone), reverse=True):
            if candidate <= moment:
                found = candidate.astimezone(UTC)
                break
        if found is None:
            return None
        # Walking back through a daylight-saving change may step over a fire time; the forward
        # walk, the one that defines the schedule, has the last word.
        while (after := self.next_after(found)) <= moment:
            found = after
        return found


def parse_cron(expression: object, timezone: object, name: str) -> Cron:
    """`expression` in `timezone` as a `Cron`, or `ScheduleDefinitionError` naming schedule
    `name` and saying what is wrong."""
    if not isinstance(expression, str):
        raise ScheduleDefinitionError(
            f"schedule {name!r}: the cron expression must be a string, got {brief_repr(expression)}"
        )
    if not isinstance(timezone, str) or not timezone:
        raise ScheduleDefinitionError(
            f"schedule {name!r}: the timezone must be an IANA name such as 'Europe/Berlin' or "
            f"'UTC', got {brief_repr(timezone)}"
        )
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleDefinitionError(
            f"schedule {name!r}: unknown timezone {brief_repr(timezone)}; use an IANA name such "
            "as 'Europe/Berlin' or 'UTC'"
        ) from None
    text = " ".join(expression.split())
    fields = CRON_ALIASES.get(text.lower(), text)
    problem = None
    if len(fields.split()) != 5:
        problem = "needs 5 fields (minute hour day-of-month month day-of-week)"
    else:
        try:
            next(CronSim(fields, _EPOCH.astimezone(zone)))
        except CronSimError as exc:
            problem = str(exc).lower() or "cannot be parsed"
        except StopIteration:
            problem = "never fires"
    if problem is not None:
        raise ScheduleDefinitionError(
            f"schedule {name!r}: invalid cron expression {brief_repr(expression)}: {problem}; "
            f"write 5 fields such as '17 3 * * *', or one of {', '.join(CRON_ALIASES)}"
        )
    return Cron(expression, timezone, fields, zone)


@dataclass(frozen=True)
class Schedule:
    """One periodic job: its name, when it fires, and the job it enqueues.

    A class schedule (`job` None) builds a fresh job from the class's field defaults at each
    fire; a parameterised one enqueues a copy of the job it was given.
    """

    name: str
    cron: Cron
    job_class: type[Job]
    defined_by: str
    job: Job | None = field(default=None, compare=False)

    def payload(self, max_bytes: int) -> str:
        """The job's JSON payload for one fire, checked as dispatch checks it."""
        return encode_payload(self.job if self.job is not None else self.job_class(), max_bytes)


_registry: dict[str, Schedule] = {}


def schedule(
    expression: str, job: Job, *, name: str, timezone: str = DEFAULT_SCHEDULE_TIMEZONE
) -> Schedule:
    """Enqueue a copy of `job` at each fire time of `expression`, from every worker that imports
    the calling module (exactly one job per fire time however many run).

    Parameters:
        expression: cron, 5 fields (`"*/15 * * * *"`) or `@hourly`/`@daily`/`@weekly`/`@monthly`.
        job: the job to enqueue, payload included (its class must be a registered job type).
        name: the schedule's name, unique among the schedules of the app; `pgqueue schedules`
            lists, pauses and resumes it by this name.
        timezone: the IANA timezone the expression is read in (default "UTC").

    Raises `ScheduleDefinitionError` (a `ValueError`) for an invalid expression, timezone, name
    or job, or a name another module already uses.
    """
    name = _checked_name(name)
    if not isinstance(job, Job):
        raise ScheduleDefinitionError(
            f"schedule {name!r}: the job must be a Job instance, got {brief_repr(job)}"
        )
    cron = parse_cron(expression, timezone, name)
    frame = sys._getframe(1)
    defined_by = str(frame.f_globals.get("__name__", "?"))
    copy = job.model_copy(deep=True)  # later changes to `job` do not change what is enqueued
    entry = Schedule(name, cron, type(job), defined_by, copy)
    _check_payload(entry)
    _add(entry)
    return entry


def define_class_schedule(cls: type[Job]) -> None:
    """Register the schedule a job class declares (`schedule`, `schedule_timezone`), named by its
    `job_name`; called by `Job` when the class is defined."""
    name = cls.job_name
    cron = parse_cron(cls.schedule, cls.schedule_timezone, name)
    required = sorted(n for n, info in cls.model_fields.items() if info.is_required())
    if required:
        raise ScheduleDefinitionError(
            f"schedule {name!r}: {cls.__qualname__} has a schedule, which runs it from the field "
            f"defaults, but field(s) {', '.join(required)} have none; give them defaults, or use "
            "pgqueue.schedule(expr, Job(...), name=...) for a job with a payload"
        )
    entry = Schedule(name, cron, cls, cls.__module__)
    _check_payload(entry)
    _add(entry)


def _checked_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ScheduleDefinitionError(
            f"a schedule's name must be a non-empty string, got {brief_repr(name)}"
        )
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):
        raise ScheduleDefinitionError(f"schedule name {brief_repr(name)} holds control characters")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise ScheduleDefinitionError(
            f"schedule name {brief_repr(name)} holds a lone surrogate; use plain text"
        ) from None
    if size > MAX_JOB_NAME_BYTES:
        raise ScheduleDefinitionError(
            f"schedule name {name[:20]!r}... is {size} bytes; the limit is {MAX_JOB_NAME_BYTES}"
        )
    return name


def _check_payload(entry: Schedule) -> None:
    try:
        entry.payload(_DEFINITION_PAYLOAD_BYTES)
    except (DispatchError, ValidationError) as exc:
        raise ScheduleDefinitionError(
            f"schedule {entry.name!r}: its job cannot be enqueued: {exc}"
        ) from None


def _add(entry: Schedule) -> None:
    existing = _registry.get(entry.name)
    # Re-running a module (importlib.reload, a notebook cell) replaces its own schedules.
    if existing is not None and (existing.defined_by, existing.job is None) != (
        entry.defined_by,
        entry.job is None,
    ):
        raise ScheduleDefinitionError(
            f"schedule name {entry.name!r} is defined twice, in {existing.defined_by} and "
            f"{entry.defined_by}; give one of them another name"
        )
    _registry[entry.name] = entry


def defined_schedules() -> Mapping[str, Schedule]:
    """Every schedule the modules imported so far define, by name (a copy)."""
    return dict(_registry)


def undefine(name: str) -> None:
    """Forget a schedule this process defined (tests, notebooks): its workers stop firing it."""
    _registry.pop(name, None)


# ---- the fire plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fired:
    """One job a schedule enqueued: for which fire time, with which id."""

    name: str
    fire_at: datetime
    job_id: int


@dataclass(frozen=True)
class Check:
    """What one check of a worker's schedules did, and how long until the next fire time."""

    clock: datetime
    fired: list[Fired]
    skipped: list[str]  # fire times that passed while paused, by schedule name
    wait_seconds: float


def register_plan(schedules: Mapping[str, Schedule], schema: str) -> Plan[list[str]]:
    """Upsert `schedules`' rows (a changed definition is computed afresh); their names."""
    entries = [schedules[name] for name in sorted(schedules)]
    rows = yield Statement(
        queries_for(schema)["register_schedules"],
        {
            "names": [entry.name for entry in entries],
            "expressions": [entry.cron.expression for entry in entries],
            "timezones": [entry.cron.timezone for entry in entries],
            "job_types": [entry.job_class.job_name for entry in entries],
            "queues": [entry.job_class.queue for entry in entries],
            "modules": [entry.defined_by for entry in entries],
        },
    )
    return [str(row[0]) for row in rows]


def fire_plan(
    schedules: Mapping[str, Schedule],
    schema: str,
    max_payload_bytes: int,
    now: datetime | None = None,
) -> Plan[Check]:
    """Check `schedules` once: fire each that is due (one catch-up at most), set the first fire
    time of each that has none, and say how long until the earliest next one.

    `now` stands in for the database's `now()` (tests); None reads the database's clock. A row
    whose expression or timezone is not this process's (another version of the app registered it
    last) is left to the workers that define it so.
    """
    queries = queries_for(schema)
    state = Statement(queries["check_schedules"], {"names": sorted(schedules), "now": now})
    rows = yield state
    found = {row[1] for row in rows if row[1] is not None}
    missing = {name: schedules[name] for name in schedules if name not in found}
    if missing:  # not registered yet, or forgotten while this worker ran: register them again
        yield from register_plan(missing, schema)
        rows = yield state
    clock: datetime = rows[0][0]
    fired: list[Fired] = []
    skipped: list[str] = []
    upcoming: list[datetime] = []
    for _, name, expression, timezone, next_fire_at in rows:
        if name is None:
            continue
        entry = schedules[name]
        cron = entry.cron
        if (expression, timezone) != (cron.expression, cron.timezone):
            continue
        definition = {"name": name, "expression": expression, "timezone": timezone}
        if next_fire_at is None:
            first = cron.next_after(clock)
            yield Statement(queries["plan_schedule"], {**definition, "next_fire_at": first})
            upcoming.append(first)
            continue
        if next_fire_at > clock:
            upcoming.append(next_fire_at)
            continue
        # Due: the latest fire time that passed, once however many were missed.
        latest = cron.latest_at_or_before(clock)
        fire_at = latest if latest is not None and latest >= next_fire_at else next_fire_at
        following = cron.next_after(clock)
        upcoming.append(following)
        queue, job_name, priority, max_tries = dispatch_settings(entry.job_class)
        outcome = yield Statement(
            queries["fire_schedule"],
            {
                **definition,
                "expected_fire_at": next_fire_at,
                "fire_at": fire_at,
                "next_fire_at": following,
                "now": now,
                "queue": queue,
                "job_type": job_name,
                "payload": entry.payload(max_payload_bytes),
                "priority": priority,
                "max_tries": max_tries,
            },
        )
        won, job_id = outcome[0]
        if job_id is not None:
            fired.append(Fired(name, fire_at, int(job_id)))
        elif won:
            skipped.append(name)
    wait = min(((moment - clock).total_seconds() for moment in upcoming), default=MAX_SLEEP_SECONDS)
    return Check(clock, fired, skipped, wait)


# ---- the worker's service -------------------------------------------------------------------

# Errors that mean "the database is unreachable or read-only for now": wait and try again.
_TRANSIENT = (
    DatabaseUnavailableError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
)
_RECONNECT_CAP_SECONDS = 30.0


async def serve(
    connect_async: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
    settings: Settings,
    worker_id: str,
) -> None:
    """A worker's schedule service: register the schedules this process defines, then fire the
    due ones, on a connection of its own, until cancelled. Returns at once if none is defined.

    An unavailable database is waited for with capped backoff; any other error is raised, for
    the worker's supervisor to log and restart the service.
    """
    schedules = defined_schedules()
    if not schedules:
        return
    schema = settings.db_schema
    delay = 0.5
    while True:
        try:
            async with await connect_async() as conn:
                await run_plan_async(register_plan(schedules, schema), conn)
                logger.info(
                    "schedules registered",
                    extra={"worker": worker_id, "schedules": ",".join(sorted(schedules))},
                )
                delay = 0.5
                while True:
                    check = await run_plan_async(
                        fire_plan(schedules, schema, settings.max_payload_bytes), conn
                    )
                    _log_check(check, worker_id)
                    await asyncio.sleep(_sleep_seconds(check.wait_seconds))
        except _TRANSIENT as exc:
            logger.warning(
                "schedules: database unavailable, retrying",
                extra={"worker": worker_id, "error": str(exc).split("\n")[0], "retry_in": delay},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_CAP_SECONDS)


def _sleep_seconds(wait: float) -> float:
    return min(max(wait, 0.05), MAX_SLEEP_SECONDS) + random.uniform(0, WAKE_JITTER_SECONDS)  # noqa: S311


def _log_check(check: Check, worker_id: str) -> None:
    for fired in check.fired:
        logger.info(
            "schedule fired",
            extra={
                "worker": worker_id,
                "schedule": fired.name,
                "fire_at": fired.fire_at.isoformat(),
                "job_id": fired.job_id,
            },
        )
    for name in check.skipped:
        logger.info(
            "schedule paused: fire time skipped", extra={"worker": worker_id, "schedule": name}
        )


# ---- `pgqueue schedules`: list, pause, resume, forget -----------------------------------------


@dataclass(frozen=True)
class ScheduleState:
    """One row of `schedules` as `pgqueue schedules` shows it (columns as in docs/schema.md)."""

    name: str
    expression: str
    timezone: str
    job_type: str
    queue: str
    defined_by: str
    paused: bool
    last_fire_at: datetime | None
    next_fire_at: datetime | None
    seen_at: datetime
    defined: bool  # a running worker checked it within DEFINED_WITHIN_SECONDS

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values (times in ISO 8601, or null), for `--json` and web APIs."""
        return {
            "name": self.name,
            "expression": self.expression,
            "timezone": self.timezone,
            "job_type": self.job_type,
            "queue": self.queue,
            "defined_by": self.defined_by,
            "paused": self.paused,
            "last_fire_at": _iso(self.last_fire_at),
            "next_fire_at": _iso(self.next_fire_at),
            "seen_at": _iso(self.seen_at),
            "defined": self.defined,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def list_schedules(settings: Settings) -> list[ScheduleState]:
    """Every schedule in the database, by name. A row whose next fire time is not set yet (new,
    changed or resumed) shows the one the next check will set."""
    rows = _run(
        settings,
        "list_schedules",
        {"defined_within": DEFINED_WITHIN_SECONDS},
    )
    states = []
    for row in rows:
        *values, now = row
        state = ScheduleState(*values)
        if state.next_fire_at is None:
            state = _with_next(state, now)
        states.append(state)
    return states


def _with_next(state: ScheduleState, now: datetime) -> ScheduleState:
    try:
        upcoming = parse_cron(state.expression, state.timezone, state.name).next_after(now)
    except ScheduleDefinitionError:  # written by a newer pgqueue, or by hand
        return state
    return ScheduleState(**{**state.__dict__, "next_fire_at": upcoming})


def pause_schedule(settings: Settings, name: str) -> None:
    """Pause schedule `name`: its fire times pass with no job until it is resumed."""
    if not _run(settings, "pause_schedule", {"name": name}):
        raise _not_found(name)


def resume_schedule(settings: Settings, name: str) -> None:
    """Resume schedule `name` from its next fire time (none that passed while paused runs)."""
    if not _run(settings, "resume_schedule", {"name": name}):
        raise _not_found(name)


def forget_schedule(settings: Settings, name: str) -> None:
    """Delete schedule `name`'s row, once no running worker defines it any more."""
    rows = _run(
        settings, "forget_schedule", {"name": name, "defined_within": DEFINED_WITHIN_SECONDS}
    )
    if not rows:
        raise _not_found(name)
    defined, deleted = rows[0]
    if defined or not deleted:
        raise ScheduleInUseError(
            f"schedule {name!r} is still defined by a running worker (checked within the last "
            f"{DEFINED_WITHIN_SECONDS:.0f} s); remove it from the app and restart the workers "
            f"first, or pause it: pgqueue schedules pause {name}"
        )


def _not_found(name: str) -> ScheduleNotFoundError:
    return ScheduleNotFoundError(
        f"no schedule named {name!r} (`pgqueue schedules` lists them; a worker registers the "
        "schedules its --app modules define when it starts)"
    )


def _run(settings: Settings, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    plan = _one(queries_for(settings.db_schema)[query], params)
    try:
        with connect(settings, application_name="pgqueue-schedules") as conn:
            return run_plan(plan, conn)
    except psycopg.Error as exc:
        raise translate(exc, settings) from exc


def _one(query: bytes, params: dict[str, Any]) -> Plan[list[tuple[Any, ...]]]:
    rows = yield Statement(query, params)
    return rows
