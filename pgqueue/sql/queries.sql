-- Every statement pgqueue runs at run time. `{schema}` is replaced by the quoted schema name;
-- values are always bind parameters. Schema DDL lives in the alembic migrations, not here.

-- name: dispatch_job
-- Insert one job; run_at is the given time, else the database's now() plus the delay. The trace
-- context is NULL unless tracing is on (pgqueue/tracing.py), in every statement that adds jobs.
INSERT INTO {schema}.jobs (queue, job_type, payload, priority, run_at, max_tries, trace_context)
VALUES (
    %(queue)s, %(job_type)s, %(payload)s::jsonb, %(priority)s,
    coalesce(%(run_at)s::timestamptz, now() + %(delay)s * interval '1 second'),
    %(max_tries)s, %(trace_context)s::jsonb
)
RETURNING id;

-- name: dispatch_unique_job
-- Insert one job with a unique key unless another job holds the key, and return the id either
-- way, in one statement that never raises on a duplicate (docs/unique-jobs.md). ON CONFLICT on
-- the unique index waits for a transaction inserting the same key and inserts only if it rolls
-- back. A 'queued' job back from an attempt holds its key outside that index and is looked up
-- first. The holder is read in the statement's snapshot: when it committed while the insert
-- waited, no row comes back and the caller runs this again. No UPDATE, so the dispatch role can
-- run it (on_conflict="replace" is replace_unique_job).
WITH waiting AS (
    SELECT id FROM {schema}.jobs
    WHERE unique_key = %(unique_key)s AND lease_token IS NULL AND claimed_at IS NOT NULL
    LIMIT 1
), inserted AS (
    INSERT INTO {schema}.jobs (
        queue, job_type, payload, priority, run_at, max_tries, unique_key, unique_while,
        trace_context
    )
    SELECT %(queue)s, %(job_type)s, %(payload)s::jsonb, %(priority)s,
           coalesce(%(run_at)s::timestamptz, now() + %(delay)s * interval '1 second'),
           %(max_tries)s, %(unique_key)s, %(unique_while)s, %(trace_context)s::jsonb
    WHERE NOT EXISTS (SELECT FROM waiting)
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND (claimed_at IS NULL OR unique_while = 'active')
        DO NOTHING
    RETURNING id
)
SELECT id FROM inserted
UNION ALL
(
    SELECT id FROM {schema}.jobs
    WHERE unique_key = %(unique_key)s AND (lease_token IS NULL OR unique_while = 'active')
      AND NOT EXISTS (SELECT FROM inserted)
    ORDER BY id LIMIT 1
);

-- name: replace_unique_job
-- dispatch_unique_job with on_conflict="replace" (debounce): a queued holder of the key takes the
-- new payload and run_at; a running one is never touched, so no worker waits on its lock.
WITH waiting AS (
    SELECT id FROM {schema}.jobs
    WHERE unique_key = %(unique_key)s AND lease_token IS NULL AND claimed_at IS NOT NULL
    LIMIT 1
), inserted AS (
    INSERT INTO {schema}.jobs (
        queue, job_type, payload, priority, run_at, max_tries, unique_key, unique_while,
        trace_context
    )
    SELECT %(queue)s, %(job_type)s, %(payload)s::jsonb, %(priority)s,
           coalesce(%(run_at)s::timestamptz, now() + %(delay)s * interval '1 second'),
           %(max_tries)s, %(unique_key)s, %(unique_while)s, %(trace_context)s::jsonb
    WHERE NOT EXISTS (SELECT FROM waiting)
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND (claimed_at IS NULL OR unique_while = 'active')
        DO NOTHING
    RETURNING id
), replaced AS (
    UPDATE {schema}.jobs
    SET payload = %(payload)s::jsonb,
        run_at = coalesce(%(run_at)s::timestamptz, now() + %(delay)s * interval '1 second'),
        -- The row now carries this dispatch's payload, so it links to this dispatch's trace.
        trace_context = %(trace_context)s::jsonb
    WHERE NOT EXISTS (SELECT FROM inserted)
      AND id = (
          SELECT id FROM {schema}.jobs
          WHERE unique_key = %(unique_key)s AND lease_token IS NULL
          ORDER BY id LIMIT 1
      )
      AND lease_token IS NULL
    RETURNING id
)
SELECT id FROM inserted
UNION ALL
SELECT id FROM replaced
UNION ALL
(
    SELECT id FROM {schema}.jobs
    WHERE unique_key = %(unique_key)s AND (lease_token IS NULL OR unique_while = 'active')
      AND NOT EXISTS (SELECT FROM inserted) AND NOT EXISTS (SELECT FROM replaced)
    ORDER BY id LIMIT 1
);

-- name: bulk_unique_jobs
-- Bulk dispatch of a batch holding unique jobs (keys already distinct within it): one statement,
-- one id per row in `ord` order, as dispatch_unique_job does for one job. Ids come from the
-- table's sequence in batch order (as reserve_job_ids), so inserted rows are told from the
-- holders of their keys; a row whose holder committed while the insert waited comes back with a
-- NULL id, and the caller sends it again.
WITH sequence AS MATERIALIZED (
    SELECT pg_get_serial_sequence('{schema}.jobs', 'id')::regclass AS name
), batch AS MATERIALIZED (
    SELECT nextval(sequence.name) AS id, b.*
    FROM sequence, unnest(
        %(queues)s::text[], %(job_types)s::text[], %(payloads)s::text[],
        %(priorities)s::integer[], %(max_tries)s::integer[], %(unique_keys)s::text[],
        %(unique_whiles)s::text[]
    ) WITH ORDINALITY AS b (
        queue, job_type, payload, priority, max_tries, unique_key, unique_while, ord
    )
), waiting AS (
    SELECT DISTINCT ON (unique_key) unique_key, id FROM {schema}.jobs
    WHERE unique_key = ANY(%(unique_keys)s::text[]) AND lease_token IS NULL
      AND claimed_at IS NOT NULL
    ORDER BY unique_key, id
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, queue, job_type, payload, priority, max_tries, unique_key, unique_while,
        trace_context
    )
    SELECT b.id, b.queue, b.job_type, b.payload::jsonb, b.priority, b.max_tries, b.unique_key,
           b.unique_while, %(trace_context)s::jsonb  -- one producer span for the batch
    FROM batch AS b
    WHERE NOT EXISTS (SELECT FROM waiting AS w WHERE w.unique_key = b.unique_key)
    ORDER BY b.ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND (claimed_at IS NULL OR unique_while = 'active')
        DO NOTHING
    RETURNING id
), holders AS (
    SELECT DISTINCT ON (unique_key) unique_key, id FROM {schema}.jobs
    WHERE unique_key = ANY(%(unique_keys)s::text[])
      AND (lease_token IS NULL OR unique_while = 'active')
    ORDER BY unique_key, id
)
SELECT b.ord, coalesce(i.id, h.id)
FROM batch AS b
LEFT JOIN inserted AS i ON i.id = b.id
LEFT JOIN holders AS h ON i.id IS NULL AND h.unique_key = b.unique_key
ORDER BY b.ord;

-- name: reserve_job_ids
-- Take ids for a bulk dispatch from the jobs table's own sequence, so COPY can write them: one
-- array, in the order nextval gave them, so one row comes back however many jobs there are. The
-- MATERIALIZED CTE looks the sequence up once (EXPLAIN VERBOSE: a one-row Result, and
-- `nextval(sequence.name)` per id), where a subquery the planner pulls up puts the lookup inside
-- nextval, run again for every id: reserving 10,000 ids took 4x as long.
WITH sequence AS MATERIALIZED (
    SELECT pg_get_serial_sequence('{schema}.jobs', 'id')::regclass AS name
)
SELECT ARRAY(SELECT nextval(sequence.name) FROM sequence, generate_series(1, %(count)s));

-- name: copy_jobs
-- Bulk dispatch: COPY is the fastest way into a table, and one statement is all or nothing. Text
-- format, which queue.py writes itself: binary COPY measured slower, on the client and in all.
-- trace_context is the same in every row of a batch (\N while tracing is off).
COPY {schema}.jobs (id, queue, job_type, payload, priority, max_tries, trace_context) FROM STDIN;

-- name: queue_size
-- Jobs waiting in a queue (ready or scheduled for later), not counting those running now.
SELECT count(*) FROM {schema}.jobs WHERE queue = %(queue)s AND lease_token IS NULL;

-- name: clear_queue
-- Empty a queue: delete its waiting jobs (ready or scheduled) and count them. Leased jobs (running,
-- or claimed ahead of a free slot) are left to their workers: they finish, and one that fails with
-- tries left comes back.
WITH cleared AS (
    DELETE FROM {schema}.jobs WHERE queue = %(queue)s AND lease_token IS NULL RETURNING 1
)
SELECT count(*) FROM cleared;

-- name: pause_queue
-- Pause a queue: no claim takes its jobs from the next statement on; running jobs finish. Creates
-- the queue's row if it has none. Pausing a paused queue keeps its paused_at (paused since) and
-- its reason unless a new one is given. Returns whether the queue was running until now.
WITH before AS (
    SELECT paused_at FROM {schema}.queues WHERE name = %(queue)s
)
INSERT INTO {schema}.queues AS q (name, paused_at, paused_reason)
VALUES (%(queue)s, now(), %(reason)s)
ON CONFLICT (name) DO UPDATE
SET paused_at = coalesce(q.paused_at, now()),
    paused_reason = CASE
        WHEN q.paused_at IS NULL THEN EXCLUDED.paused_reason
        ELSE coalesce(EXCLUDED.paused_reason, q.paused_reason)
    END,
    updated_at = now()
