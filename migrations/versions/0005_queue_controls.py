"""Queue controls: one row per queue that was paused or given runtime limits (SPEC section 10).

A queue needs no row to exist: jobs name their queue freely, and a queue without a row is running
and unlimited. `pgqueue queues pause` upserts the row and sets `paused_at`; `resume` clears it. The
claim checks the row once per statement, so a pause stops new claims within one round trip.
`pgqueue queues limit` sets the runtime limits (both apply beside a job class's own limits).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
-- Queue controls. A documented interface (docs/schema.md): columns are only ever added.
CREATE TABLE queues (
    name                text        PRIMARY KEY CHECK (name <> ''),
    -- When the queue was paused; NULL: not paused. The claim takes no job of a paused queue.
    paused_at           timestamptz,
    paused_reason       text,
    -- Runtime limits (NULL: none): at most `concurrency` running at once, at most `rate_limit`
    -- starts per `rate_period_seconds`, across all workers.
    concurrency         integer     CHECK (concurrency > 0),
    rate_limit          integer     CHECK (rate_limit > 0),
    rate_period_seconds integer     CHECK (rate_period_seconds > 0),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_period_seconds IS NULL))
);

COMMENT ON TABLE queues IS
    'pgqueue: queues that were paused or given runtime limits; a queue without a row runs unlimited';
        """
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
DROP TABLE IF EXISTS queues;
        """
    )
