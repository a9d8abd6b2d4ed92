"""`pgqueue doctor`: check what really takes a PostgreSQL queue down, one verdict per line.

Each check returns a `Check` with a verdict (OK, WARN or FAIL) and a one-line detail that names
the culprit and the fix. The checks, in order:

- **database**: the server answers (and its version);
- **schema**: the schema exists and is at the newest revision this pgqueue ships (FAIL when behind:
  run `pgqueue migrate`; WARN when at a revision this pgqueue does not know, i.e. a newer one);
- **jobs table**: its dead-tuple ratio, size and index sizes. A queue table churns; when vacuum
  cannot keep up, the claim scans dead rows and slows down;
- **oldest transaction**: what holds back vacuum the most (`XminHolder`): the session whose
  snapshot is oldest (by pid, application, state, age and query), a prepared transaction, a
  replication slot or a standby's feedback. While it stays, vacuum can remove no dead row newer
  than it, so one forgotten `idle in transaction` session makes a SKIP LOCKED queue crawl. Alone it
  warns by age; while dead tuples pile up in jobs it is their likely cause, and both this line and
  the jobs table's name it, with thresholds one step stricter;
- **expired leases**: leases that expired and were not rescued within a grace period, meaning no
  worker is running the periodic rescue and those jobs are stuck;
- **workers**: workers with a recent heartbeat, and queues with ready jobs that no live worker
  serves (WARN, and FAIL once the oldest of those jobs has waited 5 minutes);
- **paused queues**: queues paused with `pgqueue queues pause`, since when and why; a pause is
  deliberate, so this only warns once one has lasted `PAUSED_WARN_SECONDS` (a forgotten resume
  leaves its jobs waiting for good);
- **notify queue**: how full PostgreSQL's LISTEN/NOTIFY queue is; once full, every dispatch fails
  at commit (the jobs trigger sends a NOTIFY).

The table checks run only when pgqueue's tables exist. The thresholds are the constants below,
gathered in `Thresholds` so a caller (or a test) can pass others. Every statement is in
`queries.sql` (`doctor_*`); a check whose statement fails (permission denied, say) reports FAIL
with the reason instead of stopping the others, so run `diagnose` on an autocommit connection. Run
doctor as the schema's owner, or a role with `pg_monitor`, to see other sessions' queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

from pgqueue.connection import connect, translate
from pgqueue.errors import DatabaseError
from pgqueue.settings import DEFAULT_SCHEMA, Settings
from pgqueue.sql import Plan, Statement, queries_for, run_plan, run_plan_async

# Dead tuples below this count never warn: autovacuum on jobs starts at 1,000 + 1% of the rows
# (migration 0001), so a few thousand between its runs is normal churn.
DEAD_TUPLES_MIN = 10_000
# Dead share of the jobs table's tuples that means vacuum is not keeping up (WARN), or is blocked
# or badly behind so that the claim reads more dead rows than live ones (FAIL).
DEAD_TUPLE_WARN_RATIO = 0.2
DEAD_TUPLE_FAIL_RATIO = 0.5
# Age of the oldest open transaction: past 5 minutes a busy queue has piled up dead rows that
# vacuum may not remove (WARN); past 30 minutes it is the likely cause of a slow queue (FAIL).
TRANSACTION_WARN_SECONDS = 300.0
TRANSACTION_FAIL_SECONDS = 1800.0
# Age of what holds back vacuum while dead tuples pile up in jobs (DEAD_TUPLES_MIN or more): then
# it is their likely cause, so it warns sooner. Past one autovacuum_naptime (1 minute by default)
# a vacuum run has likely met it and had to leave the dead rows (WARN); past the 5 minutes at which
# an old transaction warns on its own, it is what slows the queue (FAIL). `pgqueue stats` warns
# from the same first age.
HELD_BACK_WARN_SECONDS = 60.0
HELD_BACK_FAIL_SECONDS = 300.0
# Every worker rescues expired leases every PGQUEUE_RESCUE_INTERVAL (10 s) from its heartbeat
# loop; a lease still expired a minute later means no worker is rescuing (FAIL).
EXPIRED_LEASE_GRACE_SECONDS = 60.0
# A worker beats every lease / 3 (10 s by default); two minutes of silence means it is gone.
# The worker_status view's "alive" column uses the same cutoff.
WORKER_STALE_SECONDS = 120.0
# Ready jobs in a queue that no live worker serves: a WARN at once (a worker may be starting, or
# restarting in a deploy, which takes a minute or two), a FAIL once the oldest has waited 5 minutes.
UNSERVED_WAIT_FAIL_SECONDS = 300.0
# A queue paused for longer than an incident usually lasts was likely never resumed (WARN).
PAUSED_WARN_SECONDS = 3600.0
# Share of the NOTIFY queue in use: anything lasting means a listener is not reading (WARN);
# half full is close to dispatches failing (FAIL).
NOTIFY_QUEUE_WARN = 0.1
NOTIFY_QUEUE_FAIL = 0.5

_QUERY_CHARS = 120


class Verdict(StrEnum):
    """How a check came out: OK, WARN (look soon) or FAIL (act now; doctor exits 1)."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One line of doctor's report."""

    name: str
    verdict: Verdict
    detail: str

    def __str__(self) -> str:
        return f"{self.verdict.value:<4}  {self.name:<18}  {self.detail}"


