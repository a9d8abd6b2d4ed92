"""`pgqueue work --processes N`: N worker processes under one supervising parent.

Python runs one core per process, so this is how one machine's cores are all used. Children are
forked from the parent after it imported pgqueue and the --app modules, so a child (and each
restart) starts in milliseconds, not after a new interpreter's imports. The parent
restarts a child that dies unexpectedly, forwards SIGTERM/SIGINT to every child so each drains its
own jobs, and exits 0 once all children have stopped cleanly.

Crash loops are told from crashes by how long a child was *up*, not how long ago it was started:
a child reports that its worker is up through `notify_ready()` (a byte on a pipe the parent
passes it), so a slow start (a database that is down, or has no free connection slot) never
looks like a healthy run that then crashed. A child that dies before it was ready, or within
`RestartPolicy.stable_seconds` of it, is a quick death: consecutive quick deaths back off
exponentially with jitter up to a cap; a child that stayed up longer is restarted at once and the
count starts again. Each restart is one log line with the exit code and the delay.

Children run in sessions of their own, so a signal sent to the parent's process group (Ctrl-C in
a terminal, systemd's default KillMode) reaches each child once, forwarded, and not a second time
directly, which would mean "stop hard". On Linux a child also gets SIGTERM if the parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import random
import select
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

logger = logging.getLogger("pgqueue.supervisor")
_PR_SET_PDEATHSIG = 1
# "supervisor pid:fd" of the pipe a child writes to once its worker is up. The leading underscore
# keeps it out of the PGQUEUE_ settings: it is a protocol between two processes, like systemd's
# NOTIFY_SOCKET, not configuration.
READY_ENV = "_PGQUEUE_READY_FD"
_FORWARDED = {signal.SIGTERM, signal.SIGINT}
_POLL_SECONDS = 0.1


def notify_ready() -> None:
    """Tell the supervising `pgqueue work --processes` parent, if any, that this worker is up.

    Call it once the worker can do its work (connected, registered): the parent measures a child's
    uptime from here, so crash-loop detection never counts the start-up. It does nothing outside a
    supervisor and after its first call, and never raises. It reads the environment, which library
    code otherwise never does, because this is the parent's hand-over, not a setting; the variable
    is removed, and names the parent's pid, so a job's process that inherited it writes nothing.
    """
    value = os.environ.pop(READY_ENV, None)
    if value is None:
        return
    parent, _, fd_text = value.partition(":")
    with contextlib.suppress(ValueError, OSError):
        if int(parent) != os.getppid():
            return
        fd = int(fd_text)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        try:
            os.write(fd, b"r")
        finally:
            os.close(fd)


@dataclass(frozen=True)
class RestartPolicy:
    """How the supervisor restarts a child that died unexpectedly.

    Parameters:
        stable_seconds: a child up (since `notify_ready`) this long or longer ran well: it is
            restarted at once and the quick deaths counted so far are forgotten (default 10, a
            heartbeat at the default lease). Dying before it was ready, or sooner, is a quick death,
            unless it lived 2 x `cap_seconds` since its spawn (no faster than a capped loop).
        base_seconds: the first quick death in a row waits between half of this and all of it
            (default 0.5); each further one doubles it...
        cap_seconds: ...up to this (default 30), so a crash loop settles at one restart every 15 to
            30 s per process. The random half keeps the processes of one parent (and of many
            machines restarted together) from hitting PostgreSQL in step.
    """

    stable_seconds: float = 10.0
    base_seconds: float = 0.5
    cap_seconds: float = 30.0

    def delay(self, quick_deaths: int) -> float:
        """Seconds to wait before the restart after `quick_deaths` quick deaths in a row (0: none)."""
        if quick_deaths <= 0:
            return 0.0
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** min(quick_deaths - 1, 64))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


DEFAULT_POLICY = RestartPolicy()


# A child's work: its slot number in, its exit code out. Each child is forked from the parent, so
# it starts with every module the parent imported (pgqueue, psycopg, pydantic, the --app).
ChildMain = Callable[[int], int]


class _Forked:
    """A forked child, seen through the part of `subprocess.Popen` the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


def _run_forked(child_main: ChildMain, slot: int, ready: str) -> NoReturn:
    """In a forked child: become a process of its own (session, signals, readiness pipe), run
    `child_main`, and leave through os._exit, never back into the parent's code."""
    code = 1
    try:
        os.setsid()
        for signum in _FORWARDED:  # the parent's forwarding handlers are not the child's
            signal.signal(signum, signal.SIG_DFL)
        _prepare_child()
        os.environ[READY_ENV] = ready
        code = child_main(slot)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        logger.exception("worker process failed", extra={"slot": slot})
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


