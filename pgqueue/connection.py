"""The one place pgqueue opens connections and turns driver errors into its own.

`connect` and `connect_async` resolve the URL (the embedded cluster's when `PGQUEUE_DATABASE_URL`
is unset), name the connection (`application_name`, unless the URL or `PGAPPNAME` names it), set
autocommit, `connect_timeout` and extra server `options`, and raise `DatabaseError`s instead of
psycopg's. `translate` is that translation, for every other place that talks to the driver: its
message never holds the password (even where libpq echoes it), keeps the driver's reason, says how
to fix a missing schema, and its class says whether waiting can help:

- `DatabaseUnavailableError`: the server is down, starting, shutting down, out of connection
  slots or read-only, or the connection broke (SQLSTATE class 08, 57P01-57P03, 53300, 53400,
  25006, refused, timed out, socket missing). Retrying later may succeed.
- `DatabaseError`: anything else, such as a wrong password, a missing database or role, a
  malformed URL or a missing schema. Retrying will not help; the message says what to fix.

libpq reports connection-time failures as text without an SQLSTATE, so those are classified by
libpq's (English) messages; a server set to another `lc_messages` may make a transient refusal at
connect time look permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import select
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from pgqueue.embedded import data_dir, database_url
from pgqueue.errors import DatabaseError, DatabaseUnavailableError, DispatchOutcomeUnknownError
from pgqueue.settings import DEFAULT_SCHEMA, Settings, redact

logger = logging.getLogger("pgqueue")

# SQLSTATEs after which the same request may succeed later: admin/crash shutdown, cannot
# connect now (starting, shutting down, recovery), too many connections, a per-role or
# per-database connection limit, a read-only (standby or read-only mode) server. Class 08 too.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "53400", "25006"})
# libpq's and the server's words for the same, where a failed connect carries no SQLSTATE.
_UNAVAILABLE_TEXT = (
    "connection refused",
    "timeout expired",
    "timed out",
    "server closed the connection unexpectedly",
    "terminating connection",
    "the database system is",  # starting up, shutting down, in recovery mode, not accepting ...
    "too many clients already",
    "remaining connection slots are reserved",
    "too many connections for",
    "connection reset by peer",
    "broken pipe",
    "network is unreachable",
    "no route to host",
    "host is unreachable",
    "could not receive data from server",
    "could not send data to server",
    "ssl syscall error",
    "ssl connection has been closed unexpectedly",
    "temporary failure in name resolution",
    "server is in hot standby mode",
    "session is read-only",
    "the connection is closed",
    "the connection is lost",
    "consuming input failed",
)
# An idle pooled connection older than this is closed, not reused: a firewall or NAT may have
# dropped it silently, and a statement sent into such a connection hangs instead of failing.
POOL_MAX_IDLE_SECONDS = 300.0
# How long a caller waits for one of the pool's busy connections to come back.
POOL_WAIT_SECONDS = 30.0
_announced_embedded = False
C = TypeVar("C", psycopg.Connection[TupleRow], psycopg.AsyncConnection[TupleRow])


def conninfo(settings: Settings) -> str:
    """The libpq URL or conninfo string to connect with: `settings.database_url`, or the embedded
    cluster's (initialised and started if need be) when it is unset."""
    global _announced_embedded
    if settings.database_url is None and not _announced_embedded:
        _announced_embedded = True
        logger.info(
            "PGQUEUE_DATABASE_URL is unset: using the embedded PostgreSQL",
            extra={"data_dir": str(data_dir(settings))},
        )
    return database_url(settings)


def connect(
    settings: Settings,
    *,
    application_name: str,
    autocommit: bool = True,
    options: str | None = None,
) -> psycopg.Connection[TupleRow]:
    """Open a blocking connection as `settings` say.

    Parameters:
        settings: where to connect; `connect_timeout` bounds the wait for the server.
        application_name: how the connection shows in `pg_stat_activity` (`pgqueue-...`); an
            `application_name` in the URL (or `PGAPPNAME`) wins.
        autocommit: each statement commits on its own (default True).
        options: server settings for this session, e.g. `-c synchronous_commit=off`; added to
            any `options` the URL sets.

    Raises `DatabaseUnavailableError` when the server cannot take a connection now (refused,
    timed out, starting up, full), else `DatabaseError` (wrong password, malformed URL, ...).
    """
    try:
        params = _params(conninfo(settings), settings, application_name, options)
        return psycopg.Connection.connect(autocommit=autocommit, **params)
    except psycopg.Error as exc:
        raise translate(exc, settings, connecting=True) from exc