@dataclass(frozen=True)
class Thresholds:
    """The limits the checks apply; the defaults are the module's constants (see their comments)."""

    dead_tuples_min: int = DEAD_TUPLES_MIN
    dead_tuple_warn_ratio: float = DEAD_TUPLE_WARN_RATIO
    dead_tuple_fail_ratio: float = DEAD_TUPLE_FAIL_RATIO
    transaction_warn_seconds: float = TRANSACTION_WARN_SECONDS
    transaction_fail_seconds: float = TRANSACTION_FAIL_SECONDS
    held_back_warn_seconds: float = HELD_BACK_WARN_SECONDS
    held_back_fail_seconds: float = HELD_BACK_FAIL_SECONDS
    expired_lease_grace_seconds: float = EXPIRED_LEASE_GRACE_SECONDS
    worker_stale_seconds: float = WORKER_STALE_SECONDS
    unserved_wait_fail_seconds: float = UNSERVED_WAIT_FAIL_SECONDS
    paused_warn_seconds: float = PAUSED_WARN_SECONDS
    notify_queue_warn: float = NOTIFY_QUEUE_WARN
    notify_queue_fail: float = NOTIFY_QUEUE_FAIL


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class XminHolder:
    """What holds back vacuum the most in a database: no row deleted after its xmin can be removed.

    `kind` is "session" (a client connection: `pid`, `state`, `user`, `application`, `query`),
    "prepared" (a prepared transaction named `name`, owned by `user`), "slot" (a replication slot
    named `name`; `state` is its type and whether it is active, `pid` its walsender's) or "standby"
    (the hot_standby_feedback of the standby behind walsender `pid`). `seconds` is its age, None
    where PostgreSQL does not know it (slots and standbys); `xid_age` its age in transaction ids.
    """

    kind: str
    pid: int | None
    user: str | None
    application: str | None
    state: str | None
    seconds: float | None
    xid_age: int
    query: str | None = None
    name: str | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> XminHolder:
        """From a row of the `oldest_xmin_holder` statement."""
        kind, pid, user, application, state, seconds, xid_age, query, name = row
        return cls(
            kind=str(kind),
            pid=None if pid is None else int(pid),
            user=user,
            application=application or None,
            state=state,
            seconds=None if seconds is None else max(float(seconds), 0.0),
            xid_age=int(xid_age or 0),
            query=query or None,
            name=name,
        )

    @property
    def abandoned(self) -> bool:
        """An inactive replication slot: its xmin stays put until its consumer comes back."""
        return self.kind == "slot" and (self.state or "").endswith("inactive")

    def describe(self) -> str:
        """Who it is and how old, on one line (without its query)."""
        xids = f"{self.xid_age:,} xids old"
        if self.kind == "prepared":
            who = f"prepared transaction {self.name!r} (owner {self.user})"
        elif self.kind == "slot":
            walsender = f", walsender pid {self.pid}" if self.pid is not None else ""
            return f"replication slot {self.name!r} ({self.state}{walsender}) holds an xmin {xids}"
        elif self.kind == "standby":
            app = f" ({self.application!r})" if self.application else ""
            return f"the standby{app} behind walsender pid {self.pid} holds an xmin {xids}"
        else:
            app = f", application {self.application!r}" if self.application else ""
            who = f"pid {self.pid} ({self.state}, user {self.user}{app})"
        return f"{who} open for {format_duration(self.seconds or 0.0)}, {xids}"

    def fix(self) -> str:
        """What to do about it."""
        if self.kind == "prepared":
            return f"COMMIT PREPARED or ROLLBACK PREPARED {self.name!r}"
        if self.kind == "slot" and self.abandoned:
            return (
                f"if its consumer is gone for good, SELECT pg_drop_replication_slot({self.name!r})"
            )
        if self.kind in ("slot", "standby"):
            return "a long query on the standby holds it through hot_standby_feedback: end it there"
        return (
            f"commit or roll it back in its application, or SELECT pg_terminate_backend({self.pid})"
        )

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, with the one-line description."""
        return {
            "kind": self.kind,
            "pid": self.pid,
            "user": self.user,
            "application": self.application,
            "state": self.state,
            "seconds": self.seconds,
            "xid_age": self.xid_age,
            "name": self.name,
            "query": self.query,
            "description": self.describe(),
        }


def run_doctor(settings: Settings, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Check]:
    """Connect as `settings` say and run every check; a failed connection is one FAIL line."""
    try:
        with connect(settings, application_name="pgqueue-doctor") as conn:
            version = conn.info.server_version
            connected = Check(
                "database",
                Verdict.OK,
                f"{settings.redacted_url} answers (PostgreSQL {version // 10000}.{version % 10000})",
            )
            return [connected, *diagnose(conn, settings.db_schema, thresholds)]
    except DatabaseError as exc:  # the connect failed: its reason, the password masked
        return [Check("database", Verdict.FAIL, str(exc))]
    except psycopg.OperationalError as exc:  # the connection broke during the checks
        return [Check("database", Verdict.FAIL, str(translate(exc, settings)))]


def diagnose(
    conn: psycopg.Connection[Any],
    schema: str = DEFAULT_SCHEMA,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[Check]:
    """Run every check through a blocking connection (best in autocommit) and return the lines."""
    queries = queries_for(schema)
    try:
        schema_check, has_tables = run_plan(_schema(queries, schema), conn)
    except psycopg.Error as exc:
        schema_check, has_tables = _could_not_check("schema", exc), False
    checks = [schema_check]
    for name, plan in _later_checks(queries, schema, thresholds, has_tables):
        try:
            checks.append(run_plan(plan, conn))
        except psycopg.Error as exc:
            checks.append(_could_not_check(name, exc))
    return checks


async def diagnose_async(
    conn: psycopg.AsyncConnection[Any],
    schema: str = DEFAULT_SCHEMA,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[Check]:
    """`diagnose` through an asyncio connection, e.g. for a web app's health endpoint."""
    queries = queries_for(schema)
    try:
        schema_check, has_tables = await run_plan_async(_schema(queries, schema), conn)
    except psycopg.Error as exc:
        schema_check, has_tables = _could_not_check("schema", exc), False
    checks = [schema_check]
    for name, plan in _later_checks(queries, schema, thresholds, has_tables):
        try:
            checks.append(await run_plan_async(plan, conn))
        except psycopg.Error as exc:
            checks.append(_could_not_check(name, exc))
    return checks


