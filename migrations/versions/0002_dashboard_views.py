"""Views for the usual dashboard panels: backlog, failures per hour, error classes, workers.

Plain views over `jobs`, `failed_jobs` and `workers`, computed when read (nothing to refresh), so
Grafana, Metabase or psql can chart a queue without repeating its definitions of ready, scheduled
and running. docs/dashboards.md shows them in use; they are part of the documented interface, so a
later revision only ever adds columns to them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
-- One row per queue that has jobs: the same ready/scheduled/running split the claim uses, and how
-- long the oldest ready job has waited since it became ready (now() - run_at).
CREATE VIEW queue_backlog AS
SELECT queue,
       count(*) FILTER (WHERE lease_token IS NULL AND run_at <= now()) AS ready,
       count(*) FILTER (WHERE lease_token IS NULL AND run_at > now()) AS scheduled,
       count(*) FILTER (WHERE lease_token IS NOT NULL) AS running,
       count(*) FILTER (WHERE lease_expires_at < now()) AS expired_leases,
       min(run_at) FILTER (WHERE lease_token IS NULL AND run_at <= now()) AS oldest_ready_at,
       coalesce(
           extract(epoch FROM now() - min(run_at) FILTER (
               WHERE lease_token IS NULL AND run_at <= now()
           )),
           0
       )::double precision AS oldest_wait_seconds
FROM jobs
GROUP BY queue;

COMMENT ON VIEW queue_backlog IS
    'pgqueue: ready, scheduled and running jobs per queue, and the oldest ready job''s wait';

-- Failures bucketed by hour, queue and job type. Over the whole of failed_jobs (retention bounds
-- it); a panel over a time range filters on "hour", or on failed_jobs.failed_at directly, which
-- its index serves.
CREATE VIEW failures_per_hour AS
SELECT date_trunc('hour', failed_at) AS hour,
       queue,
       job_type,
       count(*) AS failures
FROM failed_jobs
GROUP BY 1, 2, 3;

COMMENT ON VIEW failures_per_hour IS
    'pgqueue: failed jobs per hour, queue and job type';

-- One row per exception class: how often it struck recently and in all, where, and its latest
-- message, so the first thing to fix is the first row when ordered by failures_last_day.
CREATE VIEW error_classes AS
SELECT exception_class,
       count(*) FILTER (WHERE failed_at > now() - interval '1 hour') AS failures_last_hour,
       count(*) FILTER (WHERE failed_at > now() - interval '1 day') AS failures_last_day,
       count(*) AS failures_total,
       array_agg(DISTINCT job_type ORDER BY job_type) AS job_types,
       max(failed_at) AS last_failed_at,
       (array_agg(exception_message ORDER BY failed_at DESC))[1] AS last_message
FROM failed_jobs
GROUP BY exception_class;

COMMENT ON VIEW error_classes IS
    'pgqueue: failures per exception class, with the latest message';

-- Every worker row (rows of workers that stopped cleanly are deleted; rows of lost workers are
-- pruned after an hour or more), with the seconds since its last heartbeat. "alive" uses the same
-- two-minute cutoff as `pgqueue doctor` (pgqueue.doctor.WORKER_STALE_SECONDS).
CREATE VIEW worker_status AS
SELECT id,
       host,
       pid,
       queues,
       concurrency,
       started_at,
       heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::double precision AS seconds_since_heartbeat,
       heartbeat_at > now() - interval '2 minutes' AS alive,
       jobs_completed,
       jobs_failed,
       -- An average over the worker's life, not a recent rate: counters only ever grow.
       (jobs_completed * 60
           / greatest(extract(epoch FROM heartbeat_at - started_at), 1))::double precision
           AS avg_completed_per_minute
FROM workers;

COMMENT ON VIEW worker_status IS
    'pgqueue: worker processes, their last heartbeat and their counters';
        """
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
DROP VIEW IF EXISTS worker_status;
DROP VIEW IF EXISTS error_classes;
DROP VIEW IF EXISTS failures_per_hour;
DROP VIEW IF EXISTS queue_backlog;
        """
    )