async def connect_async(
    settings: Settings,
    *,
    application_name: str,
    autocommit: bool = True,
    options: str | None = None,
) -> psycopg.AsyncConnection[TupleRow]:
    """`connect` for asyncio: the same parameters and errors."""
    try:
        if settings.database_url is None:  # starting the embedded cluster blocks
            url = await asyncio.to_thread(conninfo, settings)
        else:
            url = conninfo(settings)
        params = _params(url, settings, application_name, options)
        return await psycopg.AsyncConnection.connect(autocommit=autocommit, **params)
    except psycopg.Error as exc:
        raise translate(exc, settings, connecting=True) from exc


def translate(
    exc: psycopg.Error,
    settings: Settings | None = None,
    *,
    schema: str | None = None,
    connecting: bool = False,
) -> DatabaseError:
    """The `DatabaseError` to raise (`from exc`) for a driver error.

    The message names the database (`settings.redacted_url`) and keeps the first line of the
    driver's reason, with every password masked (`Settings.redact`); the password is masked in
    `exc`'s own text too, since it stays chained as the cause and tracebacks print it. A missing
    table or schema says to run `pgqueue migrate`.

    Parameters:
        exc: the psycopg error.
        settings: the settings used to connect (None: a caller's connection; the generic
            `redact` rules still apply).
        schema: the schema for the missing-schema hint (default: the settings', else `pgqueue`).
        connecting: the error came from opening a connection ("cannot connect to ...").
    """
    mask = settings.redact if settings is not None else redact
    _mask_in_place(exc, mask)
    schema = schema or (settings.db_schema if settings is not None else DEFAULT_SCHEMA)
    where = settings.redacted_url if settings is not None else ""
    reason = first_line(exc)
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
        place = f" on {where}" if where else ""
        return DatabaseError(
            f"pgqueue's tables are missing from schema {schema!r}{place}: run `pgqueue migrate` "
            f"first ({reason})"
        )
    error_class = DatabaseUnavailableError if unavailable(exc) else DatabaseError
    if connecting:
        return error_class(f"cannot connect to {where or 'PostgreSQL'}: {reason}")
    return error_class(f"PostgreSQL error{f' on {where}' if where else ''}: {reason}")


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the server cannot serve us now but may later (see the module doc)."""
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = exc.sqlstate or exc.diag.sqlstate
    if sqlstate:
        return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate.startswith("08")
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc).lower()
    if "on socket" in text and "no such file or directory" in text:
        return True  # the server's socket is missing: not started yet, or just stopped
    return any(words in text for words in _UNAVAILABLE_TEXT)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of `exc`'s message, or its class name if it has none."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def _params(
    url: str, settings: Settings, application_name: str, options: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = conninfo_to_dict(url)
    params.setdefault("connect_timeout", max(2, math.ceil(settings.connect_timeout)))
    params.setdefault("fallback_application_name", application_name)
    if options:
        params["options"] = f"{params.get('options') or ''} {options}".strip()
    return params


def _mask_in_place(exc: BaseException, mask: Any) -> None:
    """Redact the text of `exc` and of the errors chained to it, which tracebacks print."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(mask(arg) if isinstance(arg, str) else arg for arg in current.args)
        current = current.__cause__ or current.__context__


