"""Unique jobs: a key column on jobs and the unique index that enforces it (SPEC section 9).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the unique-jobs work


def downgrade() -> None:
    pass
