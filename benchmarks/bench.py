"""pgqueue against procrastinate, PgQueuer and plain SQL, on one PostgreSQL, in one run.

Run it with `bash benchmarks/run.sh` (which makes benchmarks/.venv first); options are passed on,
e.g. `bash benchmarks/run.sh --jobs 5000 --backlog 100000 --only pgqueue`. See README.md here for
what each number means.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Protocol

import harness
import raw_bench
from pgqueue_bench import DEFAULT_VARIANT, PgQueue
from pgqueuer_bench import PgQueuer
from procrastinate_bench import Procrastinate
from report import Report, Row, Target, millis, rate

SYSTEMS = ("pgqueue", "procrastinate", "pgqueuer")
SECTIONS = ("processing", "raw", "bulk", "single", "latency", "backlog")
BULK_BATCHES = (1_000, 10_000)


class System(Protocol):
    """What every queue under test offers the benchmark."""

    name: str
    bulk_api: str
    single_api: str

    @property
    def version(self) -> str: ...

    def setup(self) -> None: ...

    def close(self) -> None: ...

    def variants(self) -> list[harness.Variant]: ...

    def bulk(self, jobs: int, batch: int) -> float: ...

    def single(self, jobs: int) -> float: ...

    def latency(self, probe: harness.LatencyProbe) -> list[float]: ...


@dataclass
class Run:
    """One benchmark run: its options, the cluster, the systems and what they measured."""

    args: argparse.Namespace
    cluster: harness.Cluster
    systems: list[System]
    report: Report

    @property
    def pgqueue(self) -> PgQueue | None:
        for system in self.systems:
            if isinstance(system, PgQueue):
                return system
        return None


# ---- sections ---------------------------------------------------------------------------------


def processing(run: Run) -> None:
    """Every variant of every system once, then the repeatable ones again, `--repeat` rounds in
    all, interleaved so that a slow spell of the machine hits them alike; each variant's median
    run is reported."""
    jobs = run.args.jobs
    measure = f"processing {jobs:,} no-op jobs"
    variants = [(system, variant) for system in run.systems for variant in system.variants()]
    drains: dict[tuple[str, str], list[harness.Drain]] = {
        (system.name, variant.label): [] for system, variant in variants
    }
    for round_number in range(run.args.repeat):
        for system, variant in variants:
            if round_number == 0 or variant.repeat:
                drain = variant.run(jobs)
                drains[system.name, variant.label].append(drain)
                progress(f"{system.name} {variant.label}: {drain.rate:,.0f} jobs/s")
    for system in run.systems:
        best: tuple[str, float] | None = None
        for variant in system.variants():
            runs = drains[system.name, variant.label]
            drain = _median_run(runs)
            key = f"work.{system.name}.{variant.label}"
            row = Row(measure, system.name, variant.label, rate(drain.rate), _drain_notes(runs))
            run.report.add(row, key, drain.rate)
            if drain.steady_rate is not None:
                run.report.figures[f"{key}.steady"] = drain.steady_rate
            if best is None or drain.rate > best[1]:
                best = (variant.label, drain.rate)
        if best is not None and not isinstance(system, PgQueue):
            row = Row(measure, system.name, f"best: {best[0]}", rate(best[1]))
            run.report.add(row, f"work.{system.name}.best", best[1])


def _drain_notes(runs: list[harness.Drain]) -> str:
    """The median run's timings, and every run's rate when there were several."""
    drain = _median_run(runs)
    steady = "n/a" if drain.steady_rate is None else f"{drain.steady_rate:,.0f}"
    notes = (
        f"empty at {drain.to_empty:.2f} s, first job done at {drain.to_first:.2f} s "
        f"({steady}/s after it), exit at {drain.to_exit:.2f} s"
    )
    if len(runs) > 1:
        notes += f"; median of {', '.join(f'{each.rate:,.0f}' for each in runs)}"
    return notes


def _median_run(runs: list[harness.Drain]) -> harness.Drain:
    """The median run by rate (the lower of the middle two for an even count)."""
    return sorted(runs, key=lambda each: each.rate)[(len(runs) - 1) // 2]


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def raw(run: Run) -> None:
    pgqueue = run.pgqueue
    if pgqueue is None:
        return
    jobs = run.args.jobs
    seconds = raw_bench.claim_delete(pgqueue, jobs)
    notes = (
        f"{jobs:,} rows; DELETE ... id = ANY(ARRAY(SELECT ... LIMIT 100 FOR UPDATE SKIP LOCKED))"
    )
    run.report.add(
        Row(
            "raw SQL ceiling",
            "plain SQL",
            "claim+delete 100 rows per commit",
            rate(jobs / seconds, "rows/s"),
            notes,
        ),
        "raw.claim",
        jobs / seconds,
    )
    _share_of_ceiling(run, jobs / seconds, "default, as a share of it")
    seconds = raw_bench.lease_ack(pgqueue, jobs)
    notes = (
        f"{jobs:,} rows; each statement deletes the rows the previous one leased and leases the "
        "next 100: the two writes per job of any worker that acknowledges after running"
    )
    run.report.add(
        Row(
            "raw SQL ceiling",
            "plain SQL",
            "lease+ack 100 rows per commit",
            rate(jobs / seconds, "rows/s"),
            notes,
        ),
        "raw.lease_ack",
        jobs / seconds,
    )
    _share_of_ceiling(run, jobs / seconds, "default, as a share of lease+ack")


def _share_of_ceiling(run: Run, ceiling: float, setting: str) -> None:
    default = f"work.pgqueue.{DEFAULT_VARIANT}"
    if default in run.report.figures:
        share = 100 * run.report.figures[default] / ceiling
        steady = run.report.figures.get(f"{default}.steady")
        notes = (
            ""
            if steady is None
            else f"{100 * steady / ceiling:.0f}% counting from its first finished job "
            "(start-up left out)"
        )
        run.report.add(Row("raw SQL ceiling", "pgqueue", setting, f"{share:.0f}%", notes))


@dataclass(frozen=True)
class Contender:
    """One line of a dispatch comparison: who, how, and a call returning seconds for `jobs`."""

    key: str
    system: str
    setting: str
    seconds: Callable[[], float]


def compare(run: Run, measure: str, jobs: int, contenders: list[Contender]) -> None:
    """Time every contender `--rounds` times, interleaved so that a slow spell of the disk (fsync
    latency varies here) hits them all alike; report each one's median rate."""
    rates: dict[str, list[float]] = {contender.key: [] for contender in contenders}
    for _ in range(run.args.rounds):
        for contender in contenders:
            rates[contender.key].append(jobs / contender.seconds())
    for contender in contenders:
        values = rates[contender.key]
        middle = sorted(values)[(len(values) - 1) // 2]
        notes = f"median of {len(values)}: {', '.join(f'{value:,.0f}' for value in values)}"
        row = Row(measure, contender.system, contender.setting, rate(middle), notes)
        run.report.add(row, contender.key, middle)


def bulk(run: Run) -> None:
    jobs = run.args.bulk_jobs
    for batch in BULK_BATCHES:
        contenders = []
        for system in run.systems:
            contenders.append(
                Contender(
                    f"bulk.{system.name}.{batch}",
                    system.name,
                    system.bulk_api,
                    functools.partial(system.bulk, jobs, batch),
                )
            )
            if isinstance(system, PgQueue):
                contenders.append(
                    Contender(
                        f"bulk.copy.{batch}",
                        "plain SQL",
                        "COPY into pgqueue.jobs",
                        functools.partial(raw_bench.copy, system, jobs, batch),
                    )
                )
                contenders.append(
                    Contender(
                        f"bulk.plain.{batch}",
                        "plain SQL",
                        "COPY into a plain table",
                        functools.partial(raw_bench.copy, system, jobs, batch, plain=True),
                    )
                )
        compare(run, f"bulk dispatch, {jobs:,} jobs in batches of {batch:,}", jobs, contenders)


def single(run: Run) -> None:
    jobs = run.args.single_jobs
    contenders = []
    for system in run.systems:
        contenders.append(
            Contender(
                f"single.{system.name}",
                system.name,
                system.single_api,
                functools.partial(system.single, jobs),
            )
        )
        if isinstance(system, PgQueue):
            contenders.append(
                Contender(
                    "single.raw",
                    "plain SQL",
                    "INSERT ... RETURNING id",
                    functools.partial(raw_bench.insert_loop, system, jobs),
                )
            )
    compare(run, f"single dispatch, {jobs:,} jobs, one commit each", jobs, contenders)


def latency(run: Run) -> None:
    """`--latency-samples` jobs per system, in `--rounds` rounds with a fresh worker each, the
    systems interleaved so that a slow spell of the disk (every claim waits for an fsync) hits
    them alike."""
    per_round = max(1, run.args.latency_samples // run.args.rounds)
    probe = harness.LatencyProbe(run.cluster.root / "probe.sock", per_round)
    delays: dict[str, list[float]] = {system.name: [] for system in run.systems}
    for _ in range(run.args.rounds):
        for system in run.systems:
            delays[system.name] += system.latency(probe)
    measure = f"wake-up latency, idle worker, {per_round * run.args.rounds} jobs"
    for system in run.systems:
        values = delays[system.name]
        p50, p99 = harness.percentile(values, 0.5), harness.percentile(values, 0.99)
        notes = f"min {millis(min(values))}, max {millis(max(values))}; commit -> handler start"
        result = f"p50 {millis(p50)} / p99 {millis(p99)}"
        run.report.add(Row(measure, system.name, "default settings", result, notes))
        run.report.figures[f"latency.{system.name}.p50"] = p50 * 1000
        run.report.figures[f"latency.{system.name}.p99"] = p99 * 1000


def backlog(run: Run) -> None:
    pgqueue = run.pgqueue
    if pgqueue is None:
        return
    processed, large = run.args.jobs, run.args.backlog
    measure = f"backlog: process {processed:,} (--max-jobs)"
    for waiting, key in ((processed, "backlog.small"), (large, "backlog.large")):
        seconds = pgqueue.backlog_run(waiting, processed)
        run.report.add(
            Row(
                measure,
                "pgqueue",
                f"{waiting:,} jobs waiting",
                rate(processed / seconds),
                f"spawn->exit {seconds:.2f} s",
            ),
            key,
            processed / seconds,
        )


SECTION_FUNCTIONS: dict[str, Callable[[Run], None]] = {
    "processing": processing,
    "raw": raw,
    "bulk": bulk,
    "single": single,
    "latency": latency,
    "backlog": backlog,
}


# ---- targets ----------------------------------------------------------------------------------


def targets(args: argparse.Namespace) -> list[Target]:
    default = f"work.pgqueue.{DEFAULT_VARIANT}"

    def ratio(top: str, bottom: str, scale: float = 1.0) -> Callable[[dict[str, float]], float]:
        return lambda figures: scale * figures[top] / figures[bottom]

    return [
        Target(
            "pgqueue default / PgQueuer best", 3, True, "x", ratio(default, "work.PgQueuer.best")
        ),
        Target(
            "pgqueue default / procrastinate best",
            30,
            True,
            "x",
            ratio(default, "work.procrastinate.best"),
        ),
        Target(
            # The issue 8 trade-off: durable worker writes (the default) against the opt-out.
            "pgqueue durable writes / async commit",
            85,
            True,
            "%",
            ratio(default, "work.pgqueue.async commit", 100),
        ),
        Target(
            "pgqueue logging at info (default) / at warning",
            90,
            True,
            "%",
            ratio("work.pgqueue.--log-level info", default, 100),
        ),
        Target(
            "pgqueue steady state / raw claim+delete",
            50,
            True,
            "%",
            ratio(f"{default}.steady", "raw.claim", 100),
        ),
        Target(
            # Not pgqueue: plain SQL doing a leasing worker's two writes per job, against the
            # one write of claim+delete. Where it is under 50%, so is every such worker.
            "raw lease+ack / raw claim+delete (SQL alone, no worker)",
            50,
            True,
            "%",
            ratio("raw.lease_ack", "raw.claim", 100),
        ),
        Target(
            "pgqueue steady state / raw lease+ack",
            50,
            True,
            "%",
            ratio(f"{default}.steady", "raw.lease_ack", 100),
        ),
        Target(
            "pgqueue --processes 2 / one process",
            1.6,
            True,
            "x",
            ratio("work.pgqueue.--processes 2", default),
        ),
        Target(
            "Queue.bulk / COPY into pgqueue.jobs, batches of 10,000",
            70,
            True,
            "%",
            ratio("bulk.pgqueue.10000", "bulk.copy.10000", 100),
        ),
        Target(
            "Queue.bulk / COPY into a plain table, batches of 10,000",
            60,
            True,
            "%",
            ratio("bulk.pgqueue.10000", "bulk.plain.10000", 100),
        ),
        Target(
            "Queue.dispatch / raw INSERT loop",
            85,
            True,
            "%",
            ratio("single.pgqueue", "single.raw", 100),
        ),
        Target(
            "pgqueue wake-up p50",
            1.5,
            False,
            " ms",
            lambda figures: figures["latency.pgqueue.p50"],
        ),
        Target(
            "pgqueue wake-up p99", 3, False, " ms", lambda figures: figures["latency.pgqueue.p99"]
        ),
        Target(
            f"pgqueue {args.backlog:,} / {args.jobs:,} waiting",
            90,
            True,
            "%",
            ratio("backlog.large", "backlog.small", 100),
        ),
    ]


# ---- the run ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per processing run (20,000)")
    parser.add_argument(
        "--bulk-jobs", type=int, default=50_000, help="jobs per bulk dispatch round (50,000)"
    )
    parser.add_argument(
        "--single-jobs", type=int, default=1_000, help="jobs per single dispatch round (1,000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the dispatch and latency comparisons (3)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each processing variant, except the slow ones that run once (3)",
    )
    parser.add_argument(
        "--latency-samples", type=int, default=200, help="jobs per wake-up latency run (200)"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=1_000_000,
        help="jobs waiting in the large backlog run (1,000,000)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SYSTEMS),
        help=f"systems to measure, comma-separated ({','.join(SYSTEMS)})",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"what to measure, comma-separated ({','.join(SECTIONS)})",
    )
    args = parser.parse_args(argv)
    args.only = _choice(parser, "--only", args.only, SYSTEMS)
    args.sections = _choice(parser, "--sections", args.sections, SECTIONS)
    return args


def _choice(
    parser: argparse.ArgumentParser, flag: str, value: str, allowed: Sequence[str]
) -> list[str]:
    chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        parser.error(f"{flag}: unknown {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return [name for name in allowed if name in chosen]


def make_systems(cluster: harness.Cluster, names: Sequence[str]) -> list[System]:
    classes: dict[str, Callable[[harness.Cluster], System]] = {
        "pgqueue": PgQueue,
        "procrastinate": Procrastinate,
        "pgqueuer": PgQueuer,
    }
    return [classes[name](cluster) for name in names]


def environment(run: Run) -> list[str]:
    """What the numbers were measured on: versions, machine, server settings."""
    url = run.cluster.embedded.url()
    settings = ", ".join(
        f"{name}={harness.scalar(url, f'SHOW {name}')}"
        for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
    )
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
        cwd=harness.BENCH_DIR,
    ).stdout.strip()
    lines = [
        f"{system.name} {system.version}"
        + (f" (git {commit})" if isinstance(system, PgQueue) and commit else "")
        for system in run.systems
    ]
    lines += [
        f"psycopg {version('psycopg')}, Python {platform.python_version()}",
        f"PostgreSQL {harness.scalar(url, 'SHOW server_version')} ({settings})",
        f"{platform.system()} {platform.release()}, {_cpus()} CPUs, one cluster for every system",
        f"load average at the start: {_load()} (other processes on the machine share its CPUs)",
    ]
    return lines


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _cpus() -> int:
    return os.cpu_count() or 0


LEGEND = """\
processing: a worker process is spawned over a queue already holding the jobs (VACUUM ANALYZE and
  CHECKPOINT first); jobs/s = jobs / (spawn -> first poll that finds no job left, polled every
  10 ms). Start-up is included, nothing is subtracted; the notes give the rate after the first job.
bulk/single dispatch: jobs/s over the enqueue calls only; the inputs (Job instances, dicts, bytes,
  COPY rows) are built before the clock starts. Every call commits (autocommit).
wake-up latency: job committed -> its handler starts, on an idle worker, one job every 20 ms.
backlog: `pgqueue work --max-jobs N` with N or with --backlog jobs waiting; spawn -> exit."""


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    cluster = harness.Cluster.start()
    systems = make_systems(cluster, args.only)
    run = Run(args, cluster, systems, Report())
    failure: harness.BenchmarkError | None = None
    header: list[str] = []
    try:
        for system in systems:
            system.setup()
        header = environment(run)
        progress("\n  ".join(header))
        for section in args.sections:
            SECTION_FUNCTIONS[section](run)
    except harness.BenchmarkError as exc:
        failure = exc
    finally:
        for system in systems:
            system.close()
        cluster.stop()
    print("\n".join(["", *header, "", run.report.table(targets(args)), "", LEGEND, ""]))
    print(f"whole run: {time.monotonic() - started:.0f} s; load average at the end: {_load()}")
    if failure is not None:
        print(f"stopped early: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
