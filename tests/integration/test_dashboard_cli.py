"""`pgqueue dashboard`: it serves the pages as a real process, and without the extra it says so."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

from tests.integration.failed_rows import REPO, cli_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_pgqueue_dashboard_serves_read_only_pages_on_localhost(database_url: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pgqueue", "dashboard", "--port", str(port)],
        cwd=REPO,
        env=cli_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as page:
                    body = page.read().decode()
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the dashboard did not answer"
                time.sleep(0.1)
        assert "read-only" in body and 'class="verdict ok">OK' in body
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert f"pgqueue dashboard on http://127.0.0.1:{port}/ (read-only" in out


def test_without_the_extra_the_command_names_the_install_line(database_url: str) -> None:
    # The extra's modules made unimportable, as in an environment that never installed them.
    blocked = (
        "import sys; sys.modules['uvicorn'] = None; sys.modules['starlette'] = None; "
        "sys.argv = ['pgqueue', 'dashboard']; from pgqueue.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked],
        cwd=REPO,
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the dashboard needs its extra (uvicorn is missing): "
        "pip install 'pgqueue[dashboard]'"
    ]


def test_pgqueue_still_works_without_the_extra(database_url: str) -> None:
    blocked = (
        "import sys; sys.modules['uvicorn'] = None; sys.modules['starlette'] = None; "
        "sys.modules['jinja2'] = None; sys.argv = ['pgqueue', 'stats', '--json']; "
        "from pgqueue.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked],
        cwd=REPO,
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{")