RETURNING (SELECT paused_at FROM before) IS NULL;

-- name: resume_queue
-- Resume a paused queue and wake the workers serving it (the NOTIFY a dispatch sends), so its
-- ready jobs start now rather than at the next poll. No row back: the queue was not paused.
WITH resumed AS (
    UPDATE {schema}.queues
    SET paused_at = NULL, paused_reason = NULL, updated_at = now()
    WHERE name = %(queue)s AND paused_at IS NOT NULL
    RETURNING name
)
SELECT name, pg_notify(%(channel)s, name) FROM resumed;

-- name: cancel_job
-- Cancel one job. The row is locked first, and a row another transaction holds is waited for,
-- never skipped: a claim or an outcome in flight changes the row, it does not end it, and after
-- the wait the lock returns the row as that transaction left it, so a claim and a cancel never
-- both win. A queued job (ready, scheduled or waiting for a retry) moves to failed_jobs at once,
-- as fail_job moves one, and never runs. A leased one (running, or claimed ahead of a free slot)
-- only records the request and wakes the workers: the one holding it reads the request with its
-- lease renewal, stops the job and writes the move itself, compare-and-set on its lease token.
-- A row back says what was done (cancelled: in failed_jobs; else requested); none, no such job.
-- A job moved here is announced on the results channel, for `wait`.
WITH target AS MATERIALIZED (
    SELECT id, lease_token IS NOT NULL AS leased
    FROM {schema}.jobs
    WHERE id = %(id)s
    FOR UPDATE
), moved AS (
    DELETE FROM {schema}.jobs AS j
    USING target AS t
    WHERE j.id = t.id AND NOT t.leased
    RETURNING j.*
), failed AS (
    INSERT INTO {schema}.failed_jobs (
        id, queue, job_type, payload, priority, attempts, max_tries,
        exception_class, exception_message, traceback, worker_id, enqueued_at,
        unique_key, unique_while, trace_context, started_at
    )
    SELECT id, queue, job_type, payload, priority, attempts, max_tries,
           %(exception_class)s,
           CASE WHEN attempts = 0 THEN 'cancelled before it ran'
                ELSE 'cancelled while queued for try ' || (attempts + 1) END,
           '', NULL, enqueued_at, unique_key, unique_while, trace_context, claimed_at
    FROM moved
    RETURNING id
), requested AS (
    UPDATE {schema}.jobs AS j
    SET cancel_requested_at = coalesce(j.cancel_requested_at, now())
    FROM target AS t
    WHERE j.id = t.id AND t.leased
    RETURNING j.id
)
SELECT id, true FROM failed, LATERAL (SELECT pg_notify(%(results_channel)s, id::text)) AS told
UNION ALL
SELECT id, false FROM requested, LATERAL (SELECT pg_notify(%(channel)s, 'cancel:' || id)) AS woken;

-- name: job_status
-- One job's status wherever it is (pgqueue.results): queued, scheduled or running in jobs, with
-- its progress; completed in job_results (types with keep_result); failed or cancelled in
-- failed_jobs. A primary-key lookup in each; jobs first, as a job is in one table at a time.
-- A row in jobs carries last_error where the others carry the exception message.
SELECT id, state, queue, job_type, attempts, progress, progress_message, result,
       exception_class, exception_message, enqueued_at, started_at, finished_at
FROM (
    SELECT 1 AS rank, id,
           CASE WHEN lease_token IS NOT NULL THEN 'running'
                WHEN run_at > now() THEN 'scheduled'
                ELSE 'queued' END AS state,
           queue, job_type, attempts, progress, progress_message,
           NULL::text AS result, NULL::text AS exception_class, last_error AS exception_message,
           enqueued_at, claimed_at AS started_at, NULL::timestamptz AS finished_at
    FROM {schema}.jobs
    WHERE id = %(id)s
    UNION ALL
    SELECT 2, id, 'completed', queue, job_type, attempts, NULL, NULL, result::text, NULL, NULL,
           enqueued_at, started_at, finished_at
    FROM {schema}.job_results
    WHERE id = %(id)s
    UNION ALL
    SELECT 3, id,
           CASE WHEN exception_class = %(cancelled_class)s THEN 'cancelled' ELSE 'failed' END,
           queue, job_type, attempts, NULL, NULL, NULL, exception_class, exception_message,
           enqueued_at, started_at, failed_at
    FROM {schema}.failed_jobs
    WHERE id = %(id)s
) AS found
ORDER BY rank
LIMIT 1;

-- name: claim_jobs
-- Acknowledge finished jobs and claim ready ones in one round trip. The CTE locks at most `limit`
-- ready rows in claim order, skipping rows other workers hold; MATERIALIZED and = ANY(ARRAY(...))
-- keep the planner from re-running it (an IN (subquery) can lock more rows than the limit).
-- Completed rows are deleted only where the lease token still matches ours; their ids come back
-- as rows with a NULL queue, so the worker knows which acknowledgements took effect. Finished ids
-- come grouped by the token of the claim that took them (one array literal per token), so a batch
-- costs one token, not one per job. The payload comes back as text: the worker parses each row on
-- its own, so one hostile row fails alone. `synchronous_commit` is set for this statement's
-- transaction alone: the worker passes 'off' when it acknowledges nothing (a claim lost in a
-- crash only leaves its jobs unclaimed, to be claimed again), so a woken worker starts a job
-- without waiting for a WAL flush; a claim that carries acknowledgements stays durable.
-- A paused queue (its `queues` row has paused_at) yields no job: the check names no column of
-- jobs, so it runs once per statement (a one-time filter), not once per row.
-- A queue with runtime limits (`pgqueue queues limit`) yields no job either, but a row with a
-- NULL id: the worker claims that queue with claim_limited_jobs from then on (docs/limits.md).
WITH durability AS MATERIALIZED (
    SELECT set_config('synchronous_commit', %(synchronous_commit)s, true) AS setting
), completed AS (
    DELETE FROM {schema}.jobs AS j
    USING unnest(%(done_tokens)s::uuid[], %(done_ids)s::text[]) AS done (lease_token, ids)
    WHERE j.id = ANY (done.ids::bigint[]) AND j.lease_token = done.lease_token
    RETURNING j.id
), runtime_limited AS MATERIALIZED (
    SELECT FROM {schema}.queues
    WHERE name = %(queue)s AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL)
), picked AS MATERIALIZED (
    SELECT id FROM {schema}.jobs
    WHERE queue = %(queue)s AND lease_token IS NULL AND run_at <= now()
      AND (SELECT setting FROM durability) IS NOT NULL  -- evaluates the set_config above
      AND NOT EXISTS (SELECT FROM {schema}.queues WHERE name = %(queue)s AND paused_at IS NOT NULL)
      AND NOT EXISTS (SELECT FROM runtime_limited)
    ORDER BY priority, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {schema}.jobs AS j
    SET lease_token = %(token)s,
        lease_expires_at = now() + %(lease_seconds)s * interval '1 second',
        attempts = j.attempts + 1,
        worker_id = %(worker_id)s,
        claimed_at = now()
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.queue, j.job_type, j.payload::text AS payload, j.attempts, j.max_tries,
              j.last_error, j.cancel_requested_at IS NOT NULL AS cancelled,
              j.trace_context::text AS trace_context  -- read only when tracing is on
)
SELECT id, queue, job_type, payload, attempts, max_tries, last_error, cancelled, trace_context
FROM claimed
UNION ALL
SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM completed
UNION ALL
SELECT NULL, %(queue)s, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM runtime_limited;

-- name: complete_jobs
-- Delete finished jobs whose lease is still ours (used when no claim is due to carry them); the
-- ids come grouped by claim token, as in claim_jobs.
DELETE FROM {schema}.jobs AS j
USING unnest(%(done_tokens)s::uuid[], %(done_ids)s::text[]) AS done (lease_token, ids)
WHERE j.id = ANY (done.ids::bigint[]) AND j.lease_token = done.lease_token
RETURNING j.id;

-- name: complete_kept_jobs
-- Complete jobs whose type sets keep_result (docs/results.md): each row whose lease is still ours
-- moves to job_results with its result in one statement, never in both, never in neither, and
-- its id is sent on the results channel, which `wait` listens on. Plain jobs never come here
-- (claim_jobs/complete_jobs acknowledge them). A row already kept for the id (a job put back in
-- jobs by hand, say) takes the newer outcome instead of refusing the batch. Each array comes as
-- one text (the results as one JSON array, in the ids' order): psycopg adapting lists element by
-- element cost more per job than the statement's own work.
WITH done AS (
    SELECT d.id, d.lease_token, d.keep_seconds, r.result
    FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(keep_seconds)s::float8[])
         WITH ORDINALITY AS d (id, lease_token, keep_seconds, position)
    JOIN jsonb_array_elements(%(results)s::jsonb) WITH ORDINALITY AS r (result, position)
        USING (position)
), completed AS (
    DELETE FROM {schema}.jobs AS j
    USING done AS d
    WHERE j.id = d.id AND j.lease_token = d.lease_token
    RETURNING j.id, j.queue, j.job_type, j.attempts, j.enqueued_at, j.claimed_at, d.result,
              d.keep_seconds
), kept AS (
    INSERT INTO {schema}.job_results AS r (
        id, queue, job_type, attempts, result, enqueued_at, started_at, finished_at, keep_until
    )
    SELECT id, queue, job_type, attempts, result, enqueued_at, claimed_at, now(),
           now() + keep_seconds * interval '1 second'
    FROM completed
    ON CONFLICT (id) DO UPDATE
    SET queue = excluded.queue, job_type = excluded.job_type, attempts = excluded.attempts,
        result = excluded.result, enqueued_at = excluded.enqueued_at,
        started_at = excluded.started_at, finished_at = excluded.finished_at,
        keep_until = excluded.keep_until
    RETURNING r.id
)
SELECT id, pg_notify(%(results_channel)s, id::text) FROM kept;

