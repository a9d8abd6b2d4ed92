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

-- name: reserve_job_ids
-- Take ids for a bulk dispatch from the jobs table's own sequence, so COPY can write them.
SELECT nextval(sequence.name)
FROM (SELECT pg_get_serial_sequence('{schema}.jobs', 'id')::regclass AS name) AS sequence,
     generate_series(1, %(count)s);

-- name: copy_jobs
-- Bulk dispatch: COPY is the fastest way into a table, and one statement is all or nothing.
COPY {schema}.jobs (id, queue, job_type, payload, priority, max_tries) FROM STDIN;

-- name: queue_size
-- Jobs waiting in a queue (ready or scheduled for later), not counting those running now.
SELECT count(*) FROM {schema}.jobs WHERE queue = %(queue)s AND lease_token IS NULL;

-- name: claim_jobs
-- Acknowledge finished jobs and claim ready ones in one round trip. The CTE locks at most `limit`
-- ready rows in claim order, skipping rows other workers hold; MATERIALIZED and = ANY(ARRAY(...))
-- keep the planner from re-running it (an IN (subquery) can lock more rows than the limit).
-- Completed rows are deleted only where the lease token still matches ours.
WITH completed AS (
    DELETE FROM {schema}.jobs AS j
    USING unnest(%(done_ids)s::bigint[], %(done_tokens)s::uuid[]) AS done (id, lease_token)
    WHERE j.id = done.id AND j.lease_token = done.lease_token
), picked AS MATERIALIZED (
    SELECT id FROM {schema}.jobs
    WHERE queue = %(queue)s AND lease_token IS NULL AND run_at <= now()
    ORDER BY priority, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.jobs AS j
SET lease_token = %(token)s,
    lease_expires_at = now() + %(lease_seconds)s * interval '1 second',
    attempts = j.attempts + 1,
    worker_id = %(worker_id)s,
    claimed_at = now()
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.queue, j.job_type, j.payload, j.attempts, j.max_tries, j.last_error;

-- name: complete_jobs
-- Delete finished jobs whose lease is still ours (used when no claim is due to carry them).
DELETE FROM {schema}.jobs AS j
USING unnest(%(done_ids)s::bigint[], %(done_tokens)s::uuid[]) AS done (id, lease_token)
WHERE j.id = done.id AND j.lease_token = done.lease_token;

-- name: retry_job
-- Put a failed attempt back for later, keeping its error; a no-op if we lost the lease.
UPDATE {schema}.jobs
SET lease_token = NULL, lease_expires_at = NULL,
    run_at = now() + %(delay)s * interval '1 second',
    last_error = %(error)s
WHERE id = %(id)s AND lease_token = %(token)s;

-- name: fail_job
-- Move a job that used its last try to failed_jobs in one statement: never in both, never in neither.
WITH moved AS (
    DELETE FROM {schema}.jobs
    WHERE id = %(id)s AND lease_token = %(token)s
    RETURNING *
)
INSERT INTO {schema}.failed_jobs (
    id, queue, job_type, payload, priority, attempts, max_tries,
    exception_class, exception_message, traceback, worker_id, enqueued_at
)
SELECT id, queue, job_type, payload, priority, %(attempts)s, max_tries,
       %(exception_class)s, %(exception_message)s, %(traceback)s, %(worker_id)s, enqueued_at
FROM moved
RETURNING id;

-- name: release_jobs
-- Return unfinished jobs at shutdown, at once and without spending a try, and wake other workers.
WITH released AS (
    UPDATE {schema}.jobs AS j
    SET lease_token = NULL, lease_expires_at = NULL, run_at = now(),
        attempts = greatest(j.attempts - 1, 0)
    FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS held (id, lease_token)
    WHERE j.id = held.id AND j.lease_token = held.lease_token
    RETURNING j.queue
)
SELECT queue, count(*), pg_notify(%(channel)s, queue) FROM released GROUP BY queue;

-- name: renew_leases
-- Heartbeat: extend the leases of the jobs this worker is running.
UPDATE {schema}.jobs AS j
SET lease_expires_at = now() + %(lease_seconds)s * interval '1 second'
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS held (id, lease_token)
WHERE j.id = held.id AND j.lease_token = held.lease_token
RETURNING j.id;

-- name: rescue_expired_leases
-- Return jobs whose worker stopped renewing their lease; the lost attempt counts as a try. Any
-- worker may run this at any time: SKIP LOCKED and the expiry test make concurrent runs harmless.
WITH expired AS MATERIALIZED (
    SELECT id FROM {schema}.jobs
    WHERE lease_token IS NOT NULL AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), rescued AS (
    UPDATE {schema}.jobs AS j
    SET lease_token = NULL, lease_expires_at = NULL,
        last_error = 'pgqueue.LeaseExpired: worker ' || coalesce(j.worker_id, 'unknown')
            || ' stopped renewing its lease during attempt ' || j.attempts
    WHERE j.id = ANY(ARRAY(SELECT id FROM expired))
    RETURNING j.queue
)
SELECT queue, count(*), pg_notify(%(channel)s, queue) FROM rescued GROUP BY queue;

-- name: queue_depths
-- Ready jobs per queue a worker serves, for its queue-depth metric.
SELECT queue, count(*) FROM {schema}.jobs
WHERE queue = ANY(%(queues)s::text[]) AND lease_token IS NULL AND run_at <= now()
GROUP BY queue;

-- name: register_worker
-- Record this worker process for stats and health checks.
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: worker_heartbeat
-- Keep this worker's row fresh and add what it finished since the last beat.
UPDATE {schema}.workers
SET heartbeat_at = now(),
    jobs_completed = jobs_completed + %(completed)s,
    jobs_failed = jobs_failed + %(failed)s
WHERE id = %(id)s;

-- name: unregister_worker
-- A worker that stops cleanly removes its row; rows of lost workers are pruned by prune_workers.
DELETE FROM {schema}.workers WHERE id = %(id)s;

-- name: prune_workers
-- Forget workers that have not sent a heartbeat for a long time (killed or lost machines).
DELETE FROM {schema}.workers
WHERE heartbeat_at < now() - %(older_than_seconds)s * interval '1 second';
