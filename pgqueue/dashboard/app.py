"""The dashboard's ASGI app: its routes, pages and actions, and what keeps them safe.

Pages are rendered on the server from Jinja templates (autoescape on, so a payload or traceback
holding `<script>` shows as text) and re-fetched every `REFRESH_SECONDS` by the package's own
`static/dashboard.js`, which swaps in the page's main region unless the reader is selecting,
typing or has ticked a box. Every asset is served by the app itself, and the
Content-Security-Policy allows nothing else.

What a refresh costs: every page but health reads only bounded statements (`reads`), so an open
browser costs the database about the same on a million jobs as on a thousand, and nothing is
cached between requests. The health page runs `pgqueue doctor`'s checks, a one-shot diagnosis
of which two count every ready job (queues without a worker, paused queues): it refreshes every
`HEALTH_REFRESH_SECONDS` and says so, rather than every few seconds.

Connections: each request opens one short-lived autocommit connection through
`pgqueue.connection.connect_async` (the seam the worker and `Queue` use) and closes it when the
page is rendered. A dashboard serves a handful of people every few seconds, so the connect
(a millisecond or two on a local network) costs little, and nothing is tied to an event loop or
a lifespan: the app works mounted anywhere, in FastAPI, Starlette or Django's ASGI handler, whose
lifespan events never reach a mounted app.

Actions (`allow_actions=True` only): retry and forget failed jobs, pause and resume a queue, cancel
a job, each a POST to `actions/<name>` running the library's own call (`AsyncFailedJobs.retry` /
`forget`, `AsyncQueue.pause` / `resume` / `cancel`). A POST is refused with 403 when actions are
off, when its CSRF token is missing or does not match (the double-submit cookie, `SameSite=Strict`,
plus an `Origin` that must name this host), or when `authorize(request, action)` returns False.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import inspect
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload
from urllib.parse import urlencode, urlsplit

import jinja2
import psycopg
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pgqueue import __version__
from pgqueue.connection import connect_async, translate
from pgqueue.dashboard import reads
from pgqueue.dashboard.chart import throughput_chart
from pgqueue.doctor import WORKER_STALE_SECONDS, Check, Verdict, diagnose_async, format_duration
from pgqueue.errors import ConfigurationError, DatabaseError, DispatchError, PgQueueError
from pgqueue.failed import AsyncFailedJobs
from pgqueue.job import validate_queue_name
from pgqueue.queue import AsyncQueue
from pgqueue.schedules import list_schedules
from pgqueue.settings import Settings, parse_duration

# `authorize(request, action)`: True lets the action run; a plain or an async function.
Authorize = Callable[[Request, str], bool | Awaitable[bool]]

# The actions, as `authorize` is asked about them.
ACTIONS = ("retry", "forget", "pause", "resume", "cancel")
# How often the live script re-fetches a page.
REFRESH_SECONDS = 5
# How often it re-fetches the health page: doctor's checks count every ready job (see above).
HEALTH_REFRESH_SECONDS = 60
# Ids one POST may name (retry or forget "selected").
MAX_IDS = 1000
MAX_REASON_CHARS = 200
CSRF_COOKIE = "pgqueue_dashboard_csrf"
CSRF_FIELD = "csrf_token"
NOTICE_COOKIE = "pgqueue_dashboard_notice"
# The failed-jobs page's time filter.
SINCE_CHOICES = (("", "any time"), ("1h", "last hour"), ("24h", "last day"), ("7d", "last week"))
MAX_JOB_ID = 2**63 - 1
APPLICATION_NAME = "pgqueue-dashboard"

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_HERE = Path(__file__).parent
# Nothing from another host, no inline script or style, no framing, forms post only here.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Dashboard:
    """The pages and actions over one database (see the module docstring)."""

    def __init__(
        self, settings: Settings, *, allow_actions: bool, authorize: Authorize | None
    ) -> None:
        self.settings = settings
        self.schema = settings.db_schema
        self.allow_actions = allow_actions
        self.authorize = authorize
        self.queue = AsyncQueue(settings)
        self.failed = AsyncFailedJobs(settings)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(when=_when, duration=_duration, number=_number, count=_count)
        self.templates.globals.update(queue_state=queue_state)

    # ---- pages ---------------------------------------------------------------------------

    async def queues_page(self, request: Request) -> Response:
        async with self._connection() as conn:
            overview = await reads.overview(conn, self.schema)
            warning = await reads.vacuum_warning(conn, self.schema)
            flow = await reads.throughput(conn, self.schema)
        return self._page(
            request,
            "queues.html",
            title="Queues",
            overview=overview,
            warning=warning,
            chart=throughput_chart(flow.minutes),
            by_queue=flow.by_queue,
            max_count=reads.MAX_COUNT,
            max_lanes=reads.MAX_LANES,
        )

    async def queue_page(self, request: Request) -> Response:
        name = _queue_param(request)
        job_type = _text_param(request, "type")
        page = _int_param(request, "page", default=1, low=1, high=reads.MAX_SCAN // reads.PAGE_SIZE)
        offset = (page - 1) * reads.PAGE_SIZE
        async with self._connection() as conn:
            overview = await reads.overview(conn, self.schema, name)
            if not overview.queues:
                raise HTTPException(404, f"no queue named {name!r} has jobs, failures or workers")
            this = overview.queues[0]
            running = await reads.running_jobs(conn, self.schema, name)
            waiting = await reads.waiting_jobs(
                conn, self.schema, name, job_type=job_type, offset=offset
            )
            flow = await reads.throughput(conn, self.schema, name)
        return self._page(
            request,
            "queue.html",
            title=f"Queue {name}",
            queue=this,
            limited_types=overview.limited_types,
            max_count=reads.MAX_COUNT,
            running=running,
            waiting=waiting,
            job_type=job_type,
            page=page,
            has_next=len(waiting) == reads.PAGE_SIZE and offset + reads.PAGE_SIZE < reads.MAX_SCAN,
            max_scan=reads.MAX_SCAN,
            max_running=reads.MAX_RUNNING,
            chart=throughput_chart(flow.minutes),
        )

    async def job_page(self, request: Request) -> Response:
        job_id = _int_param(request, "id", default=None, low=1, high=MAX_JOB_ID)
        if job_id is None:
            raise HTTPException(400, "give a job id: job?id=42")
        async with self._connection() as conn:
            # The state, result, progress and error are the library's (Queue.status decides a
            # job's state); the page adds what only it shows, from the table the status names.
            job = await self.queue.status(job_id, conn)
            details = None
            if job is not None and job.state != "completed":
                details = await reads.job_details(conn, self.schema, job_id)
        if job is None:
            raise HTTPException(
                404,
                f"no job with id {job_id}: never dispatched, completed (a result is kept only "
                "for types that set keep_result), pruned, or forgotten",
            )
        return self._page(
            request,
            "job.html",
            title=f"Job {job_id}",
            job=job,
            details=details,
            cancellable=job.state in ("queued", "scheduled", "running"),
            retryable=job.state in ("failed", "cancelled"),
            payload=None if details is None else reads.pretty_json(details.payload),
            result=reads.pretty_value(job.result) if job.state == "completed" else None,
        )

    async def failed_page(self, request: Request) -> Response:
        queue = _text_param(request, "queue")
        job_type = _text_param(request, "type")
        since = _text_param(request, "since")
        since_seconds = None
        if since is not None:
            try:
                since_seconds = parse_duration(since)
            except ValueError as exc:
                raise HTTPException(400, f"since: {exc}") from None
        before = _before_param(request)
        async with self._connection() as conn:
            rows = await reads.failed_rows(
                conn,
                self.schema,
                queue=queue,
                job_type=job_type,
                since_seconds=since_seconds,
                before=before,
            )
            queues = await reads.failed_queues(conn, self.schema)
        last = rows[-1] if len(rows) == reads.PAGE_SIZE else None
        return self._page(
            request,
            "failed.html",
            title="Failed jobs",
            rows=rows,
            queues=queues,
            queue=queue,
            job_type=job_type,
            since=since or "",
            since_choices=SINCE_CHOICES,
            first_page=before is None,
            next_before=None if last is None else f"{last.failed_at.isoformat()}|{last.id}",
        )

    async def workers_page(self, request: Request) -> Response:
        async with self._connection() as conn:
            workers = await reads.workers(conn, self.schema)
        return self._page(
            request,
            "workers.html",
            title="Workers",
            workers=workers,
            stale_seconds=WORKER_STALE_SECONDS,
            max_workers=reads.MAX_WORKERS,
        )

    async def schedules_page(self, request: Request) -> Response:
        # list_schedules is the library's (blocking, its own short connection); a thread keeps
        # the event loop free meanwhile.
        try:
            schedules = await asyncio.to_thread(list_schedules, self.settings)
        except psycopg.Error as exc:
            raise translate(exc, self.settings) from exc
        return self._page(request, "schedules.html", title="Schedules", schedules=schedules)

    async def health_page(self, request: Request) -> Response:
        async with self._connection() as conn:
            version = conn.info.server_version
            checks = await diagnose_async(conn, self.schema)
        database = Check(
            "database",
            Verdict.OK,
            f"{self.settings.redacted_url} answers "
            f"(PostgreSQL {version // 10000}.{version % 10000})",
        )
        checks = [database, *checks]
        worst = max(
            (check.verdict for check in checks),
            key=[Verdict.OK, Verdict.WARN, Verdict.FAIL].index,
        )
        return self._page(
            request,
            "health.html",
            title="Health",
            checks=checks,
            worst=worst,
            refresh_seconds=HEALTH_REFRESH_SECONDS,
        )

    # ---- actions ---------------------------------------------------------------------------

    async def action(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404, f"no action named {action!r}")
        if not self.allow_actions:
            raise HTTPException(
                403,
                "this dashboard is read-only: start it with `pgqueue dashboard --allow-actions` "
                "(or create_app(..., allow_actions=True)) to retry, forget, pause, resume or cancel",
            )
        if not _same_origin(request):
            raise HTTPException(403, "refused: the form was posted from another site")
        form = await request.form(max_fields=MAX_IDS + 10, max_files=0)
        if not _csrf_ok(request, form):
            raise HTTPException(
                403, "refused: the form's CSRF token is missing or stale; reload the page and retry"
            )
        if self.authorize is not None:
            allowed = self.authorize(request, action)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                raise HTTPException(403, f"you are not allowed to {action} here")
        async with self._connection() as conn:
            notice = await self._run_action(action, form, conn)
        response = RedirectResponse(_next_url(request, form), status_code=303)
        response.set_cookie(
            NOTICE_COOKIE,
            base64.urlsafe_b64encode(notice.encode()).decode(),
            max_age=60,
            path=_cookie_path(request),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def _run_action(
        self, action: str, form: FormData, conn: psycopg.AsyncConnection[Any]
    ) -> str:
        if action in ("retry", "forget"):
            ids = _ids(form)
            if action == "retry":
                retried = await self.failed.retry(ids, conn=conn)
                notice = f"retried {_jobs(len(retried))}"
                if retried.held:
                    notice += (
                        f"; {_jobs(len(retried.held))} stayed failed: another job holds "
                        "their unique key"
                    )
                gone = len(ids) - len(retried) - len(retried.held)
            else:
                forgotten = await self.failed.forget(ids, conn=conn)
                notice = f"forgot {_jobs(len(forgotten))}"
                gone = len(ids) - len(forgotten)
            if gone:
                notice += f"; {_jobs(gone)} had already left failed_jobs"
            return notice
        if action == "cancel":
            job_id = _ids(form, most=1)[0]
            if await self.queue.cancel(job_id, conn):
                return f"cancelled job {job_id} (a running job stops within about a second)"
            return f"job {job_id} was no longer queued or running: nothing to cancel"
        queue = _form_queue(form)
        if action == "pause":
            reason = str(form.get("reason") or "").strip()[:MAX_REASON_CHARS] or None
            if await self.queue.pause(queue, conn, reason=reason):
                return f"paused queue {queue}: its running jobs finish, no new ones start"
            return f"queue {queue} was already paused"
        if await self.queue.resume(queue, conn):
            return f"resumed queue {queue}"
        return f"queue {queue} was not paused"

    # ---- rendering -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await connect_async(self.settings, application_name=APPLICATION_NAME)
        try:
            yield conn
        except psycopg.Error as exc:
            raise translate(exc, self.settings) from exc
        finally:
            await conn.close()

    def _page(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        base = _base(request)
        token = request.cookies.get(CSRF_COOKIE, "")
        new_token = not _TOKEN.fullmatch(token)
        if new_token:
            token = secrets.token_urlsafe(32)
        notice = _notice(request)

        def url(path: str, **query: Any) -> str:
            kept = {key: value for key, value in query.items() if value not in (None, "")}
            return f"{base}/{path}" + (f"?{urlencode(kept)}" if kept else "")

        html = self.templates.get_template(template).render(
            url=url,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            section=template.removesuffix(".html"),
            database=self.settings.redacted_url,
            schema=self.schema,
            allow_actions=self.allow_actions,
            csrf_field=CSRF_FIELD,
            csrf_token=token,
            notice=notice,
            version=__version__,
            **{"refresh_seconds": REFRESH_SECONDS, **context},
        )
        response = HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)
        secure = request.url.scheme == "https"
        if new_token:
            response.set_cookie(
                CSRF_COOKIE,
                token,
                path=_cookie_path(request),
                httponly=True,
                samesite="strict",
                secure=secure,
            )
        if notice is not None:
            response.delete_cookie(NOTICE_COOKIE, path=_cookie_path(request))
        return response

    async def error_page(self, request: Request, exc: Exception) -> Response:
        """An HTTP error, a bad argument or an unreachable database as a page of its own."""
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, str(exc.detail)
        elif isinstance(exc, ConfigurationError | DispatchError):
            status, message = 400, str(exc)
        elif isinstance(exc, DatabaseError):
            status, message = 503, str(exc)
        else:
            status, message = 500, f"unexpected {type(exc).__name__}"
        return self._page(
            request,
            "error.html",
            status=status,
            title=f"Error {status}",
            status_code=status,
            message=self.settings.redact(message),
        )


def build_app(settings: Settings, *, allow_actions: bool, authorize: Authorize | None) -> Starlette:
    """The Starlette app serving `Dashboard`'s routes and the package's static files."""
    dashboard = Dashboard(settings, allow_actions=allow_actions, authorize=authorize)
    routes = [
        Route("/", dashboard.queues_page, name="queues"),
        Route("/queue", dashboard.queue_page, name="queue"),
        Route("/job", dashboard.job_page, name="job"),
        Route("/failed", dashboard.failed_page, name="failed"),
        Route("/workers", dashboard.workers_page, name="workers"),
        Route("/schedules", dashboard.schedules_page, name="schedules"),
        Route("/health", dashboard.health_page, name="health"),
        Route("/actions/{action}", dashboard.action, methods=["POST"], name="action"),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: dashboard.error_page,
            PgQueueError: dashboard.error_page,
        },
    )


# ---- request parsing -------------------------------------------------------------------------


def _base(request: Request) -> str:
    """The path the app is mounted at ('' at the root), for links and the cookie path."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _cookie_path(request: Request) -> str:
    return f"{_base(request)}/"