-- name: register_job_limits
-- A worker's limited job types (sorted by the caller, so workers starting together lock rows in
-- one order), upserted at its start: lock_limits needs a row to lock, stats reads the limits.
INSERT INTO {schema}.job_limits AS l (
    job_type, concurrency, rate_limit, rate_period_seconds, limit_field
)
SELECT * FROM unnest(
    %(job_types)s::text[], %(concurrencies)s::integer[], %(rate_limits)s::integer[],
    %(rate_periods)s::integer[], %(limit_fields)s::text[]
)
ON CONFLICT (job_type) DO UPDATE
SET concurrency = EXCLUDED.concurrency,
    rate_limit = EXCLUDED.rate_limit,
    rate_period_seconds = EXCLUDED.rate_period_seconds,
    limit_field = EXCLUDED.limit_field,
    updated_at = now()
RETURNING job_type;

-- name: lock_limits
-- The first statement of a limited claim's transaction (docs/limits.md): lock the rows of the
-- worker's limited job types (in name order, so claims never deadlock), then the queue's row, so
-- limited claims of one type or queue take turns. The lock is a statement of its own because a
-- statement's snapshot is taken before it waits for a lock: a count of leases in the same
-- statement would miss the claims of the transaction it waited for. claim_limited_jobs, the next
-- statement, takes a fresh snapshot with the locks held. Returns whether the queue has runtime
-- limits. synchronous_commit is set for the transaction as in claim_jobs.
WITH durability AS MATERIALIZED (
    SELECT set_config('synchronous_commit', %(synchronous_commit)s, true) AS setting
), types AS MATERIALIZED (
    SELECT job_type FROM {schema}.job_limits
    WHERE job_type = ANY(%(job_types)s::text[]) AND (SELECT setting FROM durability) IS NOT NULL
    ORDER BY job_type
    FOR UPDATE
), queue_row AS MATERIALIZED (
    SELECT concurrency IS NOT NULL OR rate_limit IS NOT NULL AS limited
    FROM {schema}.queues
    WHERE name = %(queue)s AND (SELECT count(*) FROM types) >= 0
    FOR UPDATE
)
SELECT coalesce((SELECT limited FROM queue_row), false), (SELECT count(*) FROM types);

-- name: claim_limited_jobs
-- claim_jobs for a worker with limited job types or a queue with runtime limits, run after
-- lock_limits in one transaction (acknowledgements go first, as complete_jobs, so the jobs they
-- end free their slots for this claim). Limits count leases: a running job, or one claimed ahead
-- of a free slot, holds its slot until it ends or its lease is rescued, so a killed worker's
-- slots come back with the rescue. Starts are counted over a sliding window in database time
-- (limit_starts): at most N in any period. A held-back job is not even locked: it keeps its
-- place, spends no try and costs no write. Per (type, key) the allowance is the least of the
-- free slots and the starts left; (type, key)s with none are filtered out of the scan, so jobs
-- behind them in the queue are still claimed; the queue's runtime allowance caps the total.
-- limit_key is written on each claimed row of a limited type (the payload field as text, ''
-- for a type limited as a whole): it is what the running count reads, by its index.
WITH limits AS MATERIALIZED (
    SELECT * FROM unnest(
        %(job_types)s::text[], %(limit_fields)s::text[], %(concurrencies)s::integer[],
        %(rate_limits)s::integer[], %(rate_periods)s::integer[]
    ) AS l (job_type, limit_field, concurrency, rate_limit, rate_period_seconds)
), running AS MATERIALIZED (
    SELECT j.job_type, j.limit_key, count(*) AS n
    FROM {schema}.jobs AS j
    JOIN limits AS l ON l.job_type = j.job_type AND l.concurrency IS NOT NULL
    WHERE j.lease_token IS NOT NULL AND j.limit_key IS NOT NULL
    GROUP BY j.job_type, j.limit_key
), started AS MATERIALIZED (
    SELECT s.name AS job_type, s.limit_key, count(*) AS n
    FROM {schema}.limit_starts AS s
    JOIN limits AS l ON s.kind = 'job_type' AND s.name = l.job_type
    WHERE s.started_at > now() - l.rate_period_seconds * interval '1 second'
    GROUP BY s.name, s.limit_key
), used AS MATERIALIZED (
    SELECT job_type, limit_key, coalesce(r.n, 0) AS running, coalesce(s.n, 0) AS started
    FROM running AS r FULL JOIN started AS s USING (job_type, limit_key)
), exhausted AS MATERIALIZED (
    SELECT u.job_type, u.limit_key
    FROM used AS u JOIN limits AS l USING (job_type)
    WHERE least(l.concurrency - u.running, l.rate_limit - u.started) <= 0
), queue_limit AS MATERIALIZED (
    SELECT q.concurrency - (
               SELECT count(*) FROM {schema}.jobs
               WHERE queue = %(queue)s AND lease_token IS NOT NULL
           ) AS free,
           q.rate_limit - (
               SELECT count(*) FROM {schema}.limit_starts
               WHERE kind = 'queue' AND name = %(queue)s AND limit_key = ''
                 AND started_at > now() - q.rate_period_seconds * interval '1 second'
           ) AS starts_left,
           q.rate_limit IS NOT NULL AS rated
    FROM {schema}.queues AS q
    WHERE q.name = %(queue)s AND (q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL)
), candidates AS MATERIALIZED (
    SELECT j.id, j.priority, j.run_at, j.job_type, l.job_type IS NOT NULL AS limited,
           k.limit_key
    FROM {schema}.jobs AS j
    LEFT JOIN limits AS l ON l.job_type = j.job_type
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN l.job_type IS NULL THEN NULL
            WHEN l.limit_field IS NULL THEN ''
            ELSE coalesce(j.payload ->> l.limit_field, '')
        END AS limit_key
    ) AS k
    WHERE j.queue = %(queue)s AND j.lease_token IS NULL AND j.run_at <= now()
      AND NOT EXISTS (
          SELECT FROM {schema}.queues
          WHERE name = %(queue)s AND paused_at IS NOT NULL
      )
      AND NOT EXISTS (
          SELECT FROM exhausted AS e
          WHERE e.job_type = j.job_type AND e.limit_key = k.limit_key
      )
    ORDER BY j.priority, j.run_at, j.id
    LIMIT %(scan)s
), allowed AS MATERIALIZED (
    SELECT ranked.id, ranked.limited, ranked.job_type, ranked.limit_key
    FROM (
        SELECT c.*,
               row_number() OVER (
                   PARTITION BY c.job_type, c.limit_key ORDER BY c.priority, c.run_at, c.id
               ) AS rank,
               least(
                   l.concurrency - coalesce(u.running, 0), l.rate_limit - coalesce(u.started, 0)
               ) AS allowance
        FROM candidates AS c
        LEFT JOIN limits AS l ON l.job_type = c.job_type
        LEFT JOIN used AS u ON u.job_type = c.job_type AND u.limit_key = c.limit_key
    ) AS ranked
    WHERE ranked.allowance IS NULL OR ranked.rank <= ranked.allowance
    ORDER BY ranked.priority, ranked.run_at, ranked.id
    LIMIT least(
        %(limit)s,
        coalesce(
            (SELECT greatest(least(free, starts_left), 0) FROM queue_limit), %(limit)s
        )
    )
), picked AS MATERIALIZED (
    SELECT id FROM {schema}.jobs
    WHERE id = ANY(ARRAY(SELECT id FROM allowed)) AND lease_token IS NULL
    ORDER BY priority, run_at, id
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {schema}.jobs AS j
    SET lease_token = %(token)s,
        lease_expires_at = now() + %(lease_seconds)s * interval '1 second',
        attempts = j.attempts + 1,
        worker_id = %(worker_id)s,
        claimed_at = now(),
        limit_key = a.limit_key
    FROM allowed AS a
    WHERE j.id = a.id AND j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.queue, j.job_type, j.payload::text AS payload, j.attempts, j.max_tries,
              j.last_error, j.cancel_requested_at IS NOT NULL AS cancelled,
              j.trace_context::text AS trace_context, a.limited, a.limit_key
), recorded AS (
    INSERT INTO {schema}.limit_starts (kind, name, limit_key, started_at)
    SELECT 'job_type', c.job_type, c.limit_key, now()
    FROM claimed AS c JOIN limits AS l ON l.job_type = c.job_type AND l.rate_limit IS NOT NULL
    UNION ALL
    SELECT 'queue', %(queue)s, '', now()
    FROM claimed AS c, queue_limit AS q
    WHERE q.rated
), pruned AS (
    DELETE FROM {schema}.limit_starts AS s
    USING (
        SELECT 'job_type' AS kind, job_type AS name, rate_period_seconds FROM limits
        WHERE rate_period_seconds IS NOT NULL
        UNION ALL
        SELECT 'queue', name, rate_period_seconds FROM {schema}.queues
        WHERE name = %(queue)s AND rate_period_seconds IS NOT NULL
    ) AS p
    WHERE s.kind = p.kind AND s.name = p.name
      AND s.started_at <= now() - p.rate_period_seconds * interval '1 second'
)
SELECT id, queue, job_type, payload, attempts, max_tries, last_error, cancelled, trace_context
FROM claimed;

