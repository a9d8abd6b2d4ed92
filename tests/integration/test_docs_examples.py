"""Every code block of README.md and docs/*.md runs as written, in order, as a reader runs them.

One `python tests/doc_session.py PAGE` per page (see its docstring for how each kind of block
runs) in a directory of the page's own, against a test database given as PGQUEUE_DATABASE_URL,
which no block names. getting-started.md starts from an empty database, as a newcomer does; the
other pages from a migrated one, and, after the getting-started path, with its `myapp` package in
the directory. A block that cannot run here says why in a `<!-- not run: ... -->` marker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgqueue.embedded import EmbeddedCluster
from tests import doc_session

ROOT = Path(__file__).resolve().parents[2]
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = [
    page
    for page in PAGES
    if any(b.not_run is None and b.language in doc_session.RUN for b in doc_session.blocks(page))
]
# What each page visibly does when it runs, beyond exiting 0.
SHOWS = {
    # The dispatch blocks print the queue's size twice; the workers run every job but the one
    # delayed by five minutes, which `pgqueue size emails` counts last.
    "README.md": ["\n103\n", "\n104\n", "welcome email to user 42 ", "welcome email to user 43 "],
    "docs/getting-started.md": ["\n1\n", "welcome email for user 42 (job 1)\n"],
    "docs/dispatching.md": ["receipts waiting: 2\n"],
    "docs/jobs.md": ["snoozed 60.0 0\n"],
    "docs/results.md": [
        "queued 0 None\n",
        "completed {'width': 100, 'image_id': 7}\n",
        "job 2 is still scheduled after waiting 0.2 s",
        "builtins.ValueError no data for 2026-03\n",
        "completed {'image_id': 9, 'width': 50} (1.0, '4 of 4 tiles')\n",
    ],
    "docs/testing.md": ["3 passed"],
}
LAST_LINE = {"README.md": "1"}


def _page_id(page: Path) -> str:
    return page.name if page.parent == ROOT else f"docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_block_runs_or_says_why_not(page: Path) -> None:
    markers = doc_session.markers(page)
    skipped = [block for block in doc_session.blocks(page) if block.not_run is not None]
    assert all(reason for _, reason in markers), f"{page.name}: a not-run marker without a reason"
    assert len(skipped) == len(markers), (
        f"{page.name}: a `<!-- not run: ... -->` marker must sit on the line right above its block"
    )
    for block in doc_session.blocks(page):
        assert block.language in doc_session.RUN | doc_session.NOT_RUN, (
            f"{page.name}:{block.line}: a block in language {block.language!r}, which "
            "tests/doc_session.py neither runs nor knows to be no program"
        )


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    """Where a page's `pgqueue embedded ...` commands keep their cluster: a directory of the
    test's own (under /tmp and traversable: as root the server runs as `nobody`), never the
    machine's default one. A cluster they started is stopped afterwards."""
    root = Path(tempfile.mkdtemp(prefix="pgq-docs-", dir="/tmp"))
    root.chmod(0o755)
    yield root / "embedded"
    EmbeddedCluster(root / "embedded").stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("page", RUNNABLE, ids=_page_id)
def test_page_runs_as_written(
    page: Path,
    tmp_path: Path,
    server_url: str,
    embedded_dir: Path,
    request: pytest.FixtureRequest,
) -> None:
    fresh = page == GETTING_STARTED
    url = request.getfixturevalue("empty_database_url" if fresh else "database_url")
    if page not in (GETTING_STARTED, ROOT / "README.md"):
        for block in doc_session.blocks(GETTING_STARTED):
            if block.file is not None and block.not_run is None:
                (tmp_path / block.file).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / block.file).write_text(block.text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env["PGQUEUE_DATABASE_URL"] = url
    env["PGQUEUE_TEST_DATABASE_URL"] = server_url  # for testing.md's pytest run
    env["PGQUEUE_EMBEDDED_DIR"] = str(embedded_dir)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "doc_session.py"), str(page)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    for shown in SHOWS.get(_page_id(page), []):
        assert shown in result.stdout, f"{shown!r} not in the output:\n{result.stdout[-6000:]}"
    if _page_id(page) in LAST_LINE:
        assert result.stdout.rstrip().splitlines()[-1] == LAST_LINE[_page_id(page)]