def _text_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


def _queue_param(request: Request) -> str:
    name = request.query_params.get("name", "")
    if not name:
        raise HTTPException(400, "give a queue name: queue?name=default")
    return validate_queue_name(name)


@overload
def _int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int: ...


@overload
def _int_param(
    request: Request, name: str, *, default: None, low: int, high: int
) -> int | None: ...


def _int_param(
    request: Request, name: str, *, default: int | None, low: int, high: int
) -> int | None:
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise HTTPException(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _before_param(request: Request) -> tuple[datetime, int] | None:
    """The failed-jobs page's cursor, `failed_at|id` of the last row of the page before."""
    text = request.query_params.get("before", "")
    if not text:
        return None
    moment, _, job_id = text.rpartition("|")
    try:
        at = datetime.fromisoformat(moment)
        number = int(job_id)
    except ValueError:
        raise HTTPException(
            400, "before must be 'failed_at|id', as the next-page link has it"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at, number


def _ids(form: FormData, *, most: int = MAX_IDS) -> list[int]:
    values = form.getlist("id")
    if not values:
        raise HTTPException(400, "no job selected")
    if len(values) > most:
        raise HTTPException(400, f"at most {most} jobs at once, got {len(values)}")
    ids = []
    for value in values:
        try:
            job_id = int(str(value))
        except ValueError:
            raise HTTPException(
                400, f"job ids are whole numbers, got {str(value)[:40]!r}"
            ) from None
        if not 1 <= job_id <= MAX_JOB_ID:
            raise HTTPException(400, f"no job can have the id {job_id}")
        ids.append(job_id)
    return ids


def _form_queue(form: FormData) -> str:
    name = form.get("queue")
    if not isinstance(name, str) or not name:
        raise HTTPException(400, "no queue named")
    return validate_queue_name(name)


def _csrf_ok(request: Request, form: FormData) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not _TOKEN.fullmatch(cookie):
        return False
    return hmac.compare_digest(cookie.encode(), sent.encode())


def _same_origin(request: Request) -> bool:
    """A browser names the page a form was posted from in `Origin`: it must be this host. (No
    `Origin`, as from curl or an old browser, leaves the decision to the CSRF token.)"""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


def _next_url(request: Request, form: FormData) -> str:
    """Where to go after an action: the form's `next` when it is a path inside this app."""
    base = _base(request)
    target = form.get("next")
    if isinstance(target, str):
        parts = urlsplit(target)
        if (
            not parts.scheme
            and not parts.netloc
            and parts.path.startswith(f"{base}/")
            and not target.startswith("//")
            and "\\" not in target
        ):
            return target
    return f"{base}/"


def _notice(request: Request) -> str | None:
    """What the last action did, handed over from its redirect in a cookie (never in the URL, so
    no link can put words on the page)."""
    encoded = request.cookies.get(NOTICE_COOKIE)
    if not encoded:
        return None
    try:
        return base64.urlsafe_b64decode(encoded.encode()).decode()[:500]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _jobs(count: int) -> str:
    return f"{count:,} job" if count == 1 else f"{count:,} jobs"


# ---- template filters ------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    """A timestamp in UTC to the second ('-' for none)."""
    if moment is None:
        return "-"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _count(value: int, more: bool = False) -> str:
    """A bounded count: "10,000+" past `reads.MAX_COUNT`, "n+" when `more` says it is a lower
    bound (a walk that stopped at its cap)."""
    if value > reads.MAX_COUNT:
        return f"{reads.MAX_COUNT:,}+"
    return f"{value:,}+" if more else f"{value:,}"


def queue_state(queue: reads.QueueCounts) -> str:
    """The queue's state in a word: paused, at limit, or running."""
    if queue.paused:
        return "paused"
    if queue.at_limit:
        return "at limit"
    return "running"
