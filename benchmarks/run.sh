#!/usr/bin/env bash
# Run the benchmark by hand (not in CI): make benchmarks/.venv with pgqueue (from this checkout),
# procrastinate 3.x and PgQueuer, then run bench.py, which starts its own PostgreSQL.
# Options go to bench.py, e.g. `bash benchmarks/run.sh --jobs 5000 --backlog 100000 --only pgqueue`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
quiet_pip() { "${pip[@]}" "$@" 2> >(grep -v '^WARNING: Location' >&2); }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# The peers at their latest releases on each run. PgQueuer 1.6's `pgq run` fails under typer 0.29
# (its --log-level enum arrives as a plain string), hence the typer bound.
(cd "$repo" && quiet_pip -e '.[binary]')
quiet_pip --upgrade 'procrastinate>=3,<4' 'pgqueuer[asyncpg]' 'typer<0.29'
exec "$venv/bin/python" "$here/bench.py" "$@"