def lost(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether `conn` is gone (the server closed it, the network broke): it can run nothing more."""
    return conn.closed or conn.broken


def translate_sent(
    exc: psycopg.Error,
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    settings: Settings,
    *,
    what: str,
) -> DatabaseError:
    """The error for a write that failed after it was sent on an autocommit connection of
    pgqueue's own (or for its COMMIT): `DispatchOutcomeUnknownError` if the connection broke,
    since then nobody knows whether PostgreSQL committed it, else `translate(exc, settings)`.

    `what` names what was sent, for the message ("the job", "the jobs").
    """
    if not lost(conn):
        return translate(exc, settings)
    _mask_in_place(exc, settings.redact)
    return DispatchOutcomeUnknownError(
        f"the connection to {settings.redacted_url} broke after sending {what} "
        f"({first_line(exc)}): whether {what} got enqueued is unknown; check before retrying, "
        f"a blind retry may enqueue {what} twice"
    )


class _Slots(Generic[C]):
    """What both pools keep: the idle connections and how many exist. Its methods decide; the
    pools call them under their own lock (a thread's or the event loop's) and do the waiting,
    connecting and closing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: list[tuple[C, float]] = []
        self.count = 0  # idle, lent and being opened
        self.closed = False

    def take(self, stale: list[C]) -> tuple[C | None, bool]:
        """(a fresh idle connection, False), or (None, True): a new one may be opened (its
        place is reserved), or (None, False): wait. The stale ones looked at go to `stale`,
        for the caller to close outside the lock."""
        if self.closed:
            raise DatabaseError("the connection pool is closed")
        now = time.monotonic()
        while self.idle:
            conn, since = self.idle.pop()
            if now - since < POOL_MAX_IDLE_SECONDS and not lost(conn) and not _has_input(conn):
                return conn, False
            stale.append(conn)
            self.count -= 1
        if self.count < self.size:
            self.count += 1
            return None, True
        return None, False

    def opening_failed(self) -> None:
        self.count -= 1

    def give_back(self, conn: C) -> bool:
        """Keep `conn` for reuse (True), or count it gone for the caller to close (False)."""
        if not self.closed and _reusable(conn):
            self.idle.append((conn, time.monotonic()))
            return True
        self.count -= 1
        return False

    def close(self) -> list[C]:
        """Refuse further lending; the idle connections, for the caller to close."""
        self.closed = True
        idle, self.idle = self.idle, []
        self.count -= len(idle)
        return [conn for conn, _ in idle]


class Pool:
    """A few autocommit connections for short statements: `Queue`'s dispatch without `conn=`.

    A connection is opened in the caller's thread when none is idle and fewer than `size` exist,
    so a failure to connect is the caller's error at once: its reason, after at most
    `connect_timeout`. An idle connection is checked before it is lent, without a round trip:
    one whose socket has something to read (an idle connection expects nothing, so that is the
    server's goodbye after a restart or `pg_terminate_backend`, or EOF) or that sat idle longer
    than `POOL_MAX_IDLE_SECONDS` is closed and replaced. One that comes back broken or inside a
    transaction is closed. Callers wait up to `POOL_WAIT_SECONDS` for a busy connection.
    """

    def __init__(self, settings: Settings, *, application_name: str, size: int) -> None:
        self.settings = settings
        self.application_name = application_name
        self.size = size
        self._slots: _Slots[psycopg.Connection[TupleRow]] = _Slots(size)
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """Lend a connection for a `with` block; it comes back (or is closed) at its end."""
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    def close(self) -> None:
        """Close the idle connections now, and lent ones as they come back."""
        with self._changed:
            idle = self._slots.close()
            self._changed.notify_all()
        for conn in idle:
            conn.close()

    def _acquire(self) -> psycopg.Connection[TupleRow]:
        deadline = time.monotonic() + POOL_WAIT_SECONDS
        stale: list[psycopg.Connection[TupleRow]] = []
        try:
            with self._changed:
                while True:
                    conn, may_open = self._slots.take(stale)
                    if conn is not None:
                        return conn
                    if may_open:
                        break
                    if not self._changed.wait(deadline - time.monotonic()):
                        raise _busy(self.size)
        finally:
            for dead in stale:
                dead.close()
        try:
            return connect(self.settings, application_name=self.application_name)
        except BaseException:
            with self._changed:
                self._slots.opening_failed()
                self._changed.notify()
            raise

    def _release(self, conn: psycopg.Connection[TupleRow]) -> None:
        with self._changed:
            keep = self._slots.give_back(conn)
            self._changed.notify()
        if not keep:
            conn.close()


class AsyncPool:
    """`Pool` for asyncio (`AsyncQueue`): the same behaviour, awaited."""

    def __init__(self, settings: Settings, *, application_name: str, size: int) -> None:
        self.settings = settings
        self.application_name = application_name
        self.size = size
        self._slots: _Slots[psycopg.AsyncConnection[TupleRow]] = _Slots(size)
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """Lend a connection for an `async with` block; it comes back (or is closed) at its end."""
        conn = await self._acquire()
        try:
            yield conn
        finally:
            await self._release(conn)

    async def close(self) -> None:
        """Close the idle connections now, and lent ones as they come back."""
        async with self._changed:
            idle = self._slots.close()
            self._changed.notify_all()
        for conn in idle:
            await conn.close()

    async def _acquire(self) -> psycopg.AsyncConnection[TupleRow]:
        deadline = time.monotonic() + POOL_WAIT_SECONDS
        stale: list[psycopg.AsyncConnection[TupleRow]] = []
        try:
            async with self._changed:
                while True:
                    conn, may_open = self._slots.take(stale)
                    if conn is not None:
                        return conn
                    if may_open:
                        break
                    try:
                        await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
                    except TimeoutError:
                        raise _busy(self.size) from None
        finally:
            for dead in stale:
                await dead.close()
        try:
            return await connect_async(self.settings, application_name=self.application_name)
        except BaseException:
            async with self._changed:
                self._slots.opening_failed()
                self._changed.notify()
            raise

    async def _release(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        async with self._changed:
            keep = self._slots.give_back(conn)
            self._changed.notify()
        if not keep:
            await conn.close()


def _reusable(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    return not lost(conn) and conn.info.transaction_status == TransactionStatus.IDLE


def _has_input(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether the socket of an idle connection has anything to read: a zero-timeout poll."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def _busy(size: int) -> DatabaseError:
    return DatabaseUnavailableError(
        f"all {size} pooled connections stayed busy for {POOL_WAIT_SECONDS:.0f} s: raise "
        "PGQUEUE_POOL_SIZE, or dispatch through conn="
    )
