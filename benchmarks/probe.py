"""The wake-up latency probe: a handler reports when it started over a UNIX datagram socket.

CLOCK_MONOTONIC is system-wide on Linux, so `time.monotonic()` taken in the worker process and
in the benchmark process are comparable. A datagram costs the handler a few microseconds and no
database round trip, so the probe does not slow down what it measures.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

SOCKET_ENV = "BENCH_PROBE_SOCKET"
_FORMAT = "!qd"  # the job's sequence number, the handler's time.monotonic() at its start
_sender: socket.socket | None = None


def report(seq: int) -> None:
    """Called first thing in a handler: send (seq, now) to the benchmark."""
    started = time.monotonic()
    global _sender  # one socket per worker process, made on first use
    if _sender is None:
        _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    _sender.sendto(struct.pack(_FORMAT, seq, started), os.environ[SOCKET_ENV])


class Receiver:
    """The benchmark's end: a bound datagram socket that yields (seq, handler start time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))

    def receive(self, timeout: float) -> tuple[int, float]:
        """The next report; raises TimeoutError when none arrives within `timeout` seconds."""
        self._socket.settimeout(timeout)
        data = self._socket.recv(64)
        seq, started = struct.unpack(_FORMAT, data)
        return int(seq), float(started)

    def close(self) -> None:
        self._socket.close()
        self.path.unlink(missing_ok=True)
