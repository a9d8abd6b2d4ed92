"""Run blocking (`def`) handlers in child processes the worker can kill.

A sync `handle` may block for as long as it likes, so it never runs on the worker's event loop or in
a thread (a thread cannot be stopped). Each child runs one job at a time; on timeout the worker
SIGKILLs that child, so the attempt really stops, its retry can never overlap it, and the other
running jobs are not disturbed. Children are started lazily, reused, and replaced when killed;
multiprocessing itself is imported only when the first one starts, so a worker whose handlers are
all `async def` never pays for it.

A child talks to its worker over one pipe: the worker sends a `BlockingCall`, the child answers
with the outcome (and, for a type with `keep_result`, the result already encoded as JSON, so the
value itself never crosses). Before it, `self.progress()` in the handler sends `_Progress`
messages, at most one per `PROGRESS_SEND_SECONDS` (the latest report wins; a timer sends the last
one of a burst), so a handler calling it in a tight loop does not flood the worker's event loop;
a handler that never calls it sends nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

# The error classes live in pgqueue.errors (their stored names must not move with this module);
# importing them from here keeps working.
from pgqueue.errors import ChildProcessDiedError, JobTimeoutError, RemoteJobError
from pgqueue.job import ProgressReport, encode_result, job_type, load_job, send_progress_to
from pgqueue.outcome import class_name, format_traceback, safe_str

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

__all__ = [
    "BlockingCall",
    "BlockingResult",
    "BlockingRunner",
    "ChildProcessDiedError",
    "JobTimeoutError",
    "RemoteJobError",
    "picklable",
]

Method = Literal["handle", "failed"]
# A child sends a handler's progress at most this often; the worker writes it every lease / 3.
PROGRESS_SEND_SECONDS = 0.1


@dataclass(frozen=True)
class BlockingCall:
    """What a child needs to rebuild and run one job."""

    job_type: str
    payload: str  # the JSON text, validated again in the child
    job_id: int
    attempts: int
    method: Method
    exc: BaseException | None = None


@dataclass(frozen=True)
class BlockingResult:
    """A child's answer: no error, or the error and its formatted traceback; and for a type with
    `keep_result` whose handle returned, the result as JSON text."""

    error: BaseException | None
    traceback: str = ""
    result: str | None = None


class _Progress(NamedTuple):
    """A progress report from a child, sent before its answer."""

    fraction: float
    message: str | None


class _Child:
    def __init__(self, imports: Sequence[str]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        self.pipe: Connection = parent_end
        self.process: BaseProcess = context.Process(
            target=_child_main, args=(list(imports), child_end), daemon=True
        )
        self.process.start()
        child_end.close()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        self.process.join(timeout=5)
        self.pipe.close()


class BlockingRunner:
    """A set of child processes for blocking handlers, at most `size` running at once.

    Parameters:
        imports: modules each child imports so it knows the same job types as the worker.
        size: the most children alive at once (the worker's concurrency).
    """

    def __init__(self, imports: Sequence[str], size: int) -> None:
        self._imports = list(imports)
        self._idle: list[_Child] = []
        self._slots = asyncio.Semaphore(size)

    async def run(
        self,
        call: BlockingCall,
        timeout: float,
        on_progress: Callable[[ProgressReport], None] | None = None,
    ) -> BlockingResult:
        """Run `call` in a child; kill the child if it takes longer than `timeout` seconds.
        `on_progress` gets each progress report the handler sends meanwhile."""
        async with self._slots:
            child = await self._checkout()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                child.pipe.send(call)
                reply = await asyncio.wait_for(_receive(child.pipe), timeout)
                while isinstance(reply, _Progress):
                    if on_progress is not None:
                        on_progress((reply.fraction, reply.message))
                    reply = await asyncio.wait_for(_receive(child.pipe), deadline - loop.time())
            except TimeoutError:
                child.kill()
                return BlockingResult(
                    JobTimeoutError(f"{call.method}() ran past its {timeout:g} s timeout; killed")
                )
            except (EOFError, OSError, asyncio.CancelledError) as exc:
                child.kill()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                code = child.process.exitcode
                return BlockingResult(
                    ChildProcessDiedError(f"the process running {call.method}() died (exit {code})")
                )
            self._idle.append(child)
            return _decode(reply)

    async def _checkout(self) -> _Child:
        while self._idle:
            child = self._idle.pop()
            if child.process.is_alive():
                return child
            child.kill()
        child = await asyncio.to_thread(_Child, self._imports)
        # Wait for the child to import the job modules, so start-up never eats into a timeout.
        ready = await _receive(child.pipe)
        if ready != "ready":
            child.kill()
            raise ChildProcessDiedError(f"a job process failed to start: {ready}")
        return child

    def close(self) -> None:
        """Stop every idle child (running ones are killed by their callers' cancellation)."""
        for child in self._idle:
            child.kill()
        self._idle.clear()


def picklable(exc: BaseException) -> BaseException:
    """`exc` itself if it can cross to a child process, else a stand-in with its class and text."""
    try:
        pickle.dumps(exc)
    except Exception:
        return RemoteJobError(class_name(exc), safe_str(exc))
    return exc


async def _receive(pipe: Connection) -> Any:
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    fd = pipe.fileno()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    return pipe.recv()


def _decode(reply: tuple[bytes | None, str, str, str, str | None]) -> BlockingResult:
    pickled, class_name, message, formatted, result = reply
    if pickled is None and not class_name:
        return BlockingResult(None, result=result)
    error: BaseException = RemoteJobError(class_name, message)
    if pickled is not None:
        # Only our own child process writes to this pipe, so unpickling it is safe.
        with contextlib.suppress(Exception):
            error = pickle.loads(pickled)  # noqa: S301
    return BlockingResult(error, formatted)


def _child_main(imports: list[str], pipe: Connection) -> None:
    """The child's loop: import the job modules, then run one call at a time until EOF."""
    # A Ctrl-C or a SIGTERM sent to the whole process group is the worker's to handle: it lets
    # running jobs finish and kills this process itself when it must. The child ends on EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        for module in imports:
            importlib.import_module(module)
    except BaseException as exc:
        pipe.send(f"{type(exc).__name__}: {exc}")
        return
    pipe.send("ready")
    while True:
        try:
            call: BlockingCall = pipe.recv()
        except (EOFError, OSError):
            return  # the worker is gone (stopped, or killed): so is this process's work
        progress = _ProgressSender(pipe)
        answer = _run_call(call, progress)
        progress.close()  # no report may follow the answer: it would be read as the next one's
        pipe.send(answer)


class _ProgressSender:
    """Sends a handler's progress reports to the worker, the latest at most every
    PROGRESS_SEND_SECONDS: a report sooner than that waits for a timer, which sends whatever is
    the latest then. The handler's thread and the timer's share the pipe under one lock."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe
        self._lock = threading.Lock()
        self._pending: ProgressReport | None = None
        self._sent_at = -PROGRESS_SEND_SECONDS
        self._timer: threading.Timer | None = None
        self._closed = False

    def report(self, report: ProgressReport) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending = report
            wait = self._sent_at + PROGRESS_SEND_SECONDS - time.monotonic()
            if wait <= 0:
                self._send()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._send_late)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        """Send nothing more (the answer goes next); a timer still waiting sends nothing."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()

    def _send_late(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._send()

    def _send(self) -> None:
        if self._pending is None:
            return
        with contextlib.suppress(OSError):  # the worker is gone: the answer will fail too
            self._pipe.send(_Progress(*self._pending))
        self._pending = None
        self._sent_at = time.monotonic()


def _run_call(
    call: BlockingCall, progress: _ProgressSender
) -> tuple[bytes | None, str, str, str, str | None]:
    result: str | None = None
    try:
        job_class = job_type(call.job_type)
        if job_class is None:
            raise LookupError(f"job type {call.job_type!r} is not defined in the job process")
        job = load_job(job_class, call.payload, call.job_id, call.attempts)
        if call.method == "handle":
            send_progress_to(job, progress.report)
            returned = job.handle()
            if job_class.keep_result is not None:
                result = encode_result(job_class, returned)
        else:
            assert call.exc is not None
            job.failed(call.exc)
    except BaseException as exc:
        # Described with the same care as in the worker: a raising __str__ must not kill this
        # process (the job would be reported as a crash, not as its own error).
        try:
            pickled: bytes | None = pickle.dumps(exc)
        except Exception:
            pickled = None
        return pickled, class_name(exc), safe_str(exc), format_traceback(exc), None
    return None, "", "", "", result
