"""Periodic jobs: the schedules table whose compare-and-set fires each run once (SPEC section 8).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the periodic-jobs work


def downgrade() -> None:
    pass
