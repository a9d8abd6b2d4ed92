"""Unique jobs: a key column on jobs and the unique index that enforces it (SPEC section 9).

`jobs.unique_key` is a hash of the job type's name and the job's key (docs/unique-jobs.md), so
keys of any length index alike and two job types never share one. `unique_while` says how long
the row holds it: 'queued' until a worker claims it, 'active' until it ends. The unique index
covers only the rows holding their key (never claimed, or 'active'), so a second dispatch of a
held key waits for the first transaction in the index and `INSERT ... ON CONFLICT` settles it,
with no advisory lock and no error; rows without a key are in neither index, so jobs that are
not unique cost nothing. A 'queued' job back from an attempt (waiting for a retry) keeps its key
outside the unique index and is found through the lookup index, so no worker statement ever
enters the unique index and none can wait on a caller's transaction there.

`failed_jobs` keeps the key, so `pgqueue failed retry` can honour it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
ALTER TABLE jobs
    ADD COLUMN unique_key   text,
    ADD COLUMN unique_while text CHECK (unique_while IN ('queued', 'active'));

-- One holder per key: the rows not yet claimed, and the 'active' ones until they end. The claim
-- sets claimed_at, so a 'queued' row leaves this index by the claim's own update: the claim
-- statement needs no change and pays nothing.
CREATE UNIQUE INDEX jobs_unique_key_idx ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND (claimed_at IS NULL OR unique_while = 'active');

-- Every row with a key, for finding a 'queued' job waiting for a retry (outside the index above).
CREATE INDEX jobs_unique_key_lookup_idx ON jobs (unique_key) WHERE unique_key IS NOT NULL;

ALTER TABLE failed_jobs
    ADD COLUMN unique_key   text,
    ADD COLUMN unique_while text;
        """
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
ALTER TABLE failed_jobs DROP COLUMN IF EXISTS unique_while, DROP COLUMN IF EXISTS unique_key;
DROP INDEX IF EXISTS jobs_unique_key_lookup_idx;
DROP INDEX IF EXISTS jobs_unique_key_idx;
ALTER TABLE jobs DROP COLUMN IF EXISTS unique_while, DROP COLUMN IF EXISTS unique_key;
        """
    )