-- name: set_queue_limits
-- Runtime limits for a queue (`pgqueue queues limit`), creating its row if it has none; NULL
-- leaves a limit as it is. The next claim of the queue applies them.
INSERT INTO {schema}.queues AS q (name, concurrency, rate_limit, rate_period_seconds)
VALUES (%(queue)s, %(concurrency)s, %(rate_limit)s, %(rate_period_seconds)s)
ON CONFLICT (name) DO UPDATE
SET concurrency = coalesce(EXCLUDED.concurrency, q.concurrency),
    rate_limit = coalesce(EXCLUDED.rate_limit, q.rate_limit),
    rate_period_seconds = CASE
        WHEN EXCLUDED.rate_limit IS NULL THEN q.rate_period_seconds
        ELSE EXCLUDED.rate_period_seconds
    END,
    updated_at = now()
RETURNING concurrency, rate_limit, rate_period_seconds;

-- name: clear_queue_limits
-- Remove a queue's runtime limits (`pgqueue queues limit Q --clear`); its pause stays as it is.
UPDATE {schema}.queues
SET concurrency = NULL, rate_limit = NULL, rate_period_seconds = NULL, updated_at = now()
WHERE name = %(queue)s
RETURNING name;

-- name: retry_job
-- Put a failed attempt back for later, keeping its error; a no-op if we lost the lease. The
-- attempt's progress goes with it: the next attempt reports its own.
UPDATE {schema}.jobs
SET lease_token = NULL, lease_expires_at = NULL,
    run_at = now() + %(delay)s * interval '1 second',
    last_error = %(error)s,
    progress = NULL, progress_message = NULL,
    -- Unique jobs (docs/unique-jobs.md): a 'queued' key was let go by the claim; if another job
    -- holds it now, this one waits for its retry without it, so one queued job holds a key.
    unique_key = CASE
        WHEN unique_key IS NULL OR unique_while = 'active' THEN unique_key
        WHEN EXISTS (
            SELECT FROM {schema}.jobs AS other
            WHERE other.unique_key = jobs.unique_key AND other.lease_token IS NULL
        ) THEN NULL
        ELSE unique_key
    END
WHERE id = %(id)s AND lease_token = %(token)s;

-- name: snooze_job
-- Put a job whose handler raised Snooze back for later without spending a try: the claim counted
-- one, so it is taken back; last_error keeps the last real error. A no-op if we lost the lease.
UPDATE {schema}.jobs
SET lease_token = NULL, lease_expires_at = NULL,
    run_at = now() + %(delay)s * interval '1 second',
    attempts = greatest(attempts - 1, 0),
    progress = NULL, progress_message = NULL,  -- as in retry_job
    -- Unique jobs: as in retry_job, a 'queued' key another job took meanwhile stays with it.
    unique_key = CASE
        WHEN unique_key IS NULL OR unique_while = 'active' THEN unique_key
        WHEN EXISTS (
            SELECT FROM {schema}.jobs AS other
            WHERE other.unique_key = jobs.unique_key AND other.lease_token IS NULL
        ) THEN NULL
        ELSE unique_key
    END
WHERE id = %(id)s AND lease_token = %(token)s;

-- name: fail_job
-- Move a job that used its last try to failed_jobs in one statement: never in both, never in neither.
-- The trace context goes along, so a retry from failed_jobs links to the same dispatch; started_at
-- is the last attempt's claim. The id goes out on the results channel, for `wait`.
WITH moved AS (
    DELETE FROM {schema}.jobs
    WHERE id = %(id)s AND lease_token = %(token)s
    RETURNING *
), failed AS (
    INSERT INTO {schema}.failed_jobs (
        id, queue, job_type, payload, priority, attempts, max_tries,
        exception_class, exception_message, traceback, worker_id, enqueued_at,
        unique_key, unique_while, trace_context, started_at
    )
    SELECT id, queue, job_type, payload, priority, %(attempts)s, max_tries,
           %(exception_class)s, %(exception_message)s, %(traceback)s, %(worker_id)s, enqueued_at,
           unique_key, unique_while, trace_context, claimed_at
    FROM moved
    RETURNING id
)
SELECT id, pg_notify(%(results_channel)s, id::text) FROM failed;

-- name: release_jobs
-- Return unfinished jobs at shutdown, at once and without spending a try, and wake other workers.
WITH released AS (
    UPDATE {schema}.jobs AS j
    SET lease_token = NULL, lease_expires_at = NULL, run_at = now(),
        attempts = greatest(j.attempts - 1, 0),
        progress = NULL, progress_message = NULL,  -- as in retry_job
        -- Unique jobs: as in retry_job, a 'queued' key another job took meanwhile stays with it.
        unique_key = CASE
            WHEN j.unique_key IS NULL OR j.unique_while = 'active' THEN j.unique_key
            WHEN EXISTS (
                SELECT FROM {schema}.jobs AS other
                WHERE other.unique_key = j.unique_key AND other.lease_token IS NULL
            ) THEN NULL
            ELSE j.unique_key
        END
    FROM unnest(%(tokens)s::uuid[], %(ids)s::text[]) AS held (lease_token, ids)
    WHERE j.id = ANY (held.ids::bigint[]) AND j.lease_token = held.lease_token
    RETURNING j.queue
)
SELECT queue, count(*), pg_notify(%(channel)s, queue) FROM released GROUP BY queue;

-- name: renew_leases
-- Heartbeat: extend the leases of the jobs this worker is running (ids grouped by claim token),
-- and say which of them were cancelled (cancel_job), so the worker stops those. It also writes
-- the progress its jobs reported since the last beat (docs/results.md): no round trip of its own.
-- One UPDATE writes both (a row updated twice in one statement keeps only one of the changes);
-- a job with no new report keeps its progress, and the arrays are empty when none reported.
WITH reported AS (
    SELECT * FROM unnest(
        %(progress_ids)s::bigint[], %(progress)s::float8[], %(progress_messages)s::text[]
    ) AS r (id, progress, message)
)
UPDATE {schema}.jobs AS j
SET lease_expires_at = now() + %(lease_seconds)s * interval '1 second',
    progress = CASE WHEN h.reported THEN h.progress ELSE j.progress END,
    progress_message = CASE WHEN h.reported THEN h.message ELSE j.progress_message END
FROM (
    SELECT held.lease_token, held_id.id, r.id IS NOT NULL AS reported, r.progress, r.message
    FROM unnest(%(tokens)s::uuid[], %(ids)s::text[]) AS held (lease_token, ids)
    CROSS JOIN LATERAL unnest(held.ids::bigint[]) AS held_id (id)
    LEFT JOIN reported AS r ON r.id = held_id.id
) AS h
WHERE j.id = h.id AND j.lease_token = h.lease_token
RETURNING j.id, j.cancel_requested_at IS NOT NULL;

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
        last_error = 'worker ' || coalesce(j.worker_id, 'unknown')
            || ' stopped renewing its lease during attempt ' || j.attempts,
        progress = NULL, progress_message = NULL,  -- as in retry_job
        -- Unique jobs: as in retry_job, a 'queued' key another job took meanwhile stays with it.
        unique_key = CASE
            WHEN j.unique_key IS NULL OR j.unique_while = 'active' THEN j.unique_key
            WHEN EXISTS (
                SELECT FROM {schema}.jobs AS other
                WHERE other.unique_key = j.unique_key AND other.lease_token IS NULL
            ) THEN NULL
            ELSE j.unique_key
        END
    WHERE j.id = ANY(ARRAY(SELECT id FROM expired))
    RETURNING j.queue
)
SELECT queue, count(*), pg_notify(%(channel)s, queue) FROM rescued GROUP BY queue;

-- name: queue_depths
-- Ready jobs per queue a worker serves and whether it is paused, for its queue metrics.
SELECT q.queue,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.queue = q.queue AND j.lease_token IS NULL AND j.run_at <= now()),
       EXISTS (SELECT FROM {schema}.queues AS c WHERE c.name = q.queue AND c.paused_at IS NOT NULL)
FROM unnest(%(queues)s::text[]) AS q (queue);

-- name: register_worker
-- Record this worker process for stats and health checks.
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: worker_heartbeat
-- Keep this worker's row fresh and add what it finished since the last beat, in all and per queue
-- and minute of database time (queue_throughput: the dashboard's chart). The caller sorts the
-- queues, so workers upserting the same rows lock them in one order.
WITH counts AS (
    SELECT * FROM unnest(%(queues)s::text[], %(completed)s::bigint[], %(failed)s::bigint[])
        AS c (queue, completed, failed)
), throughput AS (
    INSERT INTO {schema}.queue_throughput AS t (queue, minute, completed, failed)
    SELECT queue, date_trunc('minute', now()), completed, failed FROM counts
    ON CONFLICT (queue, minute) DO UPDATE
    SET completed = t.completed + excluded.completed, failed = t.failed + excluded.failed
)
UPDATE {schema}.workers
SET heartbeat_at = now(),
    jobs_completed = jobs_completed + (SELECT coalesce(sum(completed), 0) FROM counts),
    jobs_failed = jobs_failed + (SELECT coalesce(sum(failed), 0) FROM counts)
WHERE id = %(id)s;

-- name: unregister_worker
-- A worker that stops cleanly removes its row; rows of lost workers are pruned by prune_workers.
DELETE FROM {schema}.workers WHERE id = %(id)s;

-- name: prune_workers
-- Forget workers that have not sent a heartbeat for a long time (killed or lost machines).
WITH forgotten AS (
    DELETE FROM {schema}.workers
    WHERE heartbeat_at < now() - %(older_than_seconds)s * interval '1 second'
    RETURNING 1
)
SELECT count(*) FROM forgotten;

-- name: list_failed_jobs
-- Failed jobs, newest first, optionally of one queue or type and within the last N seconds.
SELECT id, queue, job_type, payload::text AS payload, priority, attempts, max_tries, exception_class,
       exception_message, traceback, worker_id, enqueued_at, failed_at
FROM {schema}.failed_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s)
  AND (%(since_seconds)s::float8 IS NULL
       OR failed_at >= now() - %(since_seconds)s::float8 * interval '1 second')
