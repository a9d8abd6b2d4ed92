"""The dashboard's pages and actions through Starlette's TestClient, against real PostgreSQL.

The app is mounted under /queues in a FastAPI app, as a user mounts it; rows are arranged with
SQL (and the library where it has the call), and every check reads the database back.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

import pgqueue.dashboard.reads
from pgqueue.dashboard import create_app
from pgqueue.dashboard.reads import MAX_COUNT, overview
from pgqueue.settings import Settings
from pgqueue.stats import read_stats
from tests.integration.failed_rows import ids_in, insert_failed

PREFIX = "/queues"
PAGES = ["/", "/queue?name=emails", "/failed", "/workers", "/schedules", "/health"]


def mounted(app: Any, prefix: str = PREFIX) -> TestClient:
    """A FastAPI app with the dashboard mounted under `prefix`, and a client for it."""
    host = FastAPI()
    host.mount(prefix, app)
    return TestClient(host, base_url="http://testserver", follow_redirects=False)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with mounted(create_app(settings, allow_actions=True)) as test_client:
        yield test_client


@pytest.fixture
def read_only(settings: Settings) -> Iterator[TestClient]:
    with mounted(create_app(settings)) as test_client:
        yield test_client


def add_jobs(
    conn: psycopg.Connection[Any],
    *,
    queue: str = "emails",
    count: int = 1,
    job_type: str = "app.jobs.Send",
    payload: Any = None,
    delay_seconds: float = 0.0,
    priority: int = 0,
    leased: bool = False,
) -> list[int]:
    rows = conn.execute(
        """
        INSERT INTO pgqueue.jobs (queue, job_type, payload, priority, run_at, lease_token,
                                  lease_expires_at, claimed_at, worker_id)
        SELECT %(queue)s, %(job_type)s, %(payload)s, %(priority)s,
               now() + %(delay)s * interval '1 second',
               CASE WHEN %(leased)s THEN gen_random_uuid() END,
               CASE WHEN %(leased)s THEN now() + interval '30 seconds' END,
               CASE WHEN %(leased)s THEN now() END,
               CASE WHEN %(leased)s THEN 'host:1:w1' END
        FROM generate_series(1, %(count)s)
        RETURNING id
        """,
        {
            "queue": queue,
            "job_type": job_type,
            "payload": Jsonb({"n": 1} if payload is None else payload),
            "priority": priority,
            "delay": delay_seconds,
            "leased": leased,
            "count": count,
        },
    ).fetchall()
    return [row[0] for row in rows]


def counts(page: str, queue: str) -> dict[str, int]:
    """The counts in `queue`'s row of the queues table on `page`."""
    return {name: int(value.replace(",", "")) for name, value in shown(page, queue).items()}


def shown(page: str, queue: str) -> dict[str, str]:
    """The counts in `queue`'s row of the queues table on `page`, as written ("10,000+")."""
    row = re.search(rf'<tr data-queue="{re.escape(queue)}">(.*?)</tr>', page, re.S)
    assert row, f"no row for queue {queue!r}"
    return dict(re.findall(r'data-count="(\w+)">(?:<a [^>]*>)?([\d,]+\+?)', row.group(1)))


def token(client: TestClient, path: str = "/") -> str:
    """Load a page (which sets the CSRF cookie) and return the token its forms carry."""
    page = client.get(PREFIX + path)
    assert page.status_code == 200, page.text
    cookie = client.cookies.get("pgqueue_dashboard_csrf")
    assert cookie
    for found in re.findall(r'name="csrf_token" value="([^"]+)"', page.text):
        assert found == cookie
    return cookie


def post(client: TestClient, action: str, data: dict[str, Any], **headers: str) -> Any:
    return client.post(f"{PREFIX}/actions/{action}", data=data, headers=headers)


# ---- pages ---------------------------------------------------------------------------------