@dataclass
class _Slot:
    """One child's place: the process running in it, or the restart it is waiting for."""

    number: int
    process: _Forked | None = None
    ready_fd: int | None = None  # the pipe's read end, until the child reports or closes it
    started_at: float = 0.0  # monotonic
    ready_at: float | None = None  # monotonic time the child reported itself up
    quick_deaths: int = 0
    restart_at: float | None = None

    def start(self, child_main: ChildMain) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        ready = f"{os.getpid()}:{write_fd}"
        # Blocked until the child is in place, so a stop signal arriving meanwhile is forwarded
        # to it too (the child unblocks them in _prepare_child).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                _run_forked(child_main, self.number, ready)
            self.process = _Forked(pid)
            self.ready_fd, self.ready_at, self.restart_at = read_fd, None, None
            self.started_at = time.monotonic()
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def read_ready(self) -> None:
        """Take the child's readiness byte if it has written it; forget the pipe once done."""
        if self.ready_fd is None:
            return
        try:
            data = os.read(self.ready_fd, 1)
        except BlockingIOError:
            return
        if data:
            self.ready_at = time.monotonic()
        self.close_pipe()

    def close_pipe(self) -> None:
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None


def _prepare_child() -> None:
    """In the child: stop signals unblocked (the parent blocks them while it forks), then SIGTERM
    when the parent dies."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    _die_with_parent()


def _die_with_parent() -> None:
    """In the child: ask Linux for SIGTERM when the parent dies (a drain, not a kill)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(processes: int, child_main: ChildMain, policy: RestartPolicy = DEFAULT_POLICY) -> int:
    """Run `processes` workers until they all stop; returns the exit code for the parent.

    Each child is forked from this process and runs `child_main(slot)`: it starts with everything
    the parent imported, so it is up in milliseconds rather than after a new interpreter's imports.
    Fork before any connection, event loop or thread exists: `pgqueue work` forks once it has
    imported the --app modules, and nothing else. A child that returns 0 (--max-jobs,
    --stop-when-empty) is not replaced. Any other exit before a stop signal is a crash: the child
    is restarted as `policy` says. After SIGTERM/SIGINT (each forwarded to every child, so a
    second one means "stop hard" as it does for one worker) nothing is restarted, and the exit
    code is the worst of the children's exit codes.
    """
    slots = [_Slot(number) for number in range(processes)]
    stop_signals: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        stop_signals.append(signum)
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for slot in slots:
        slot.start(child_main)
    logger.info("supervisor started", extra={"processes": processes})
    worst = 0
    while True:
        _wait_for_readiness(slots)
        now = time.monotonic()
        for slot in slots:
            if slot.process is None:
                if slot.restart_at is not None and (stop_signals or now >= slot.restart_at):
                    slot.restart_at = None
                    if not stop_signals:
                        slot.start(child_main)
                continue
            code = slot.process.poll()
            if code is None:
                continue
            slot.read_ready()  # a child may report and die between two polls
            slot.close_pipe()
            pid, slot.process = slot.process.pid, None
            if stop_signals or code == 0:
                # A child killed by a signal (ours, while it was still starting, or a SIGKILL
                # noticed only now) leaves the exit code alone, as it always has.
                worst = max(worst, code)
                continue
            _schedule_restart(slot, pid, code, now, policy)
        if all(slot.process is None and slot.restart_at is None for slot in slots):
            return worst


def _wait_for_readiness(slots: list[_Slot]) -> None:
    """Sleep a poll interval, waking at once to record a child that reports itself up."""
    pipes = {slot.ready_fd: slot for slot in slots if slot.ready_fd is not None}
    if not pipes:
        time.sleep(_POLL_SECONDS)
        return
    readable, _, _ = select.select(list(pipes), [], [], _POLL_SECONDS)
    for fd in readable:
        pipes[fd].read_ready()


def _schedule_restart(slot: _Slot, pid: int, code: int, now: float, policy: RestartPolicy) -> None:
    """Count a crash as quick or not, pick the delay, and log the one line that says so.

    The line's fields: `exit_code` (negative: killed by that signal, named in `signal`),
    `up_seconds` (None: it died before it reported ready), `quick_deaths` in a row, `restart_in`.
    """
    up = None if slot.ready_at is None else max(now - slot.ready_at, 0.0)
    # A child that never reported but lived twice the cap since its spawn counts as up too: its
    # restarts come no faster than a capped crash loop's would, and a worker that does not call
    # notify_ready is not backed off for good.
    lived = now - slot.started_at
    stayed_up = (up or 0.0) >= policy.stable_seconds or lived >= 2 * policy.cap_seconds
    slot.quick_deaths = 0 if stayed_up else slot.quick_deaths + 1
    delay = policy.delay(slot.quick_deaths)
    slot.restart_at = now + delay
    fields: dict[str, object] = {"slot": slot.number, "pid": pid, "exit_code": code}
    if code < 0:
        with contextlib.suppress(ValueError):
            fields["signal"] = signal.Signals(-code).name
    fields |= {
        "up_seconds": None if up is None else round(up, 3),
        "quick_deaths": slot.quick_deaths,
        "restart_in": round(delay, 3),
    }
    logger.warning("worker process died, restarting", extra=fields)
