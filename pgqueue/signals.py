"""SIGTERM and SIGINT for processes whose main job is a worker: `pgqueue work` and `pgqueue demo`.

The library's `Worker.run()` leaves the host's signal handlers alone, so a worker embedded in an
application never takes them over; only these entry points install them, for as long as they run.
The first signal drains (no new claims, running jobs get the grace period), the second stops hard.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pgqueue.worker import ABANDON_AFTER_SECONDS

if TYPE_CHECKING:
    from pgqueue.worker import Worker, WorkerSummary

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """Call `request_stop` on SIGTERM/SIGINT while the block runs (inside a running loop)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, request_stop)
            installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def run_until_stopped(worker: Worker) -> WorkerSummary:
    """Run `worker` on an event loop of its own, stopping on SIGTERM/SIGINT, for a process that
    does nothing else.

    Unlike `asyncio.run`, it does not wait forever at exit for a handler that ignores
    cancellation: such a task gets a moment, then is left behind with the loop.
    """

    async def main() -> WorkerSummary:
        with stop_on_signals(worker.request_stop):
            return await worker.run()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=ABANDON_AFTER_SECONDS))
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
