"""Cancelling jobs: a running job's cancel request, recorded on its row (SPEC section 10).

A queued job is cancelled at once (moved to failed_jobs); a running one cannot be, since only its
worker can stop it. `pgqueue cancel` then sets `jobs.cancel_requested_at` and wakes the workers
with a NOTIFY; the worker holding the job reads the column back with its lease renewal (at once on
the NOTIFY, else at its next heartbeat), stops the job and moves it to failed_jobs. Rows never
cancelled keep the column NULL, which costs no space.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql("ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;")


def downgrade() -> None:
    op.get_bind().exec_driver_sql("ALTER TABLE jobs DROP COLUMN IF EXISTS cancel_requested_at;")