ORDER BY failed_at DESC, id DESC
LIMIT %(limit)s;

-- name: show_failed_job
-- One failed job, every column.
SELECT id, queue, job_type, payload::text AS payload, priority, attempts, max_tries, exception_class,
       exception_message, traceback, worker_id, enqueued_at, failed_at
FROM {schema}.failed_jobs
WHERE id = %(id)s;

-- name: retry_failed_jobs
-- Move the given failed jobs back to jobs (same id, no tries spent, ready now) in one statement, so
-- a job is in exactly one table. Rows are locked in id order: two retries of the same ids never
-- deadlock, the second waits for the first and then finds the rows gone, moving nothing twice.
-- A unique job whose key another job holds stays in failed_jobs (docs/unique-jobs.md): each
-- picked id comes back with whether it moved and, if not, the holder's id when it is visible.
WITH picked AS MATERIALIZED (
    SELECT id, queue, job_type, payload, priority, max_tries, enqueued_at, unique_key,
           unique_while, trace_context
    FROM {schema}.failed_jobs
    WHERE id = ANY(%(ids)s::bigint[])
    ORDER BY id
    FOR UPDATE
), held AS (
    SELECT p.id, (
        SELECT j.id FROM {schema}.jobs AS j
        WHERE j.unique_key = p.unique_key AND (j.lease_token IS NULL OR j.unique_while = 'active')
        ORDER BY j.id LIMIT 1
    ) AS holder
    FROM picked AS p
    WHERE p.unique_key IS NOT NULL
), inserted AS (
    INSERT INTO {schema}.jobs (id, queue, job_type, payload, priority, run_at, attempts, max_tries,
                               enqueued_at, unique_key, unique_while, trace_context)
    SELECT p.id, p.queue, p.job_type, p.payload, p.priority, now(), 0, p.max_tries, p.enqueued_at,
           p.unique_key, p.unique_while, p.trace_context  -- still linked to its dispatch
    FROM picked AS p
    WHERE NOT EXISTS (SELECT FROM held AS h WHERE h.id = p.id AND h.holder IS NOT NULL)
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND (claimed_at IS NULL OR unique_while = 'active')
        DO NOTHING
    RETURNING id
), moved AS (
    DELETE FROM {schema}.failed_jobs
    WHERE id = ANY(ARRAY(SELECT id FROM inserted))
    RETURNING id
)
SELECT p.id, m.id IS NOT NULL, h.holder
FROM picked AS p
LEFT JOIN moved AS m ON m.id = p.id
LEFT JOIN held AS h ON h.id = p.id
ORDER BY p.id;

-- name: retry_all_failed_jobs
-- Move the next batch of failed jobs (ids after after_id, optionally of one queue or type) back to
-- jobs as retry_failed_jobs does. SKIP LOCKED lets concurrent retries share the rows; walking ids
-- upward ends the loop even while retried jobs fail again and come back.
-- Rows come back as in retry_failed_jobs (id, moved, holder), unique jobs held elsewhere staying.
WITH picked AS MATERIALIZED (
    SELECT id, queue, job_type, payload, priority, max_tries, enqueued_at, unique_key,
           unique_while, trace_context
    FROM {schema}.failed_jobs
    WHERE id > %(after_id)s
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s)
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), held AS (
    SELECT p.id, (
        SELECT j.id FROM {schema}.jobs AS j
        WHERE j.unique_key = p.unique_key AND (j.lease_token IS NULL OR j.unique_while = 'active')
        ORDER BY j.id LIMIT 1
    ) AS holder
    FROM picked AS p
    WHERE p.unique_key IS NOT NULL
), inserted AS (
    INSERT INTO {schema}.jobs (id, queue, job_type, payload, priority, run_at, attempts, max_tries,
                               enqueued_at, unique_key, unique_while, trace_context)
    SELECT p.id, p.queue, p.job_type, p.payload, p.priority, now(), 0, p.max_tries, p.enqueued_at,
           p.unique_key, p.unique_while, p.trace_context  -- still linked to its dispatch
    FROM picked AS p
    WHERE NOT EXISTS (SELECT FROM held AS h WHERE h.id = p.id AND h.holder IS NOT NULL)
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND (claimed_at IS NULL OR unique_while = 'active')
        DO NOTHING
    RETURNING id
), moved AS (
    DELETE FROM {schema}.failed_jobs
    WHERE id = ANY(ARRAY(SELECT id FROM inserted))
    RETURNING id
)
SELECT p.id, m.id IS NOT NULL, h.holder
FROM picked AS p
LEFT JOIN moved AS m ON m.id = p.id
LEFT JOIN held AS h ON h.id = p.id
ORDER BY p.id;

-- name: forget_failed_jobs
-- Delete the given failed jobs for good.
DELETE FROM {schema}.failed_jobs WHERE id = ANY(%(ids)s::bigint[]) RETURNING id;