def _later_checks(
    queries: dict[str, bytes], schema: str, thresholds: Thresholds, has_tables: bool
) -> Iterator[tuple[str, Plan[Check]]]:
    """The checks after the schema's, in report order; those reading pgqueue's tables only when
    they exist."""
    if has_tables:
        yield "jobs table", _jobs_table(queries, schema, thresholds)
    yield "oldest transaction", _oldest_transaction(queries, schema, thresholds, has_tables)
    if has_tables:
        yield "expired leases", _expired_leases(queries, thresholds)
        yield "workers", _workers(queries, thresholds)
        yield "paused queues", _paused_queues(queries, thresholds)
    yield "notify queue", _notify_queue(queries, thresholds)


# ---- the checks: each a plan of statements that returns its line ----------------------------


def _schema(queries: dict[str, bytes], schema: str) -> Plan[tuple[Check, bool]]:
    """Is the schema there, with pgqueue's tables, at the newest revision this pgqueue ships?"""
    rows = yield Statement(queries["doctor_schema"], {"schema": schema})
    exists, tables, may_read_version = rows[0]
    has_tables = {"jobs", "failed_jobs", "workers"} <= set(tables)
    fix = "run `pgqueue migrate`"
    if not exists:
        return Check("schema", Verdict.FAIL, f"schema {schema!r} does not exist: {fix}"), False
    if "alembic_version" not in tables:
        detail = f"schema {schema!r} has no alembic_version table, so no pgqueue revision: {fix}"
        return Check("schema", Verdict.FAIL, detail), has_tables
    if not may_read_version:
        detail = (
            f"schema {schema!r} holds pgqueue's tables, but this role may not read "
            "alembic_version, so its revision is unchecked: run doctor as the schema's owner"
        )
        return Check("schema", Verdict.WARN, detail), has_tables
    rows = yield Statement(queries["doctor_schema_version"], {})
    current = rows[0][0] if rows else None
    # Here, not at the top: alembic is heavy, and `pgqueue stats` imports this module.
    from pgqueue.migrate import head_revision

    head = head_revision()
    if current == head:
        return Check("schema", Verdict.OK, f"{schema!r} is at revision {head}, the latest"), True
    if current is None:
        detail = f"schema {schema!r} records no revision: {fix}"
        return Check("schema", Verdict.FAIL, detail), has_tables
    if current in _known_revisions():
        detail = f"{schema!r} is at revision {current}, this pgqueue ships {head}: {fix}"
        return Check("schema", Verdict.FAIL, detail), has_tables
    detail = (
        f"{schema!r} is at revision {current}, which this pgqueue (newest {head}) does not know: "
        "a newer pgqueue migrated it; upgrade pgqueue where this runs"
    )
    return Check("schema", Verdict.WARN, detail), has_tables


