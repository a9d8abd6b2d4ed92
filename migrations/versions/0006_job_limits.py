"""Job limits: what the claim needs to enforce concurrency and rate limits (SPEC section 10).

A job type's limits (`concurrency`, `rate_limit`, `limit_key`) live on its class; a queue's
runtime limits in `queues` (0005). Workers whose job types and queues have no limit claim with
`claim_jobs`, which none of this touches; the others claim with `claim_limited_jobs`
(docs/limits.md), which needs:

- `jobs.limit_key`: the key a leased row counts against, written by the limited claim itself (the
  payload field's value as text, '' for a type limited as a whole), so no dispatch path has to
  know about limits. A row claimed by the plain claim keeps it NULL and never enters the index
  below, so unlimited jobs pay nothing for it.
- `job_limits`: one row per limited job type, locked by every limited claim of that type, so
  claims of one type take turns (see lock_limits for why the lock is its own statement).
- `limit_starts`: recent starts of rate-limited job types and queues, counted over a sliding
  window in database time and pruned by the claim.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
ALTER TABLE jobs ADD COLUMN limit_key text;

-- The leased rows of limited job types, counted per (type, key) by the limited claim.
CREATE INDEX jobs_limited_running_idx ON jobs (job_type, limit_key)
    WHERE lease_token IS NOT NULL AND limit_key IS NOT NULL;

-- One row per job type a worker declared limits for, as the worker last registered them; the
-- claim locks it (FOR UPDATE) so two claims of one type never count the same free slots.
CREATE TABLE job_limits (
    job_type            text        PRIMARY KEY,
    concurrency         integer     CHECK (concurrency > 0),
    rate_limit          integer     CHECK (rate_limit > 0),
    rate_period_seconds integer     CHECK (rate_period_seconds > 0),
    limit_field         text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Starts within the longest rate period: kind 'job_type' (name, limit_key) or 'queue' (name, '').
CREATE TABLE limit_starts (
    kind       text        NOT NULL CHECK (kind IN ('job_type', 'queue')),
    name       text        NOT NULL,
    limit_key  text        NOT NULL,
    started_at timestamptz NOT NULL
);

CREATE INDEX limit_starts_idx ON limit_starts (kind, name, limit_key, started_at);
        """
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
DROP TABLE IF EXISTS limit_starts;
DROP TABLE IF EXISTS job_limits;
DROP INDEX IF EXISTS jobs_limited_running_idx;
ALTER TABLE jobs DROP COLUMN IF EXISTS limit_key;
        """
    )
