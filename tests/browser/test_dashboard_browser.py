"""The dashboard in a real headless browser: Debian's chromium driven by playwright.

The app is served by uvicorn in a thread, mounted under /queues in a Starlette app, against the
test's own database. The tests load pages as a person does, compare what they show with the
database, click retry, and save screenshots: into pytest's temporary directory, or with
PGQUEUE_SCREENSHOT_DIR=docs/images into the ones docs/dashboard.md shows, so a run of the suite
leaves the checkout as it was.
Chromium comes from apt (`.ci/setup` installs it); playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from starlette.applications import Starlette
from starlette.routing import Mount

from pgqueue.dashboard import create_app
from pgqueue.dashboard.app import REFRESH_SECONDS
from pgqueue.settings import Settings
from tests.integration.failed_rows import ids_in, insert_failed

CHROMIUM = Path("/usr/bin/chromium")
# Flags that let chromium start in a container with no GPU and no route to the internet: without
# the background-networking ones it keeps dialling out and the closed network refuses it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PREFIX = "/queues"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (PGQUEUE_SCREENSHOT_DIR=docs/images refreshes the docs')."""
    chosen = os.environ.get("PGQUEUE_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/setup does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def dashboard_url(settings: Settings) -> Iterator[str]:
    """The dashboard (actions allowed) under /queues, served by uvicorn on a free port, with the
    default refresh interval, so the screenshots show what a reader sees."""
    host = Starlette(routes=[Mount(PREFIX, create_app(settings, allow_actions=True))])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(host, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}{PREFIX}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(browser: Browser, dashboard_url: str) -> Iterator[Page]:
    """A fresh browser page that records every request and every console error it sees."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    requested: list[str] = []
    problems: list[str] = []
    opened.on("request", lambda request: requested.append(request.url))
    opened.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    # Nothing loaded from another host, and no script error or CSP violation on any page.
    assert [url for url in requested if not url.startswith(dashboard_url)] == []
    assert problems == []


def arrange(conn: psycopg.Connection[Any]) -> None:
    """Queues with ready, scheduled and running jobs, failures, a worker and an hour of history."""
    conn.execute(
        """
        INSERT INTO pgqueue.jobs (queue, job_type, payload, priority, run_at, lease_token,
                                  lease_expires_at, claimed_at, worker_id, progress,
                                  progress_message)
        SELECT q.queue, q.job_type, jsonb_build_object('order_id', 1000 + n), 0,
               now() + q.delay * interval '1 second' - n * interval '1 second',
               CASE WHEN q.leased THEN gen_random_uuid() END,
               CASE WHEN q.leased THEN now() + interval '30 seconds' END,
               CASE WHEN q.leased THEN now() - interval '4 seconds' END,
               CASE WHEN q.leased THEN 'web-1:4242:9f3a' END,
               CASE WHEN q.leased THEN 0.6 END,
               CASE WHEN q.leased THEN '60 of 100 images' END
        FROM (VALUES ('emails', 'shop.jobs.SendReceipt', 0, false, 120),
                     ('emails', 'shop.jobs.SendReceipt', 900, false, 15),
                     ('emails', 'shop.jobs.SendReceipt', 0, true, 4),
                     ('images', 'shop.jobs.Resize', 0, false, 37),
                     ('images', 'shop.jobs.Resize', 0, true, 8),
                     ('reports', 'shop.jobs.DailyReport', 3600, false, 2))
             AS q (queue, job_type, delay, leased, count),
             LATERAL generate_series(1, q.count) AS n
        """
    )
    conn.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, jobs_completed) "
        "VALUES ('web-1:4242:9f3a', 'web-1', 4242, '{emails,images}', 16, 48210)"
    )
    conn.execute(
        """
        INSERT INTO pgqueue.queue_throughput (queue, minute, completed, failed)
        SELECT q, date_trunc('minute', now()) - m * interval '1 minute',
               (40 + 30 * sin(m / 6.0) + (m % 7) * 3)::int * CASE q WHEN 'emails' THEN 2 ELSE 1 END,
               CASE WHEN m % 11 = 3 THEN 4 ELSE 0 END
        FROM generate_series(0, 59) AS m, unnest(ARRAY['emails', 'images']) AS q
        """
    )
    conn.execute(
        "INSERT INTO pgqueue.queues (name, paused_at, paused_reason) VALUES "
        "('reports', now() - interval '10 minutes', 'waiting for the warehouse load')"
    )
    insert_failed(
        conn,
        queue="emails",
        job_type="shop.jobs.SendReceipt",
        count=3,
        message="SMTP server said 451: try again later",
        traceback=(
            "Traceback (most recent call last):\n"
            '  File "shop/jobs.py", line 41, in handle\n'
            "    await smtp.send(receipt)\n"
            "smtplib.SMTPResponseException: (451, 'try again later')"
        ),
    )
    insert_failed(
        conn,
        queue="images",
        job_type="shop.jobs.Resize",
        failed_ago=1800,
        message="cannot identify image file '<script>alert(1)</script>.png'",
    )


def cell(page: Page, queue: str, count: str) -> int:
    text = page.locator(f'tr[data-queue="{queue}"] td[data-count="{count}"]').inner_text()
    return int(text.replace(",", ""))


def test_the_overview_shows_what_the_database_holds_and_follows_it_live(
    page: Page, dashboard_url: str, conn: psycopg.Connection[Any], images: Path
) -> None:
    arrange(conn)

    page.goto(dashboard_url + "/")

    expected = conn.execute(
        """
        SELECT queue,
               count(*) FILTER (WHERE lease_token IS NULL AND run_at <= now()),
               count(*) FILTER (WHERE lease_token IS NULL AND run_at > now()),
               count(*) FILTER (WHERE lease_token IS NOT NULL)
        FROM pgqueue.jobs GROUP BY queue ORDER BY queue
        """
    ).fetchall()
    for queue, ready, scheduled, running in expected:
        assert (cell(page, queue, "ready"), cell(page, queue, "scheduled")) == (ready, scheduled)
        assert cell(page, queue, "running") == running
    assert cell(page, "emails", "failed_last_hour") == 3
    assert page.locator('tr[data-queue="reports"] .state').inner_text() == "paused"
    assert page.locator("figure.chart svg rect.done").count() == 60
    assert page.locator("#live-status").inner_text() == f"live: every {REFRESH_SECONDS} s"
    page.screenshot(path=images / "dashboard-queues.png", full_page=True)

    # New jobs show up without a reload: the live script swaps in the fresh main region.
    conn.execute(
        "INSERT INTO pgqueue.jobs (queue, job_type, payload) "
        "SELECT 'images', 'shop.jobs.Resize', '{}' FROM generate_series(1, 5)"
    )
    ready = page.locator('tr[data-queue="images"] td[data-count="ready"]')
    expect(ready).to_have_text("42", timeout=(REFRESH_SECONDS + 10) * 1000)

    page.click('a[href$="queue?name=emails"]')
    page.wait_for_selector("#running")
    assert page.locator("#running tbody tr").count() == 4
    page.screenshot(path=images / "dashboard-queue.png")  # the top: counts, chart, running

    page.locator("#running tbody tr a").first.click()
    page.wait_for_selector("pre.payload")
    assert "order_id" in page.locator("pre.payload").inner_text()
    page.screenshot(path=images / "dashboard-job.png", full_page=True)


def test_retry_moves_the_selected_failed_job_back_to_jobs(
    page: Page, dashboard_url: str, conn: psycopg.Connection[Any], images: Path
) -> None:
    arrange(conn)
    failed = ids_in(conn, "failed_jobs")
    chosen = failed[0]

    page.goto(dashboard_url + "/failed")
    page.locator(f'tr[data-id="{chosen}"] details summary').click()  # open its traceback
    assert (
        "smtplib.SMTPResponseException" in page.locator(f'tr[data-id="{chosen}"] pre').inner_text()
    )
    page.locator(f'tr[data-id="{chosen}"] details summary').click()
    page.screenshot(path=images / "dashboard-failed.png", full_page=True)
    page.check(f'input[name="id"][value="{chosen}"]')
    with page.expect_navigation():
        page.click("text=Retry selected")

    assert "retried 1 job" in page.locator(".notice").inner_text()
    assert page.locator(f'tr[data-id="{chosen}"]').count() == 0
    assert ids_in(conn, "failed_jobs") == failed[1:]
    assert chosen in ids_in(conn, "jobs")


def test_the_health_and_workers_pages_render(
    page: Page, dashboard_url: str, conn: psycopg.Connection[Any], images: Path
) -> None:
    arrange(conn)
    page.goto(dashboard_url + "/workers")
    assert page.locator("#workers tbody tr").count() == 1
    assert "web-1" in page.locator("#workers").inner_text()
    page.goto(dashboard_url + "/health")
    assert page.locator("#checks tbody tr").count() >= 6
    page.screenshot(path=images / "dashboard-health.png", full_page=True)