def _jobs_table(queries: dict[str, bytes], schema: str, limits: Thresholds) -> Plan[Check]:
    """Dead-tuple ratio of jobs, with the sizes of the table and its indexes."""
    rows = yield Statement(queries["doctor_jobs_table"], {"schema": schema})
    if not rows:
        return Check("jobs table", Verdict.FAIL, "no statistics for the jobs table")
    live, dead, vacuum_seconds, table_bytes, index_names, index_bytes = rows[0]
    total = live + dead
    ratio = dead / total if total else 0.0
    indexes = ", ".join(
        f"{name} {_size(size)}" for name, size in zip(index_names, index_bytes, strict=True)
    )
    vacuumed = (
        "never vacuumed"
        if vacuum_seconds is None
        else f"last vacuum {format_duration(vacuum_seconds)} ago"
    )
    detail = (
        f"{dead:,} dead of {total:,} tuples ({ratio:.0%}); table {_size(table_bytes)}, "
        f"indexes {_size(sum(index_bytes))} ({indexes}); {vacuumed}"
    )
    verdict = Verdict.OK
    if dead >= limits.dead_tuples_min:
        if ratio >= limits.dead_tuple_fail_ratio:
            verdict = Verdict.FAIL
        elif ratio >= limits.dead_tuple_warn_ratio:
            verdict = Verdict.WARN
    if verdict is Verdict.OK:
        return Check("jobs table", verdict, detail)
    rows = yield Statement(queries["oldest_xmin_holder"], {})
    holder = XminHolder.from_row(rows[0]) if rows else None
    if holder is not None and _held_back(holder, dead, limits) is not Verdict.OK:
        detail += (
            f": vacuum is held back by {holder.describe()}; {holder.fix()}, "
            f"then run VACUUM {schema}.jobs"
        )
    elif holder is None:
        detail += (
            ": vacuum is not keeping up, and no transaction holds it back: autovacuum is behind "
            f"(or off for this table); run VACUUM {schema}.jobs"
        )
    else:
        detail += (
            ": vacuum is not keeping up: autovacuum is behind (or off for this table), or the "
            f"oldest transaction (below, {format_duration(holder.seconds or 0.0)} old) keeps the "
            f"rows deleted since it began; run VACUUM {schema}.jobs"
        )
    return Check("jobs table", verdict, detail)


