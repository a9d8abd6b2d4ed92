-- Every statement pgqueue runs at run time. `{schema}` is replaced by the quoted schema name;
-- values are always bind parameters. Schema DDL lives in the alembic migrations, not here.

-- name: dispatch_job
-- Insert one job; run_at is the given time, else the database's now() plus the delay.
INSERT INTO {schema}.jobs (queue, job_type, payload, priority, run_at, max_tries)
VALUES (
    %(queue)s, %(job_type)s, %(payload)s::jsonb, %(priority)s,
    coalesce(%(run_at)s::timestamptz, now() + %(delay)s * interval '1 second'),
    %(max_tries)s
)
RETURNING id;

-- name: bulk_dispatch_jobs
-- Insert many jobs in one statement (one round trip, all or nothing), ids returned in input order.
INSERT INTO {schema}.jobs (queue, job_type, payload, priority, max_tries)
SELECT queue, job_type, payload::jsonb, priority, max_tries
FROM unnest(
    %(queues)s::text[], %(job_types)s::text[], %(payloads)s::text[],
    %(priorities)s::integer[], %(max_tries)s::integer[]
) AS batch (queue, job_type, payload, priority, max_tries)
RETURNING id;

-- name: queue_size
-- Jobs waiting in a queue (ready or scheduled for later), not counting those running now.
SELECT count(*) FROM {schema}.jobs WHERE queue = %(queue)s AND lease_token IS NULL;