-- name: flush_failed_jobs
-- Delete the next batch of failed jobs (ids after after_id, optionally of one queue and older than
-- N seconds); SKIP LOCKED so concurrent flushes and cleanups share the rows without waiting.
WITH doomed AS MATERIALIZED (
    SELECT id FROM {schema}.failed_jobs
    WHERE id > %(after_id)s
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND (%(older_than_seconds)s::float8 IS NULL
           OR failed_at < now() - %(older_than_seconds)s::float8 * interval '1 second')
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM {schema}.failed_jobs
WHERE id = ANY(ARRAY(SELECT id FROM doomed))
RETURNING id;

-- name: prune_job_results
-- Retention of kept results (docs/results.md): delete one batch of job_results rows whose
-- keep_until has passed, oldest first along the keep_until index; SKIP LOCKED and short batches
-- as in prune_failed_jobs.
WITH doomed AS MATERIALIZED (
    SELECT id FROM {schema}.job_results
    WHERE keep_until < now()
    ORDER BY keep_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), pruned AS (
    DELETE FROM {schema}.job_results
    WHERE id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: prune_queue_throughput
-- The dashboard's chart shows the last hour; minutes older than THROUGHPUT_KEEP_SECONDS go. A day
-- is at most 1,440 rows per queue, so one statement along the minute index serves.
WITH pruned AS (
    DELETE FROM {schema}.queue_throughput
    WHERE minute < now() - %(older_than_seconds)s::float8 * interval '1 second'
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: prune_failed_jobs
-- Retention: delete one batch of failed jobs that failed over N seconds ago, oldest first along the
-- failed_at index. SKIP LOCKED makes concurrent cleanups harmless (each row goes once) and never
-- waits on a lock; a short batch per statement keeps every transaction brief.
WITH doomed AS MATERIALIZED (
    SELECT id FROM {schema}.failed_jobs
    WHERE failed_at < now() - %(older_than_seconds)s::float8 * interval '1 second'
    ORDER BY failed_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), pruned AS (
    DELETE FROM {schema}.failed_jobs
    WHERE id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: worker_counters
-- Each worker's completed-jobs counter at one moment (`at`, else now()), always with that moment:
-- `pgqueue stats` samples it twice for a completion rate. One row even when no worker is registered.
SELECT clock.taken_at, w.id, w.queues, w.jobs_completed
FROM (SELECT coalesce(%(at)s::timestamptz, now()) AS taken_at) AS clock
LEFT JOIN {schema}.workers AS w ON true
ORDER BY w.id;

-- name: queue_stats
-- Per queue as of `at`: ready, scheduled, running, failures in the hour before `at` and in all, how
-- long the oldest ready job has waited, its controls (paused since and why, runtime limits), and
-- how many ready jobs a limit holds back. Queues come from jobs, failed_jobs, the workers and the
-- queues table. Held back is counted as claim_limited_jobs counts (leases by jobs.limit_key,
-- starts in limit_starts' window): per limited (type, key), its ready jobs beyond the least of its
-- free slots and starts left, against the limits its workers last registered in job_limits; per
-- queue with runtime limits, its ready jobs beyond the queue's own allowance; the larger of the
-- two, since a job starts only when both allow it. at_limit: the queue's runtime limit is reached.
WITH live AS (
    SELECT queue,
           count(*) FILTER (WHERE lease_token IS NULL AND run_at <= %(at)s::timestamptz) AS ready,
           count(*) FILTER (WHERE lease_token IS NULL AND run_at > %(at)s::timestamptz) AS scheduled,
           count(*) FILTER (WHERE lease_token IS NOT NULL) AS running,
           min(run_at) FILTER (
               WHERE lease_token IS NULL AND run_at <= %(at)s::timestamptz
           ) AS oldest_ready_at
    FROM {schema}.jobs
    GROUP BY queue
), failed AS (
    SELECT queue,
           count(*) FILTER (WHERE failed_at > %(at)s::timestamptz - interval '1 hour') AS last_hour,
           count(*) AS total
    FROM {schema}.failed_jobs
    GROUP BY queue
), served AS (
    SELECT DISTINCT unnest(queues) AS queue FROM {schema}.workers
), type_used AS (
    SELECT job_type, limit_key, sum(running)::bigint AS running, sum(started)::bigint AS started
    FROM (
        SELECT j.job_type, j.limit_key, count(*) AS running, 0 AS started
        FROM {schema}.jobs AS j
        JOIN {schema}.job_limits AS l ON l.job_type = j.job_type AND l.concurrency IS NOT NULL
        WHERE j.lease_token IS NOT NULL AND j.limit_key IS NOT NULL
        GROUP BY j.job_type, j.limit_key
        UNION ALL
        SELECT s.name, s.limit_key, 0, count(*)
        FROM {schema}.limit_starts AS s
        JOIN {schema}.job_limits AS l ON l.job_type = s.name AND l.rate_limit IS NOT NULL
        WHERE s.kind = 'job_type'
          AND s.started_at > %(at)s::timestamptz - l.rate_period_seconds * interval '1 second'
        GROUP BY s.name, s.limit_key
    ) AS u
    GROUP BY job_type, limit_key
), type_held AS (
    SELECT w.queue,
           sum(greatest(w.n - greatest(coalesce(
               least(l.concurrency - coalesce(u.running, 0), l.rate_limit - coalesce(u.started, 0)),
               w.n
           ), 0), 0))::bigint AS n
    FROM (
        SELECT j.queue, j.job_type, k.limit_key, count(*) AS n
        FROM {schema}.jobs AS j
        JOIN {schema}.job_limits AS l ON l.job_type = j.job_type
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN l.limit_field IS NULL THEN ''
                ELSE coalesce(j.payload ->> l.limit_field, '')
            END AS limit_key
        ) AS k
        WHERE j.lease_token IS NULL AND j.run_at <= %(at)s::timestamptz
        GROUP BY j.queue, j.job_type, k.limit_key
    ) AS w
    JOIN {schema}.job_limits AS l ON l.job_type = w.job_type
    LEFT JOIN type_used AS u ON u.job_type = w.job_type AND u.limit_key = w.limit_key
    GROUP BY w.queue
), queue_started AS (
    SELECT s.name AS queue, count(*) AS n
    FROM {schema}.limit_starts AS s
    JOIN {schema}.queues AS c ON c.name = s.name AND c.rate_limit IS NOT NULL
    WHERE s.kind = 'queue' AND s.limit_key = ''
      AND s.started_at > %(at)s::timestamptz - c.rate_period_seconds * interval '1 second'
    GROUP BY s.name
)
SELECT q.queue,
       coalesce(live.ready, 0), coalesce(live.scheduled, 0), coalesce(live.running, 0),
       coalesce(failed.last_hour, 0), coalesce(failed.total, 0),
       extract(epoch FROM %(at)s::timestamptz - live.oldest_ready_at)::float8,
       c.paused_at, c.paused_reason, c.concurrency, c.rate_limit, c.rate_period_seconds,
       greatest(
           coalesce(type_held.n, 0),
           coalesce(live.ready, 0) - greatest(coalesce(allowance.n, coalesce(live.ready, 0)), 0)
       ),
       coalesce(allowance.n <= 0, false)
FROM (
    SELECT queue FROM live UNION SELECT queue FROM failed UNION SELECT queue FROM served
    UNION SELECT name FROM {schema}.queues
) AS q
LEFT JOIN live USING (queue)
LEFT JOIN failed USING (queue)
LEFT JOIN type_held USING (queue)
LEFT JOIN queue_started USING (queue)
LEFT JOIN {schema}.queues AS c ON c.name = q.queue
CROSS JOIN LATERAL (
    SELECT least(
        c.concurrency - coalesce(live.running, 0), c.rate_limit - coalesce(queue_started.n, 0)
    ) AS n
) AS allowance
ORDER BY q.queue;

-- name: doctor_schema
-- Whether the schema exists, which tables it holds (pgqueue's and alembic_version), and whether
-- this role may read alembic_version (the worker role may not, so doctor says so and goes on).
SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %(schema)s),
       ARRAY(
           SELECT c.relname::text
           FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
           WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
           ORDER BY 1
       ),
       coalesce((
           SELECT has_table_privilege(c.oid, 'SELECT')
           FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
           WHERE n.nspname = %(schema)s AND c.relname = 'alembic_version'
       ), false);

-- name: doctor_schema_version
-- The revision alembic recorded for this schema, to compare with the newest one pgqueue ships.
SELECT version_num FROM {schema}.alembic_version;

-- name: doctor_jobs_table
-- Live and dead tuples in jobs, seconds since its last vacuum, and the size of it and each index.
SELECT t.n_live_tup, t.n_dead_tup,
       extract(epoch FROM now() - greatest(t.last_vacuum, t.last_autovacuum))::float8,
       pg_table_size(t.relid),
       ARRAY(
           SELECT i.indexrelname::text FROM pg_stat_user_indexes AS i
           WHERE i.relid = t.relid ORDER BY i.indexrelname
       ),
       ARRAY(
           SELECT pg_relation_size(i.indexrelid) FROM pg_stat_user_indexes AS i
           WHERE i.relid = t.relid ORDER BY i.indexrelname
       )
FROM pg_stat_user_tables AS t
WHERE t.schemaname = %(schema)s AND t.relname = 'jobs';

-- name: running_progress
-- Running jobs that reported progress (docs/results.md), oldest claim first, at most `limit`, and
-- how many there are in all: the list under `pgqueue stats`. Only leased rows qualify, which the
-- partial lease index holds: about as many rows as the workers' slots are read.
SELECT id, queue, job_type, progress, progress_message,
       extract(epoch FROM %(at)s::timestamptz - claimed_at)::float8, count(*) OVER ()
FROM {schema}.jobs
WHERE lease_token IS NOT NULL AND progress IS NOT NULL
ORDER BY claimed_at, id
LIMIT %(limit)s;

-- name: oldest_xmin_holder
-- What holds back vacuum the most in this database (the oldest xmin or xid): a client session, a
-- prepared transaction, a replication slot or a standby's feedback, with its age in seconds
-- (unknown for the last two) and in xids. No row it began before can be removed by vacuum.
SELECT kind, pid, usename, application_name, state, seconds, xid_age, query, name
FROM (
    -- A walsender's xmin is a standby's hot_standby_feedback, which holds back every database.
    SELECT CASE WHEN a.backend_type = 'walsender' THEN 'standby' ELSE 'session' END AS kind,
           a.pid, a.usename::text AS usename, a.application_name, a.state,
           CASE WHEN a.backend_type = 'client backend'
                THEN extract(epoch FROM now() - a.xact_start)::float8 END AS seconds,
           greatest(age(a.backend_xmin), age(a.backend_xid)) AS xid_age,
           CASE WHEN a.backend_type = 'client backend' THEN a.query END AS query,
           NULL::text AS name
    FROM pg_stat_activity AS a
    WHERE a.pid <> pg_backend_pid()
      AND (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
      AND ((a.backend_type = 'client backend' AND a.datname = current_database())
           OR a.backend_type = 'walsender')
    UNION ALL
    SELECT 'prepared', NULL, p.owner::text, NULL, 'prepared',
           extract(epoch FROM now() - p.prepared)::float8, age(p.transaction), NULL, p.gid
    FROM pg_prepared_xacts AS p
    WHERE p.database = current_database()
    UNION ALL
    -- A slot's xmin holds back every database's tables, jobs included; its catalog_xmin (logical
    -- decoding) only the system catalogs, so that one is not counted here.
    SELECT 'slot', s.active_pid, NULL, NULL,
           s.slot_type || CASE WHEN s.active THEN ', active' ELSE ', inactive' END,
           NULL, age(s.xmin), NULL, s.slot_name::text
    FROM pg_replication_slots AS s
    WHERE s.xmin IS NOT NULL
) AS holders
ORDER BY xid_age DESC NULLS LAST, seconds DESC NULLS LAST
LIMIT 1;

-- name: doctor_expired_leases
-- Leases that expired and were not rescued yet: how many, how many past the grace period the
-- workers' periodic rescue needs, and how long the oldest has been overdue.
SELECT count(*),
       count(*) FILTER (WHERE lease_expires_at < now() - %(grace_seconds)s * interval '1 second'),
       coalesce(extract(epoch FROM now() - min(lease_expires_at)), 0)::float8
FROM {schema}.jobs
WHERE lease_token IS NOT NULL AND lease_expires_at < now();

-- name: doctor_workers
-- Every registered worker, the queues it serves and the seconds since its last heartbeat.
SELECT id, queues, extract(epoch FROM now() - heartbeat_at)::float8
FROM {schema}.workers
ORDER BY heartbeat_at DESC, id;

-- name: doctor_ready_queues
-- Queues with ready jobs, how many, and the oldest one's wait: each needs a live worker serving it.
SELECT queue, count(*), extract(epoch FROM now() - min(run_at))::float8
FROM {schema}.jobs
WHERE lease_token IS NULL AND run_at <= now()
GROUP BY queue
ORDER BY queue;

-- name: doctor_paused_queues
-- Paused queues, the seconds since each was paused, its reason and its ready jobs.
SELECT c.name, extract(epoch FROM now() - c.paused_at)::float8, c.paused_reason,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.queue = c.name AND j.lease_token IS NULL AND j.run_at <= now())
FROM {schema}.queues AS c
WHERE c.paused_at IS NOT NULL
ORDER BY c.paused_at, c.name;

-- name: doctor_notify_queue
-- The fraction of PostgreSQL's NOTIFY queue in use: once it is full, every dispatch fails at commit.
SELECT pg_notification_queue_usage()::float8;

-- name: register_schedules
-- A worker's schedules, upserted at its start so they are listed before their first fire (names
-- sorted by the caller, so workers starting together lock rows in one order). A changed expression
-- or timezone drops the pending fire time: the next check computes it afresh, catching nothing up.
INSERT INTO {schema}.schedules AS s (name, expression, timezone, job_type, queue, defined_by)
SELECT * FROM unnest(
    %(names)s::text[], %(expressions)s::text[], %(timezones)s::text[], %(job_types)s::text[],
    %(queues)s::text[], %(modules)s::text[]
)
ON CONFLICT (name) DO UPDATE
SET expression = EXCLUDED.expression,
    timezone = EXCLUDED.timezone,
    job_type = EXCLUDED.job_type,
    queue = EXCLUDED.queue,
    defined_by = EXCLUDED.defined_by,
    seen_at = now(),
    next_fire_at = CASE
        WHEN (s.expression, s.timezone) = (EXCLUDED.expression, EXCLUDED.timezone)
        THEN s.next_fire_at
    END
RETURNING name;

-- name: check_schedules
-- The clock (database time, or the test's `now`) and the state of this worker's schedules, marking
-- them as still defined by a running worker (seen_at is liveness, so always the real now()). One
-- row even when none is registered, so the clock always comes back.
WITH touched AS (
    UPDATE {schema}.schedules
    SET seen_at = now()
    WHERE name = ANY(%(names)s::text[])
    RETURNING name, expression, timezone, next_fire_at
)
SELECT clock.at, t.name, t.expression, t.timezone, t.next_fire_at
FROM (SELECT coalesce(%(now)s::timestamptz, now()) AS at) AS clock
LEFT JOIN touched AS t ON true
ORDER BY t.name;

-- name: plan_schedule
-- Set the first fire time of a new, changed or resumed schedule, unless another worker did first
-- or the row now holds another definition.
UPDATE {schema}.schedules
SET next_fire_at = %(next_fire_at)s
WHERE name = %(name)s AND next_fire_at IS NULL
  AND expression = %(expression)s AND timezone = %(timezone)s
RETURNING name;

-- name: fire_schedule
-- Fire one schedule: a compare-and-set on next_fire_at (it must still hold the value this worker
-- read) moves it to the next fire time, and the job is inserted in the same statement, so however
-- many workers race exactly one enqueues it. Fire times only grow (last_fire_at), and only a due
-- time fires, in database time. A paused schedule's fire time passes with no job (skipped).
WITH fired AS (
    UPDATE {schema}.schedules
    SET next_fire_at = %(next_fire_at)s,
        last_fire_at = CASE WHEN paused THEN last_fire_at ELSE %(fire_at)s END
    WHERE name = %(name)s AND next_fire_at = %(expected_fire_at)s
      AND expression = %(expression)s AND timezone = %(timezone)s
      AND %(fire_at)s::timestamptz <= coalesce(%(now)s::timestamptz, now())
      AND (last_fire_at IS NULL OR last_fire_at < %(fire_at)s)
    RETURNING paused
), enqueued AS (
    INSERT INTO {schema}.jobs (queue, job_type, payload, priority, max_tries, scheduled_for)
    SELECT %(queue)s, %(job_type)s, %(payload)s::jsonb, %(priority)s, %(max_tries)s, %(fire_at)s
    FROM fired
    WHERE NOT fired.paused
    RETURNING id
)
SELECT (SELECT count(*) FROM fired), (SELECT id FROM enqueued);

-- name: list_schedules
-- Every schedule for `pgqueue schedules`, with the database's now and whether a running worker
-- checked it within the last `defined_within` seconds.
SELECT name, expression, timezone, job_type, queue, defined_by, paused, last_fire_at,
       next_fire_at, seen_at, seen_at > now() - %(defined_within)s * interval '1 second', now()
FROM {schema}.schedules
ORDER BY name;

-- name: pause_schedule
-- Pause a schedule: its fire times pass with no job until it is resumed.
UPDATE {schema}.schedules SET paused = true WHERE name = %(name)s RETURNING name;

-- name: resume_schedule
-- Resume a paused schedule from now: dropping its pending fire time means nothing that passed
-- while it was paused is caught up (a schedule that was not paused keeps its own).
UPDATE {schema}.schedules
SET paused = false,
    next_fire_at = CASE WHEN paused THEN NULL ELSE next_fire_at END
WHERE name = %(name)s
RETURNING name;

-- name: forget_schedule
-- Delete a schedule's row, unless a running worker checked it within `defined_within` seconds
-- (it would only register it again). No row back: no such schedule; else (still defined, deleted).
WITH target AS (
    SELECT name, seen_at > now() - %(defined_within)s * interval '1 second' AS defined
    FROM {schema}.schedules
    WHERE name = %(name)s
    FOR UPDATE
), gone AS (
    DELETE FROM {schema}.schedules AS s
    USING target
    WHERE s.name = target.name AND NOT target.defined
    RETURNING s.name
)
SELECT target.defined, (SELECT count(*) FROM gone) FROM target;

-- ---- the dashboard (pgqueue.dashboard): bounded reads for its pages -------------------------
-- Every statement here stops at a LIMIT that an index serves, so no page reads a big table
-- through, however long the backlog: the pages refresh every few seconds in every open browser.
-- (`pgqueue stats` keeps queue_stats, which counts every row exactly.)

-- name: dashboard_queues
-- Per queue (every queue, or only `queue`): ready, scheduled, running, failed in the last hour and
-- in all, each counted up to `cap` + 1 (the page shows "10,000+" past `cap`); the oldest ready
-- job's wait; its controls, and the ready jobs its own runtime limit holds back. Bounded:
-- - waiting jobs: a skip scan of the claim index (queue, priority, run_at, id) finds each
--   (queue, priority) lane with one descent, at most `max_lanes` of them; in each lane the ready
--   jobs (run_at <= now()) and the scheduled ones are two index ranges, counted with a LIMIT of
--   what is left of the queue's `cap` + 1 (carried from lane to lane), so a queue costs about
--   2 * `cap` index entries whatever its priorities. A lane's first entry is its oldest run_at,
--   so the oldest wait is the least of the lanes' first entries that are due;
-- - running: the leased rows through the partial lease index, `cap` + 1 at most (there are about
--   as many as the workers' slots);
-- - failed: a skip scan of failed_jobs' (queue, failed_at) index, then two capped ranges a queue;
-- - workers, queues and job_limits are small tables, read whole.
-- Not counted: ready jobs a job type's limit holds back (queue_stats reads every ready job's
-- payload for its limit key): `limited_types` says how many types have limits, so the page can
-- say so. Every row repeats the clock columns (now, the queue whose lanes were cut at
-- `max_lanes` or NULL, whether the leases passed `cap`, limited_types); with no queue, one row
-- carries them and a NULL queue. The `%(queue)s IS NULL OR` filters fold away in a plan made for
-- the value; the dashboard runs this once per connection, so it is never prepared (a generic
-- plan would walk every queue to show one: about 90 ms against 2 on a million jobs).
WITH RECURSIVE lanes AS (
    SELECT ''::text AS queue, (-2147483648)::integer AS priority,
           0::bigint AS ready, 0::bigint AS scheduled, NULL::timestamptz AS oldest, 0 AS step
    UNION ALL
    SELECT next.queue, next.priority, carried.ready + ready.n, carried.scheduled + scheduled.n,
           CASE WHEN next.run_at <= now() THEN least(carried.oldest, next.run_at)
                ELSE carried.oldest END,
           lane.step + 1
    FROM lanes AS lane
    CROSS JOIN LATERAL (
        -- The queue's next priority, else the next queue's first: two index descents at most.
        SELECT * FROM (
            (SELECT j.queue, j.priority, j.run_at
             FROM {schema}.jobs AS j
             WHERE j.lease_token IS NULL AND j.queue = lane.queue AND j.priority > lane.priority
             ORDER BY j.priority, j.run_at
             LIMIT 1)
            UNION ALL
            (SELECT j.queue, j.priority, j.run_at
             FROM {schema}.jobs AS j
             WHERE j.lease_token IS NULL AND j.queue > lane.queue
               AND (%(queue)s::text IS NULL OR j.queue = %(queue)s)
             ORDER BY j.queue, j.priority, j.run_at
             LIMIT 1)
        ) AS candidates
        LIMIT 1
    ) AS next
    CROSS JOIN LATERAL (
        SELECT CASE WHEN next.queue = lane.queue THEN lane.ready ELSE 0 END AS ready,
               CASE WHEN next.queue = lane.queue THEN lane.scheduled ELSE 0 END AS scheduled,
               CASE WHEN next.queue = lane.queue THEN lane.oldest END AS oldest
    ) AS carried
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT FROM {schema}.jobs AS j
            WHERE j.lease_token IS NULL AND j.queue = next.queue AND j.priority = next.priority
              AND j.run_at <= now()
            LIMIT greatest(%(cap)s + 1 - carried.ready, 0)
        ) AS counted
    ) AS ready
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT FROM {schema}.jobs AS j
            WHERE j.lease_token IS NULL AND j.queue = next.queue AND j.priority = next.priority
              AND j.run_at > now()
            LIMIT greatest(%(cap)s + 1 - carried.scheduled, 0)
        ) AS counted
    ) AS scheduled
    WHERE lane.step < %(max_lanes)s
), waiting AS (
    SELECT DISTINCT ON (queue) queue, ready, scheduled, oldest
    FROM lanes
    WHERE step > 0
    ORDER BY queue, step DESC
), leased AS MATERIALIZED (
    SELECT queue
    FROM {schema}.jobs
    WHERE lease_token IS NOT NULL AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    LIMIT %(cap)s + 1
), running AS (
    SELECT queue, count(*) AS n FROM leased GROUP BY queue
), failed_queues AS (
    (SELECT queue FROM {schema}.failed_jobs
     WHERE %(queue)s::text IS NULL OR queue = %(queue)s
     ORDER BY queue
     LIMIT 1)
    UNION ALL
    SELECT (
        SELECT f.queue FROM {schema}.failed_jobs AS f
        WHERE f.queue > found.queue AND %(queue)s::text IS NULL
        ORDER BY f.queue
        LIMIT 1
    )
    FROM failed_queues AS found
    WHERE found.queue IS NOT NULL
), failed AS (
    SELECT fq.queue, last_hour.n AS last_hour, total.n AS total
    FROM (SELECT queue FROM failed_queues WHERE queue IS NOT NULL LIMIT %(max_lanes)s) AS fq
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT FROM {schema}.failed_jobs AS f
            WHERE f.queue = fq.queue AND f.failed_at > now() - interval '1 hour'
            LIMIT %(cap)s + 1
        ) AS counted
    ) AS last_hour
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM (
            SELECT FROM {schema}.failed_jobs AS f WHERE f.queue = fq.queue LIMIT %(cap)s + 1
        ) AS counted
    ) AS total
), served AS (
    SELECT DISTINCT unnest(queues) AS queue FROM {schema}.workers
), queue_started AS (
    SELECT s.name AS queue, count(*) AS n
    FROM {schema}.limit_starts AS s
    JOIN {schema}.queues AS c ON c.name = s.name AND c.rate_limit IS NOT NULL
    WHERE s.kind = 'queue' AND s.limit_key = ''
      AND s.started_at > now() - c.rate_period_seconds * interval '1 second'
    GROUP BY s.name
), named AS (
    SELECT queue FROM waiting UNION SELECT queue FROM running UNION SELECT queue FROM failed
    UNION SELECT queue FROM served UNION SELECT name FROM {schema}.queues
)
SELECT clock.now, clock.cut_queue, clock.leases_cut, clock.limited_types, q.queue,
       coalesce(waiting.ready, 0), coalesce(waiting.scheduled, 0), coalesce(running.n, 0),
       coalesce(failed.last_hour, 0), coalesce(failed.total, 0),
       extract(epoch FROM clock.now - waiting.oldest)::float8,
       c.paused_at, c.paused_reason, c.concurrency, c.rate_limit, c.rate_period_seconds,
       CASE WHEN allowance.n IS NOT NULL
            THEN greatest(coalesce(waiting.ready, 0) - greatest(allowance.n, 0), 0) ELSE 0 END,
       coalesce(allowance.n <= 0, false)