def _oldest_transaction(
    queries: dict[str, bytes], schema: str, limits: Thresholds, has_tables: bool
) -> Plan[Check]:
    """What holds back vacuum the most, named, rated by its age: alone by the transaction
    thresholds, and by the stricter held-back ones while dead tuples pile up in jobs."""
    rows = yield Statement(queries["oldest_xmin_holder"], {})
    if not rows:
        return Check("oldest transaction", Verdict.OK, "no open transaction holds back vacuum")
    holder = XminHolder.from_row(rows[0])
    dead: int | None = None
    if has_tables:
        table = yield Statement(queries["doctor_jobs_table"], {"schema": schema})
        dead = int(table[0][1]) if table else None
    detail = holder.describe()
    if holder.query:
        detail += f": {_one_line_query(holder.query)}"
    aged = _by_age(holder.seconds, limits.transaction_warn_seconds, limits.transaction_fail_seconds)
    held = _held_back(holder, dead, limits)
    if held is not Verdict.OK:
        detail += (
            f" -- the likely cause of the {dead:,} dead tuples in {schema}.jobs, which vacuum "
            f"cannot remove while it stays: {holder.fix()}"
        )
    elif aged is not Verdict.OK:
        detail += f" -- vacuum cannot remove jobs rows deleted since it began: {holder.fix()}"
    return Check("oldest transaction", _worst(aged, held), detail)


def _held_back(holder: XminHolder, dead: int | None, limits: Thresholds) -> Verdict:
    """How bad `holder` is as the cause of dead tuples piling up in jobs: OK while they do not
    (fewer than `dead_tuples_min`, or no tables), else by the held-back ages. A slot's or a
    standby's age is unknown: WARN, or FAIL for an inactive slot, which nothing moves on."""
    if dead is None or dead < limits.dead_tuples_min:
        return Verdict.OK
    if holder.seconds is None:
        return Verdict.FAIL if holder.abandoned else Verdict.WARN
    return _by_age(holder.seconds, limits.held_back_warn_seconds, limits.held_back_fail_seconds)


def _by_age(seconds: float | None, warn: float, fail: float) -> Verdict:
    if seconds is None:
        return Verdict.OK
    if seconds >= fail:
        return Verdict.FAIL
    if seconds >= warn:
        return Verdict.WARN
    return Verdict.OK


_SEVERITY = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.FAIL: 2}


def _worst(*verdicts: Verdict) -> Verdict:
    return max(verdicts, key=_SEVERITY.__getitem__)


def _expired_leases(queries: dict[str, bytes], limits: Thresholds) -> Plan[Check]:
    """Leases that expired and were not rescued: stuck jobs, when no worker runs the rescue."""
    grace = limits.expired_lease_grace_seconds
    rows = yield Statement(queries["doctor_expired_leases"], {"grace_seconds": grace})
    expired, overdue, oldest_seconds = rows[0]
    if expired == 0:
        return Check("expired leases", Verdict.OK, "none")
    if overdue == 0:
        detail = (
            f"{expired:,} expired within the last {format_duration(grace)}; a worker's next rescue "
            "returns them to the queue"
        )
        return Check("expired leases", Verdict.OK, detail)
    detail = (
        f"{overdue:,} jobs hold leases that expired up to {format_duration(oldest_seconds)} ago "
        "and were not rescued: no worker is running the rescue (every `pgqueue work` does); "
        "start a worker"
    )
    return Check("expired leases", Verdict.FAIL, detail)


