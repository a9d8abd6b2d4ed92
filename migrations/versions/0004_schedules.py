"""Periodic jobs: the schedules table whose compare-and-set fires each run once (SPEC section 8).

One row per schedule name. Workers that define a schedule register it at start and, at each fire
time, run one statement that moves `next_fire_at` on only if it still holds the value they read,
and inserts the job in the same statement: however many workers race, one job per fire time.
`jobs.scheduled_for` is the fire time a scheduled job was enqueued for (NULL for other jobs).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
-- Periodic jobs. A documented interface (docs/schema.md): columns are only ever added.
CREATE TABLE schedules (
    name          text        PRIMARY KEY CHECK (name <> ''),
    expression    text        NOT NULL,   -- the cron expression as written (5 fields or @alias)
    timezone      text        NOT NULL,   -- the IANA zone its fields are read in
    job_type      text        NOT NULL,
    queue         text        NOT NULL,
    defined_by    text        NOT NULL,   -- the module that defines it, for `pgqueue schedules`
    paused        boolean     NOT NULL DEFAULT false,
    -- The fire time of the last job this schedule enqueued; fire times only ever grow, so no fire
    -- time is enqueued twice.
    last_fire_at  timestamptz,
    -- The fire time due next: the compare-and-set value. NULL asks the next worker to compute it
    -- from now (a new or changed schedule, or one just resumed: nothing missed is caught up).
    next_fire_at  timestamptz,
    registered_at timestamptz NOT NULL DEFAULT now(),
    -- Touched by every worker that defines the schedule each time it checks it (at least every 30
    -- s): an old value means no running worker defines it any more.
    seen_at       timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE schedules IS
    'pgqueue: periodic jobs, one row per schedule name, fired by the workers that define them';

ALTER TABLE jobs ADD COLUMN scheduled_for timestamptz;

COMMENT ON COLUMN jobs.scheduled_for IS
    'pgqueue: the fire time a periodic job was enqueued for; NULL for jobs not from a schedule';
        """
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
ALTER TABLE jobs DROP COLUMN IF EXISTS scheduled_for;
DROP TABLE IF EXISTS schedules;
        """
    )