def test_overview_shows_each_queues_counts_as_the_database_has_them(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    add_jobs(conn, count=3)
    add_jobs(conn, count=2, delay_seconds=3600)
    add_jobs(conn, count=1, leased=True)
    add_jobs(conn, queue="reports", count=4)
    insert_failed(conn, queue="emails", count=2)
    insert_failed(conn, queue="emails", count=1, failed_ago=7200)

    page = client.get(PREFIX + "/")

    assert page.status_code == 200
    assert counts(page.text, "emails") == {
        "ready": 3,
        "held": 0,
        "scheduled": 2,
        "running": 1,
        "failed_last_hour": 2,
        "failed_total": 3,
    }
    assert counts(page.text, "reports")["ready"] == 4


async def test_counts_are_those_of_pgqueue_stats_below_the_cap(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    for priority in (-1, 0, 5):
        add_jobs(conn, count=3, priority=priority)
        add_jobs(conn, count=2, priority=priority, delay_seconds=600)
    add_jobs(conn, count=2, leased=True)
    add_jobs(conn, queue="reports", count=4, priority=2, delay_seconds=-90)
    add_jobs(conn, queue="reports", count=1, leased=True)
    add_jobs(conn, queue="later", count=3, delay_seconds=3600)
    insert_failed(conn, queue="emails", count=2)
    insert_failed(conn, queue="emails", count=3, failed_ago=7200)
    insert_failed(conn, queue="gone", count=1)
    conn.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency) "
        "VALUES ('h:1:a', 'h', 1, '{emails,idle}', 4)"
    )
    conn.execute(
        "INSERT INTO pgqueue.queues (name, paused_at, paused_reason, concurrency) VALUES "
        "('reports', now(), 'deploy', 2), ('configured', NULL, NULL, 5)"
    )

    stats = read_stats(conn)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as aconn:
        dashboard = await overview(aconn, "pgqueue")

    assert [q.queue for q in dashboard.queues] == [q.queue for q in stats.queues]
    for mine, theirs in zip(dashboard.queues, stats.queues, strict=True):
        assert (
            mine.ready,
            mine.scheduled,
            mine.running,
            mine.failed_last_hour,
            mine.failed_total,
            mine.paused_at,
            mine.paused_reason,
            mine.concurrency,
            mine.held_by_queue_limit,
            mine.at_limit,
        ) == (
            theirs.ready,
            theirs.scheduled,
            theirs.running,
            theirs.failed_last_hour,
            theirs.failed_total,
            theirs.paused_at,
            theirs.paused_reason,
            theirs.concurrency,
            theirs.held_by_limits,
            theirs.at_limit,
        ), mine.queue
        if theirs.oldest_wait_seconds is None:
            assert mine.oldest_wait_seconds is None
        else:
            assert mine.oldest_wait_seconds == pytest.approx(theirs.oldest_wait_seconds, abs=2)
    reports = next(q for q in dashboard.queues if q.queue == "reports")
    assert reports.held_by_queue_limit == 3  # 4 ready, 1 of 2 slots free
    assert reports.oldest_wait_seconds == pytest.approx(90, abs=5)
    assert dashboard.cut_queue is None and dashboard.limited_types == 0


