"""Worker start-up: from the spawn of `pgqueue work` to the start of its first job's handler.

One job waits in the queue before the worker is spawned; its handler reports `time.monotonic()`
at its start over the probe socket (`probe.py`: CLOCK_MONOTONIC is system-wide on Linux, so the
two processes' clocks compare). What is measured is what a deploy or an autoscaler waits for: the
interpreter, the imports, `--app`, settings, the connection, the worker's registration and the
first claim. The median of `--runs` runs is printed, in milliseconds, with each run beside it.

The worker reads compiled bytecode, as it does from an installed wheel (pip compiles it): an
untimed first run writes it under the cluster's temporary directory (`PYTHONPYCACHEPREFIX`), so
the checkout is left alone even where `PYTHONDONTWRITEBYTECODE` is set. `--no-bytecode` measures
without it: every pgqueue module is compiled on each start, as from an editable install then.

    python benchmarks/startup.py                      # 5 runs of `pgqueue work`
    python benchmarks/startup.py --runs 9 -- --processes 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import harness
import probe
from pgqueue_jobs import Ping  # what the worker runs: --app pgqueue_jobs
from pydantic import SecretStr

from pgqueue import Queue, Settings

PGQUEUE = str(harness.BIN_DIR / "pgqueue")
WORK = [PGQUEUE, "work", "--app", "pgqueue_jobs", "--stop-when-empty", "--log-level", "warning"]
TIMEOUT = 30.0


def measure(
    queue: Queue, receiver: probe.Receiver, command: list[str], env: dict[str, str]
) -> float:
    """One run: seconds from the worker's spawn to its first handler's start."""
    queue.dispatch(Ping(seq=0))
    with open(env["BENCH_LOG"], "ab") as log:
        spawned = time.monotonic()
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=harness.BENCH_DIR
        )
    try:
        _, started = receiver.receive(TIMEOUT)
    except TimeoutError:
        harness.stop(process)
        raise harness.BenchmarkError(f"no job started within {TIMEOUT:g} s") from None
    if process.wait(TIMEOUT) != 0:
        raise harness.BenchmarkError(f"pgqueue work exited {process.returncode}")
    return started - spawned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs; the median is printed")
    parser.add_argument("--no-bytecode", action="store_true", help="compile modules on each start")
    parser.add_argument("flags", nargs="*", help="more `pgqueue work` flags, after --")
    args = parser.parse_args()
    cluster = harness.Cluster.start()
    log = cluster.log_path("startup")
    try:
        url = cluster.create_database("bench_startup")
        migrate = [PGQUEUE, "migrate"]
        subprocess.run(migrate, env=harness.worker_env(url), check=True, capture_output=True)
        receiver = probe.Receiver(cluster.root / "probe.sock")
        env = harness.worker_env(url, BENCH_LOG=str(log), **{probe.SOCKET_ENV: str(receiver.path)})
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(cluster.root / "pycache")
        command = [*WORK, *args.flags]
        with Queue(Settings(database_url=SecretStr(url))) as queue:
            if not args.no_bytecode:
                measure(queue, receiver, command, env)  # writes the bytecode: untimed
            runs = [measure(queue, receiver, command, env) for _ in range(args.runs)]
        receiver.close()
    except harness.BenchmarkError as exc:
        print(f"{exc}\n{harness.log_tail(log)}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        cluster.stop()
    each = ", ".join(f"{run * 1000:.0f}" for run in runs)
    print(f"spawn -> first job start: median {statistics.median(runs) * 1000:.0f} ms ({each})")


if __name__ == "__main__":
    main()
