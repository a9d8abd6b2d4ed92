"""Results, progress, trace context and throughput history (SPEC sections 11, 12 and 13).

- `job_results`: the return value and final state of a completed job whose type sets
  `keep_result`, until `keep_until` (pruned by `pgqueue cleanup`). Only opted-in types write here,
  so the others pay nothing. A failed or cancelled job's final state is its failed_jobs row.
- `jobs.progress` / `jobs.progress_message`: what `self.progress()` reported, written by the
  heartbeat that renews the job's lease (no round trip of its own).
- `jobs.trace_context`: the producer's W3C trace context (`traceparent`, `tracestate`), stored at
  dispatch when the `otel` extra is installed and a span is current; NULL otherwise, which costs no
  space. Kept apart from the payload, which stays the user's.
- `failed_jobs.started_at`: when the last attempt started, for `status` and the dashboard.
- `queue_throughput`: jobs completed and failed per queue per minute, added by each worker's
  heartbeat (one upsert per beat), for the dashboard's chart; pruned after a day.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
ALTER TABLE jobs
    ADD COLUMN progress         float8 CHECK (progress >= 0 AND progress <= 1),
    ADD COLUMN progress_message text,
    ADD COLUMN trace_context    jsonb;

ALTER TABLE failed_jobs
    ADD COLUMN started_at    timestamptz,
    ADD COLUMN trace_context jsonb;

-- Completed jobs of types with keep_result. The id is the job's, as in failed_jobs.
CREATE TABLE job_results (
    id          bigint      PRIMARY KEY,
    queue       text        NOT NULL,
    job_type    text        NOT NULL,
    attempts    integer     NOT NULL,
    result      jsonb       NOT NULL,  -- JSON null when handle returned None
    enqueued_at timestamptz NOT NULL,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    keep_until  timestamptz NOT NULL
);
CREATE INDEX job_results_keep_until_idx ON job_results (keep_until);

-- Per queue and minute, what the workers finished: the dashboard's throughput chart.
CREATE TABLE queue_throughput (
    queue     text        NOT NULL,
    minute    timestamptz NOT NULL,
    completed bigint      NOT NULL DEFAULT 0,
    failed    bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, minute)
);
CREATE INDEX queue_throughput_minute_idx ON queue_throughput (minute);
        """
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
DROP TABLE IF EXISTS queue_throughput;
DROP TABLE IF EXISTS job_results;
ALTER TABLE failed_jobs DROP COLUMN IF EXISTS trace_context, DROP COLUMN IF EXISTS started_at;
ALTER TABLE jobs
    DROP COLUMN IF EXISTS trace_context,
    DROP COLUMN IF EXISTS progress_message,
    DROP COLUMN IF EXISTS progress;
        """
    )
