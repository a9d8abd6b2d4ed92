# syntax=docker/dockerfile:1
#
# pgqueue's image: the `pgqueue` command, run as a non-root user.
#
#   docker build -t pgqueue .
#   docker run --rm -e PGQUEUE_DATABASE_URL=postgresql://... pgqueue migrate
#   docker run --rm -e PGQUEUE_DATABASE_URL=postgresql://... -v "$PWD/myapp:/app/myapp:ro" \
#       pgqueue work --app myapp.jobs
#
# Job modules live under /app, which is on the import path: mount them there (as compose.yaml does
# with examples/), or build your own image `FROM pgqueue` that copies your code into /app and
# installs its requirements.

# ---- build: pgqueue's wheel and the wheels of everything it needs ----------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pgqueue ./pgqueue
COPY migrations ./migrations
# psycopg[binary] (the `binary` extra) brings its own libpq: the runtime needs no system packages.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[binary]"

# ---- runtime: install those wheels, offline; no compiler, no sources -------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "pgqueue[binary]"
RUN groupadd --system --gid 10001 pgqueue \
    && useradd --system --uid 10001 --gid pgqueue --no-create-home --home-dir /app pgqueue
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["pgqueue"]
CMD ["--help"]
