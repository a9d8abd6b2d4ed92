"""Job limits: what the claim needs to enforce concurrency and rate limits (SPEC section 10).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the limits work


def downgrade() -> None:
    pass
