"""Run blocking (`def`) handlers in child processes the worker can kill.

A sync `handle` may block for as long as it likes, so it never runs on the worker's event loop or in
a thread (a thread cannot be stopped). Each child runs one job at a time; on timeout the worker
SIGKILLs that child, so the attempt really stops, its retry can never overlap it, and the other
running jobs are not disturbed. Children are started lazily, reused, and replaced when killed;
multiprocessing itself is imported only when the first one starts, so a worker whose handlers are
all `async def` never pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pickle
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

# The error classes live in pgqueue.errors (their stored names must not move with this module);
# importing them from here keeps working.
from pgqueue.errors import ChildProcessDiedError, JobTimeoutError, RemoteJobError
from pgqueue.job import job_type, load_job
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
    """A child's answer: no error, or the error and its formatted traceback."""

    error: BaseException | None
    traceback: str = ""


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

    async def run(self, call: BlockingCall, timeout: float) -> BlockingResult:
        """Run `call` in a child; kill the child if it takes longer than `timeout` seconds."""
        async with self._slots:
            child = await self._checkout()
            try:
                child.pipe.send(call)
                reply = await asyncio.wait_for(_receive(child.pipe), timeout)
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


def _decode(reply: tuple[bytes | None, str, str, str]) -> BlockingResult:
    pickled, class_name, message, formatted = reply
    if pickled is None and not class_name:
        return BlockingResult(None)
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
        pipe.send(_run_call(call))


def _run_call(call: BlockingCall) -> tuple[bytes | None, str, str, str]:
    try:
        job_class = job_type(call.job_type)
        if job_class is None:
            raise LookupError(f"job type {call.job_type!r} is not defined in the job process")
        job = load_job(job_class, call.payload, call.job_id, call.attempts)
        if call.method == "handle":
            job.handle()
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
        return pickled, class_name(exc), safe_str(exc), format_traceback(exc)
    return None, "", "", ""