FROM (
    SELECT now() AS now,
           (SELECT queue FROM lanes WHERE step >= %(max_lanes)s LIMIT 1) AS cut_queue,
           (SELECT count(*) FROM leased) > %(cap)s AS leases_cut,
           (SELECT count(*) FROM {schema}.job_limits) AS limited_types
) AS clock
LEFT JOIN named AS q ON %(queue)s::text IS NULL OR q.queue = %(queue)s
LEFT JOIN waiting USING (queue)
LEFT JOIN running USING (queue)
LEFT JOIN failed USING (queue)
LEFT JOIN queue_started USING (queue)
LEFT JOIN {schema}.queues AS c ON c.name = q.queue
LEFT JOIN LATERAL (
    SELECT least(
        c.concurrency - coalesce(running.n, 0), c.rate_limit - coalesce(queue_started.n, 0)
    ) AS n
) AS allowance ON true
ORDER BY q.queue;

-- name: dashboard_waiting_jobs
-- A queue's waiting jobs (ready or scheduled) in the order the claim takes them, a page at a time.
-- The claim index (queue, priority, run_at, id) serves that order, so a page reads at most `scan`
-- index entries (the caller caps offset + limit below it): with a type filter, only the first
-- `scan` waiting jobs are searched, never the whole queue.
SELECT id, job_type, run_at <= now(), priority, run_at, attempts, max_tries, enqueued_at,
       left(last_error, 300)
