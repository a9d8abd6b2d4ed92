"""Queue controls: one row per queue that was paused or given runtime limits (SPEC section 10).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the pause/resume work


def downgrade() -> None:
    pass