def test_a_count_past_the_cap_shows_as_the_cap_plus(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    # Spread over priorities, so the cap holds across a queue's lanes, not per lane.
    for priority in (-1, 0, 1):
        add_jobs(conn, count=(MAX_COUNT + 1) // 3 + 1, priority=priority)
    add_jobs(conn, queue="exact", count=MAX_COUNT - 2, priority=3)
    add_jobs(conn, queue="exact", count=2, priority=4)
    add_jobs(conn, queue="exact", count=MAX_COUNT, delay_seconds=600)
    insert_failed(conn, queue="emails", count=MAX_COUNT + 1)

    page = client.get(PREFIX + "/").text

    assert shown(page, "emails") == {
        "ready": "10,000+",
        "held": "0",
        "scheduled": "0",
        "running": "0",
        "failed_last_hour": "10,000+",
        "failed_total": "10,000+",
    }
    assert shown(page, "exact")["ready"] == "10,000"
    assert shown(page, "exact")["scheduled"] == "10,000"
    one = client.get(PREFIX + "/queue", params={"name": "emails"}).text
    assert '<dd data-count="ready">10,000+</dd>' in one
    assert "Counts stop at 10,000" in page and "Counts stop at 10,000" in one


def test_the_queues_page_says_where_counting_stopped_past_the_lanes_it_walks(
    client: TestClient, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgqueue.dashboard.reads, "MAX_LANES", 3)
    for priority in (0, 1):
        add_jobs(conn, queue="a", count=2, priority=priority)
        add_jobs(conn, queue="b", count=2, priority=priority)
    add_jobs(conn, queue="c", count=2)

    page = client.get(PREFIX + "/").text

    assert shown(page, "a")["ready"] == "4"  # counted whole
    assert shown(page, "b")["ready"] == "2+"  # its second lane was past the third
    assert '<tr data-queue="c">' not in page
    assert "counting stopped in queue b" in page


def test_type_limits_are_named_as_not_counted(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    add_jobs(conn)
    assert "job type with limits" not in client.get(PREFIX + "/").text
    conn.execute(
        "INSERT INTO pgqueue.job_limits (job_type, concurrency) VALUES ('app.jobs.Send', 1)"
    )
    page = client.get(PREFIX + "/").text
    assert "the 1 job type with limits of their own may hold back more" in page
    one = client.get(PREFIX + "/queue", params={"name": "emails"}).text
    assert "job type limits hold back (not counted here" in one


def test_overview_draws_the_throughput_of_the_last_hour_as_svg(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.queue_throughput (queue, minute, completed, failed) VALUES "
        "('emails', date_trunc('minute', now()), 40, 2), "
        "('emails', date_trunc('minute', now()) - interval '5 minutes', 7, 0), "
        "('emails', date_trunc('minute', now()) - interval '3 hours', 1000, 0)"
    )
    add_jobs(conn)

    page = client.get(PREFIX + "/").text

    svg = re.search(r"<svg .*?</svg>", page, re.S)
    assert svg
    assert len(re.findall(r'<rect class="done"', svg.group(0))) == 60
    assert len(re.findall(r'<rect class="lost"', svg.group(0))) == 1
    assert "47 completed" in page and "2 failed" in page  # the 3-hour-old minute is left out
    assert counts(page, "emails")["ready"] == 1


def test_every_link_and_asset_stays_under_the_mount_prefix(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    add_jobs(conn)
    for path in PAGES:
        page = client.get(PREFIX + path)
        assert page.status_code == 200, (path, page.text)
        for url in re.findall(r'(?:href|src|action)="([^"]*)"', page.text):
            assert url.startswith(PREFIX + "/"), (path, url)
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
    css = client.get(PREFIX + "/static/dashboard.css")
    script = client.get(PREFIX + "/static/dashboard.js")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "http" not in script.text and "http" not in css.text  # nothing from another host


def test_pages_carry_a_live_region_the_script_refreshes(client: TestClient) -> None:
    page = client.get(PREFIX + "/").text
    assert re.search(r'<main id="live" data-refresh="\d+">', page)
    assert f'<script src="{PREFIX}/static/dashboard.js' in page


def test_queue_page_shows_running_and_waiting_jobs_in_claim_order(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    later = add_jobs(conn, delay_seconds=600)
    low = add_jobs(conn, priority=5)
    first = add_jobs(conn, priority=-1)
    running = add_jobs(conn, leased=True)
    add_jobs(conn, queue="other", count=3)

    page = client.get(PREFIX + "/queue", params={"name": "emails"})

    assert page.status_code == 200
    waiting = re.search(r'<table class="grid" id="waiting">(.*?)</table>', page.text, re.S)
    assert waiting
    listed = [int(i) for i in re.findall(r'job\?id=(\d+)">', waiting.group(1))]
    assert listed == [first[0], later[0], low[0]]  # priority, then run_at, then id
    running_table = re.search(r'id="running">(.*?)</table>', page.text, re.S)
    assert running_table and f"job?id={running[0]}" in running_table.group(1)


def test_queue_page_pages_and_filters_by_type(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = add_jobs(conn, count=60)
    email = add_jobs(conn, job_type="app.jobs.Email", count=2)

    first = client.get(PREFIX + "/queue", params={"name": "emails"}).text
    second = client.get(PREFIX + "/queue", params={"name": "emails", "page": "2"}).text
    typed = client.get(PREFIX + "/queue", params={"name": "emails", "type": "app.jobs.Email"})

    def listed(page: str) -> list[int]:
        table = re.search(r'id="waiting">(.*?)</table>', page, re.S)
        return [int(i) for i in re.findall(r'job\?id=(\d+)">', table.group(1))] if table else []

    assert listed(first) == ids[:50]
    assert listed(second) == ids[50:] + email
    assert "page=2" in first and "page=3" not in second
    assert listed(typed.text) == email


def test_queue_page_of_an_unknown_queue_is_404(client: TestClient) -> None:
    page = client.get(PREFIX + "/queue", params={"name": "nothing-here"})
    assert page.status_code == 404
    assert "no queue named" in page.text


def test_bad_parameters_are_400_with_the_reason(client: TestClient) -> None:
    assert client.get(PREFIX + "/job", params={"id": "abc"}).status_code == 400
    assert client.get(PREFIX + "/queue", params={"name": "x", "page": "0"}).status_code == 400
    since = client.get(PREFIX + "/failed", params={"since": "soon"})
    assert since.status_code == 400 and "is not a duration" in since.text
    assert client.get(PREFIX + "/failed", params={"before": "yesterday"}).status_code == 400


def test_job_page_shows_a_queued_jobs_payload_and_progress(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    [job_id] = add_jobs(conn, payload={"user_id": 42, "to": "ann@example.com"}, leased=True)
    conn.execute(
        "UPDATE pgqueue.jobs SET progress = 0.4, progress_message = '40 of 100 done' WHERE id = %s",
        (job_id,),
    )

    page = client.get(PREFIX + "/job", params={"id": job_id})

    assert page.status_code == 200
    assert 'class="state running">running' in page.text
    assert "&#34;user_id&#34;: 42" in page.text or "&quot;user_id&quot;: 42" in page.text
    assert '<progress max="1" value="0.4"' in page.text and "40 of 100 done" in page.text


def test_job_page_shows_a_failed_jobs_error_and_traceback(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    [job_id] = insert_failed(conn, message="smtp down", traceback="Traceback: line 7\nOSError")
    page = client.get(PREFIX + "/job", params={"id": job_id}).text
    assert 'class="state failed">failed' in page
    assert "smtp down" in page and "Traceback: line 7\nOSError" in page


def test_job_page_shows_a_completed_jobs_kept_result(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.job_results (id, queue, job_type, attempts, result, enqueued_at, "
        "started_at, keep_until) VALUES (9001, 'emails', 'app.jobs.Resize', 1, "
        "'{\"width\": 100}', now(), now(), now() + interval '1 day')"
    )
    page = client.get(PREFIX + "/job", params={"id": 9001}).text
    assert 'class="state completed">completed' in page
    assert "&#34;width&#34;: 100" in page or "&quot;width&quot;: 100" in page


def test_job_page_shows_a_retry_waiting_jobs_last_error_from_its_status(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    [job_id] = add_jobs(conn, delay_seconds=60)
    conn.execute(
        "UPDATE pgqueue.jobs SET attempts = 1, last_error = 'builtins.OSError: smtp down' "
        "WHERE id = %s",
        (job_id,),
    )
    page = client.get(PREFIX + "/job", params={"id": job_id}).text
    assert 'class="state scheduled">scheduled' in page
    assert "<h2>Last error</h2>" in page and "builtins.OSError: smtp down" in page
    assert "<dt>Tries</dt><dd>1 of 3</dd>" in page


def test_job_page_of_an_unknown_id_is_404(client: TestClient) -> None:
    page = client.get(PREFIX + "/job", params={"id": 123456})
    assert page.status_code == 404 and "no job with id 123456" in page.text


def test_failed_page_filters_by_queue_type_and_time(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    recent = insert_failed(conn, queue="emails", job_type="app.jobs.A")
    old = insert_failed(conn, queue="emails", job_type="app.jobs.A", failed_ago=3 * 86400)
    other_type = insert_failed(conn, queue="emails", job_type="app.jobs.B")
    other_queue = insert_failed(conn, queue="reports", job_type="app.jobs.A")

    def listed(**params: str) -> set[int]:
        page = client.get(PREFIX + "/failed", params=params)
        assert page.status_code == 200
        return {int(i) for i in re.findall(r'<tr data-id="(\d+)">', page.text)}

    assert listed() == {*recent, *old, *other_type, *other_queue}
    assert listed(queue="emails") == {*recent, *old, *other_type}
    assert listed(queue="emails", type="app.jobs.A") == {*recent, *old}
    assert listed(queue="emails", type="app.jobs.A", since="1h") == set(recent)


def test_failed_page_pages_newest_first_by_keyset(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = [insert_failed(conn, failed_ago=60 - n)[0] for n in range(55)]  # newest last
    first = client.get(PREFIX + "/failed").text
    shown = [int(i) for i in re.findall(r'<tr data-id="(\d+)">', first)]
    assert shown == ids[::-1][:50]
    older = re.search(r'href="([^"]*before=[^"]*)"', first)
    assert older
    second = client.get(html.unescape(older.group(1))).text
    assert [int(i) for i in re.findall(r'<tr data-id="(\d+)">', second)] == ids[::-1][50:]


def test_workers_page_lists_workers_with_their_heartbeat(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, heartbeat_at, "
        "jobs_completed) VALUES ('web-1:4242:abc', 'web-1', 4242, '{emails,reports}', 16, "
        "now() - interval '5 seconds', 1234)"
    )
    add_jobs(conn, leased=True)  # held by host:1:w1, not this worker
    page = client.get(PREFIX + "/workers").text
    row = re.search(r"<tr title=\"web-1:4242:abc\">(.*?)</tr>", page, re.S)
    assert row
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert cells[0] == "web-1" and cells[1] == "4242" and cells[3] == "16"
    assert "ago" in cells[5] and cells[7] == "1,234"


def test_schedules_page_lists_schedules(client: TestClient, conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgqueue.schedules (name, expression, timezone, job_type, queue, "
        "defined_by, paused) VALUES ('nightly', '0 3 * * *', 'UTC', 'app.jobs.Report', "
        "'reports', 'app.jobs', true)"
    )
    page = client.get(PREFIX + "/schedules").text
    assert "nightly" in page and "0 3 * * *" in page and "paused" in page


def test_health_page_shows_the_doctor_verdicts(client: TestClient) -> None:
    page = client.get(PREFIX + "/health").text
    for name in ("database", "schema", "jobs table", "workers", "notify queue"):
        assert f"<td>{name}</td>" in page
    assert 'class="verdict ok">OK' in page


def test_health_page_refreshes_once_a_minute_and_says_so(client: TestClient) -> None:
    health = client.get(PREFIX + "/health").text
    assert '<main id="live" data-refresh="60">' in health and "every 60 s" in health
    assert "refreshes once a minute" in health
    assert '<main id="live" data-refresh="5">' in client.get(PREFIX + "/").text


# ---- actions ---------------------------------------------------------------------------------


def test_retry_selected_moves_failed_jobs_back_to_jobs(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_failed(conn, count=3)
    csrf = token(client, "/failed")

    answer = post(client, "retry", {"csrf_token": csrf, "id": ids[:2], "next": f"{PREFIX}/failed"})

    assert answer.status_code == 303 and answer.headers["location"] == f"{PREFIX}/failed"
    assert ids_in(conn, "jobs") == ids[:2]
    assert ids_in(conn, "failed_jobs") == ids[2:]
    assert "retried 2 jobs" in client.get(PREFIX + "/failed").text
    assert "retried 2 jobs" not in client.get(PREFIX + "/failed").text  # shown once


def test_forget_removes_failed_jobs(client: TestClient, conn: psycopg.Connection[Any]) -> None:
    ids = insert_failed(conn, count=2)
    post(client, "forget", {"csrf_token": token(client, "/failed"), "id": ids})
    assert ids_in(conn, "failed_jobs") == []
    assert ids_in(conn, "jobs") == []


def test_pause_and_resume_a_queue(client: TestClient, conn: psycopg.Connection[Any]) -> None:
    add_jobs(conn)
    csrf = token(client)
    paused = post(client, "pause", {"csrf_token": csrf, "queue": "emails", "reason": "deploy"})
    assert paused.status_code == 303
    assert conn.execute(
        "SELECT paused_reason FROM pgqueue.queues WHERE name = 'emails' AND paused_at IS NOT NULL"
    ).fetchone() == ("deploy",)
    assert counts(client.get(PREFIX + "/").text, "emails")["ready"] == 1
    post(client, "resume", {"csrf_token": csrf, "queue": "emails"})
    assert conn.execute(
        "SELECT count(*) FROM pgqueue.queues WHERE paused_at IS NOT NULL"
    ).fetchone() == (0,)


def test_cancel_a_queued_job(client: TestClient, conn: psycopg.Connection[Any]) -> None:
    [job_id] = add_jobs(conn)
    post(client, "cancel", {"csrf_token": token(client), "id": job_id})
    assert ids_in(conn, "jobs") == []
    assert conn.execute("SELECT exception_class FROM pgqueue.failed_jobs").fetchone() == (
        "pgqueue.errors.JobCancelledError",
    )
    page = client.get(PREFIX + "/job", params={"id": job_id}).text
    assert 'class="state cancelled">cancelled' in page


def test_a_post_without_the_csrf_token_is_refused(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_failed(conn)
    token(client)  # the cookie is set, but the form below does not carry it
    assert post(client, "retry", {"id": ids}).status_code == 403
    assert post(client, "retry", {"id": ids, "csrf_token": "x" * 43}).status_code == 403
    assert ids_in(conn, "failed_jobs") == ids


def test_a_post_without_the_cookie_is_refused(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_failed(conn)
    csrf = token(client)
    client.cookies.clear()
    assert post(client, "retry", {"id": ids, "csrf_token": csrf}).status_code == 403
    assert ids_in(conn, "failed_jobs") == ids


def test_a_post_from_another_origin_is_refused(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_failed(conn)
    csrf = token(client)
    refused = post(client, "retry", {"id": ids, "csrf_token": csrf}, origin="https://evil.example")
    assert refused.status_code == 403
    assert ids_in(conn, "failed_jobs") == ids
    allowed = post(client, "retry", {"id": ids, "csrf_token": csrf}, origin="http://testserver")
    assert allowed.status_code == 303


def test_an_action_the_authorize_hook_refuses_answers_403(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    asked: list[tuple[str, str]] = []

    def authorize(request: Request, action: str) -> bool:
        asked.append((action, request.headers.get("x-user", "")))
        return request.headers.get("x-user") == "admin"

    ids = insert_failed(conn)
    with mounted(create_app(settings, allow_actions=True, authorize=authorize)) as client:
        csrf = token(client)
        refused = post(client, "retry", {"id": ids, "csrf_token": csrf}, **{"x-user": "guest"})
        assert refused.status_code == 403 and "not allowed to retry" in refused.text
        assert ids_in(conn, "failed_jobs") == ids
        allowed = post(client, "retry", {"id": ids, "csrf_token": csrf}, **{"x-user": "admin"})
        assert allowed.status_code == 303
    assert asked == [("retry", "guest"), ("retry", "admin")]
    assert ids_in(conn, "jobs") == ids


def test_an_async_authorize_hook_is_awaited(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    async def authorize(request: Request, action: str) -> bool:
        return action != "pause"

    add_jobs(conn)
    with mounted(create_app(settings, allow_actions=True, authorize=authorize)) as client:
        csrf = token(client)
        assert post(client, "pause", {"queue": "emails", "csrf_token": csrf}).status_code == 403
        assert conn.execute("SELECT count(*) FROM pgqueue.queues").fetchone() == (0,)


def test_read_only_pages_have_no_action_forms_and_refuse_posts(
    read_only: TestClient, conn: psycopg.Connection[Any]
) -> None:
    add_jobs(conn)
    [running] = add_jobs(conn, leased=True)
    failed = insert_failed(conn)
    pages = [*PAGES, f"/job?id={failed[0]}", f"/job?id={running}"]
    for path in pages:
        page = read_only.get(PREFIX + path)
        assert page.status_code == 200
        assert 'method="post"' not in page.text, path
        assert "csrf_token" not in page.text, path
        assert "read-only" in page.text
    csrf = read_only.cookies.get("pgqueue_dashboard_csrf")
    assert csrf
    for action, data in [
        ("retry", {"id": failed}),
        ("forget", {"id": failed}),
        ("pause", {"queue": "emails"}),
        ("resume", {"queue": "emails"}),
        ("cancel", {"id": running}),
    ]:
        answer = post(read_only, action, {**data, "csrf_token": csrf})
        assert answer.status_code == 403 and "read-only" in answer.text
    assert ids_in(conn, "failed_jobs") == failed
    assert conn.execute("SELECT count(*) FROM pgqueue.queues").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (2,)


def test_an_unknown_action_is_404_and_a_get_on_an_action_405(client: TestClient) -> None:
    assert post(client, "drop", {"csrf_token": token(client)}).status_code == 404
    assert client.get(PREFIX + "/actions/retry").status_code == 405


def test_next_cannot_send_the_browser_to_another_site(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_failed(conn, count=2)
    csrf = token(client)
    for target in ("https://evil.example/", "//evil.example/queues/", "/elsewhere"):
        answer = post(client, "forget", {"id": ids[:1], "csrf_token": csrf, "next": target})
        assert answer.headers["location"] == f"{PREFIX}/"
        ids = ids[1:] or insert_failed(conn)


# ---- escaping and secrets ----------------------------------------------------------------------

HOSTILE = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"


def test_a_hostile_payload_type_error_and_traceback_show_as_text(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    [queued] = add_jobs(conn, payload={"name": HOSTILE}, job_type=f"app.{HOSTILE}")
    [failed] = insert_failed(
        conn, payload={"name": HOSTILE}, message=HOSTILE, traceback=f"Traceback\n{HOSTILE}"
    )
    conn.execute(
        "UPDATE pgqueue.failed_jobs SET job_type = %s WHERE id = %s", (f"app.{HOSTILE}", failed)
    )
    for path in (
        f"/job?id={queued}",
        f"/job?id={failed}",
        "/failed",
        "/queue?name=emails",
        "/",
    ):
        page = client.get(PREFIX + path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text, path
        assert "<img src=x" not in page.text, path
    job = client.get(PREFIX + f"/job?id={failed}").text
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in job


def test_a_hostile_queue_name_shows_as_text(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    name = '"><script>x</script>'
    add_jobs(conn, queue=name)
    for path in ("/", f"/queue?name={name}"):
        page = client.get(PREFIX + path, params=None)
        assert "<script>x" not in page.text
    assert client.get(PREFIX + "/queue", params={"name": name}).status_code == 200


@pytest.fixture
def password_settings(database_url: str, conn: psycopg.Connection[Any]) -> Settings:
    """Settings whose URL logs in as a role with a password (which the pages must never show)."""
    role = f"dash_{uuid.uuid4().hex[:8]}"
    password = f"Pw-{uuid.uuid4().hex}"
    conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    params = conninfo_to_dict(database_url)
    params.update(user=role, password=password)
    url = "postgresql://{user}:{password}@{host}:{port}/{dbname}".format(
        user=role,
        password=password,
        host=params.get("host", "localhost"),
        port=params.get("port", 5432),
        dbname=params["dbname"],
    )
    if str(params.get("host", "")).startswith("/"):  # a socket directory, as the embedded has
        url = make_conninfo(database_url, user=role, password=password)
    return Settings(database_url=url, db_schema="pgqueue")


def test_the_password_never_appears_in_any_page(
    password_settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    password = password_settings.database_url.get_secret_value()  # type: ignore[union-attr]
    secret = conninfo_to_dict(password)["password"]
    [job_id] = add_jobs(conn)
    [failed] = insert_failed(conn)
    with mounted(create_app(password_settings, allow_actions=True)) as client:
        for path in [*PAGES, f"/job?id={job_id}", f"/job?id={failed}", "/job?id=999999"]:
            page = client.get(PREFIX + path)
            assert page.status_code in (200, 404), (path, page.text)
            assert secret not in page.text, path
        health = client.get(PREFIX + "/health").text
        assert "answers" in health  # the database line, with the URL redacted


def test_an_unreachable_database_is_a_503_page_without_the_password(settings: Settings) -> None:
    secret = f"Pw-{uuid.uuid4().hex}"
    gone = Settings(
        database_url=f"postgresql://someone:{secret}@127.0.0.1:9/nothing",
        db_schema="pgqueue",
        connect_timeout=2,
    )
    with mounted(create_app(gone)) as client:
        page = client.get(PREFIX + "/")
    assert page.status_code == 503
    assert "cannot connect" in page.text
    assert secret not in page.text


# ---- mounting ------------------------------------------------------------------------------


def test_mounted_in_a_starlette_app_under_a_prefix(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    add_jobs(conn, count=2)
    host = Starlette(routes=[Mount("/admin/jobs", create_app(settings))])
    with TestClient(host) as client:
        page = client.get("/admin/jobs/")
        assert page.status_code == 200
        assert counts(page.text, "emails")["ready"] == 2
        assert 'href="/admin/jobs/failed"' in page.text
        assert client.get("/admin/jobs/static/dashboard.css").status_code == 200


def test_mounted_beside_django_asgi(settings: Settings, conn: psycopg.Connection[Any]) -> None:
    import django
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure(
            ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], SECRET_KEY="test"
        )
        django.setup()
    from django.core.asgi import get_asgi_application

    add_jobs(conn)
    host = Starlette(
        routes=[Mount("/queues", create_app(settings)), Mount("/", get_asgi_application())]
    )
    with TestClient(host) as client:
        page = client.get("/queues/")
        assert page.status_code == 200 and counts(page.text, "emails")["ready"] == 1
        assert client.get("/django-page").text == "from django"


def _django_page(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("from django")


def __getattr__(name: str) -> Any:
    # Django's ROOT_URLCONF is this module: its urlpatterns are built when Django asks.
    if name == "urlpatterns":
        from django.urls import path

        return [path("django-page", _django_page)]
    raise AttributeError(name)


def test_failed_page_offers_the_queues_that_have_failures(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    add_jobs(conn, queue="quiet")
    for queue in ("emails", "reports", "emails"):
        insert_failed(conn, queue=queue)
    page = client.get(PREFIX + "/failed").text
    offered = re.findall(r"<option(?: selected)?>([^<]+)</option>", page)
    assert offered == ["emails", "reports"]