def _workers(queries: dict[str, bytes], limits: Thresholds) -> Plan[Check]:
    """Workers seen recently (by heartbeat), and ready jobs in queues no live worker serves."""
    workers = yield Statement(queries["doctor_workers"], {})
    ready = yield Statement(queries["doctor_ready_queues"], {})
    stale_after = limits.worker_stale_seconds
    live = [(wid, queues) for wid, queues, seconds in workers if seconds <= stale_after]
    stale = [(wid, seconds) for wid, _, seconds in workers if seconds > stale_after]
    served = {queue for _, queues in live for queue in queues}
    unserved = [(queue, count, wait) for queue, count, wait in ready if queue not in served]
    stale_note = ""
    if stale:
        shown = ", ".join(f"{wid} {format_duration(s)} ago" for wid, s in stale[:3])
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        stale_note = f"; {len(stale)} stale (last heartbeat: {shown}{more})"
    if unserved:
        queues = ", ".join(
            f"{queue!r} ({count:,} ready, oldest waiting {format_duration(wait)})"
            for queue, count, wait in unserved
        )
        detail = f"no live worker serves {queues}{stale_note}"
        longest = max(wait for _, _, wait in unserved)
        if longest < limits.unserved_wait_fail_seconds:
            return Check("workers", Verdict.WARN, f"{detail}; start a worker for it")
        return Check("workers", Verdict.FAIL, detail)
    if not live:
        detail = (
            f"no worker has sent a heartbeat in the last {format_duration(stale_after)}{stale_note}"
        )
        return Check("workers", Verdict.WARN, detail)
    detail = f"{len(live)} live, serving {', '.join(sorted(served))}{stale_note}"
    return Check("workers", Verdict.OK, detail)


def _paused_queues(queries: dict[str, bytes], limits: Thresholds) -> Plan[Check]:
    """Paused queues, since when and why: a pause lasting past the threshold warns."""
    rows = yield Statement(queries["doctor_paused_queues"], {})
    if not rows:
        return Check("paused queues", Verdict.OK, "none")
    parts = []
    for name, seconds, reason, ready in rows:
        why = "" if reason is None else f", reason: {_one_line_query(reason)}"
        parts.append(f"{name!r} for {format_duration(seconds)} ({ready:,} ready{why})")
    detail = "paused: " + "; ".join(parts)
    if max(seconds for _, seconds, _, _ in rows) < limits.paused_warn_seconds:
        return Check("paused queues", Verdict.OK, detail)
    over = format_duration(limits.paused_warn_seconds)
    detail += f"; paused over {over}: `pgqueue queues resume QUEUE` if it should run again"
    return Check("paused queues", Verdict.WARN, detail)


def _notify_queue(queries: dict[str, bytes], limits: Thresholds) -> Plan[Check]:
    """How full the LISTEN/NOTIFY queue is; when full, dispatches fail at commit."""
    rows = yield Statement(queries["doctor_notify_queue"], {})
    usage = float(rows[0][0])
    detail = f"{usage:.1%} of the NOTIFY queue in use"
    verdict = Verdict.OK
    if usage >= limits.notify_queue_fail:
        verdict = Verdict.FAIL
    elif usage >= limits.notify_queue_warn:
        verdict = Verdict.WARN
    if verdict is not Verdict.OK:
        detail += (
            ": a session that ran LISTEN is not reading notifications (often one stuck in a long "
            "transaction); once the queue is full every dispatch fails at commit"
        )
    return Check("notify queue", verdict, detail)


# ---- formatting ------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """Seconds as a short human duration: `45s`, `3m 12s`, `2m`, `2h 05m`, `3d 04h`."""
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs:02d}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _one_line_query(query: str) -> str:
    text = " ".join(query.split())
    return text if len(text) <= _QUERY_CHARS else text[: _QUERY_CHARS - 3] + "..."


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from pgqueue.migrate import migrations_dir

    script = ScriptDirectory(str(migrations_dir()))
    return {revision.revision for revision in script.walk_revisions()}


def _could_not_check(name: str, exc: psycopg.Error) -> Check:
    return Check(name, Verdict.FAIL, f"could not check: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
