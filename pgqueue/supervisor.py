"""`pgqueue work --processes N`: N worker processes under one supervising parent.

Python runs one core per process, so this is how one machine's cores are all used. The parent
restarts a child that dies unexpectedly (with backoff), forwards SIGTERM/SIGINT to every child so
each drains its own jobs, and exits 0 once all children have stopped cleanly.

Children run in sessions of their own, so a signal sent to the parent's process group (Ctrl-C in
a terminal, systemd's default KillMode) reaches each child once, forwarded, and not a second time
directly, which would mean "stop hard". On Linux a child also gets SIGTERM if the parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger("pgqueue.supervisor")
_QUICK_DEATH_SECONDS = 2.0
_PR_SET_PDEATHSIG = 1


def _child_args(argv: Sequence[str], slot: int) -> list[str]:
    """One child's command line: the same flags without --processes, and its own metrics port."""
    args: list[str] = []
    pending: str | None = None
    for arg in argv:
        if pending == "--processes":
            pending = None
        elif pending == "--metrics-port":
            args += ["--metrics-port", str(int(arg) + slot)]
            pending = None
        elif arg in ("--processes", "--metrics-port"):
            pending = arg
        elif arg.startswith("--processes="):
            continue
        elif arg.startswith("--metrics-port="):
            args += ["--metrics-port", str(int(arg.split("=", 1)[1]) + slot)]
        else:
            args.append(arg)
    return [sys.executable, "-m", "pgqueue", *args]


def _spawn(argv: Sequence[str], slot: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        _child_args(argv, slot), start_new_session=True, preexec_fn=_die_with_parent
    )


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (a drain, not a kill)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(processes: int, argv: Sequence[str]) -> int:
    """Run `processes` workers until they all stop; returns the exit code for the parent."""
    children: list[subprocess.Popen[bytes] | None] = [None] * processes
    restarts = [0] * processes
    signals_received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        signals_received.append(signum)
        for child in children:
            if child is not None and child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    started_at = [time.monotonic()] * processes
    for slot in range(processes):
        children[slot] = _spawn(argv, slot)
    logger.info("supervisor started", extra={"processes": processes})
    worst = 0
    while True:
        alive = 0
        for slot, child in enumerate(children):
            if child is None:
                continue
            code = child.poll()
            if code is None:
                alive += 1
                continue
            if signals_received or code == 0:
                children[slot] = None
                worst = max(worst, code)
                continue
            # Back off only while a child keeps dying right after it starts (a crash loop); a
            # child that ran for a while is restarted at once.
            quick_death = time.monotonic() - started_at[slot] < _QUICK_DEATH_SECONDS
            restarts[slot] = restarts[slot] + 1 if quick_death else 0
            delay = min(0.1 * 2 ** restarts[slot], 10.0) if restarts[slot] else 0.0
            logger.warning(
                "worker process died, restarting",
                extra={"exit_code": code, "restart_in": delay, "slot": slot},
            )
            time.sleep(delay)
            children[slot] = _spawn(argv, slot)
            started_at[slot] = time.monotonic()
            alive += 1
        if alive == 0:
            return worst
        time.sleep(0.1)