FROM (
    SELECT id, job_type, priority, run_at, attempts, max_tries, enqueued_at, last_error
    FROM {schema}.jobs
    WHERE queue = %(queue)s AND lease_token IS NULL
    ORDER BY priority, run_at, id
    LIMIT %(scan)s
) AS waiting
WHERE %(job_type)s::text IS NULL OR job_type = %(job_type)s
ORDER BY priority, run_at, id
OFFSET %(offset)s
LIMIT %(limit)s;

-- name: dashboard_running_jobs
-- A queue's leased jobs (running, or claimed ahead of a free slot), oldest claim first. There are
-- about as many as the workers' slots; the partial lease index finds them without reading the
-- waiting jobs.
SELECT id, job_type, worker_id, claimed_at, lease_expires_at, attempts, max_tries, progress,
       progress_message, cancel_requested_at IS NOT NULL
FROM {schema}.jobs
WHERE queue = %(queue)s AND lease_token IS NOT NULL
ORDER BY claimed_at, id
LIMIT %(limit)s;

-- name: dashboard_job_details
-- What a job's page shows beside its status (job_status decides the state): the payload, its
-- place in line and lease while in jobs, the traceback once in failed_jobs. A primary-key lookup
-- in each; a completed job's row in job_results holds nothing more than its status.
-- Columns: payload, priority, max_tries, run_at, worker_id, lease_expires_at,
-- cancel_requested_at, traceback.
SELECT *
FROM (
    SELECT payload::text, priority, max_tries, run_at, worker_id, lease_expires_at,
           cancel_requested_at, NULL::text AS traceback
    FROM {schema}.jobs
    WHERE id = %(id)s
    UNION ALL
    SELECT payload::text, priority, max_tries, NULL, worker_id, NULL, NULL, traceback
    FROM {schema}.failed_jobs
    WHERE id = %(id)s
) AS found
LIMIT 1;

-- name: dashboard_failed_jobs
-- Failed jobs newest first, optionally of one queue, type or the last N seconds, a page at a time:
-- keyset on (failed_at, id), so a later page costs what the first does (the failed_at indexes
-- serve the order). Without the payload, and the traceback cut short: the job page has them whole.
SELECT id, queue, job_type, attempts, max_tries, exception_class, left(exception_message, 500),
       left(traceback, 4000), failed_at
FROM {schema}.failed_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s)
  AND (%(since_seconds)s::float8 IS NULL
       OR failed_at >= now() - %(since_seconds)s::float8 * interval '1 second')
  AND (%(before_at)s::timestamptz IS NULL
       OR (failed_at <= %(before_at)s AND (failed_at, id) < (%(before_at)s, %(before_id)s)))
ORDER BY failed_at DESC, id DESC
LIMIT %(limit)s;

-- name: dashboard_workers
-- The registered workers, freshest heartbeat first: where each runs, what it serves, the seconds
-- since its heartbeat, what it finished and how many jobs it holds now (one pass over the leased
-- jobs, through the lease index, for all of them).
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.started_at,
       extract(epoch FROM now() - w.heartbeat_at)::float8, w.jobs_completed, w.jobs_failed,
       coalesce(held.n, 0)
FROM {schema}.workers AS w
LEFT JOIN (
    SELECT worker_id, count(*) AS n FROM {schema}.jobs
    WHERE lease_token IS NOT NULL
    GROUP BY worker_id
) AS held ON held.worker_id = w.id
ORDER BY w.heartbeat_at DESC, w.id
LIMIT %(limit)s;

-- name: dashboard_throughput
-- Jobs completed and failed per queue and minute over the last `minutes` minutes (every queue, or
-- one), for the throughput chart: the minute index bounds the read to those rows. The first row
-- carries the database's current minute, so the chart's buckets line up even with no rows.
SELECT clock.minute, t.queue, t.minute, t.completed, t.failed
FROM (SELECT date_trunc('minute', now()) AS minute) AS clock
LEFT JOIN {schema}.queue_throughput AS t
    ON t.minute > clock.minute - %(minutes)s * interval '1 minute'
   AND (%(queue)s::text IS NULL OR t.queue = %(queue)s)
ORDER BY t.minute, t.queue;

-- name: dashboard_failed_queues
-- The queues that have failed jobs, for the failed page's filter: a skip scan of the
-- (queue, failed_at) index, one probe per queue, so it never reads the table through.
WITH RECURSIVE found AS (
    (SELECT queue FROM {schema}.failed_jobs ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (
        SELECT f.queue FROM {schema}.failed_jobs AS f
        WHERE f.queue > found.queue
        ORDER BY f.queue
        LIMIT 1
    )
    FROM found
    WHERE found.queue IS NOT NULL
)
SELECT queue FROM found WHERE queue IS NOT NULL LIMIT %(limit)s;

-- name: django_task_row
-- A Django task's payload, priority and, once failed, traceback (pgqueue.contrib.django's
-- get_result; job_status decides the state): a primary-key lookup in jobs, then failed_jobs.
SELECT *
FROM (
    SELECT payload::text, priority, NULL::text AS traceback
    FROM {schema}.jobs
    WHERE id = %(id)s
    UNION ALL
    SELECT payload::text, priority, traceback
    FROM {schema}.failed_jobs
    WHERE id = %(id)s
) AS found
LIMIT 1;
