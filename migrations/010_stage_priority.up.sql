-- A stage's jobs carry a River priority (domain.Stage.Priority): apply jobs
-- run after the await_certificate and disable jobs waiting on the same
-- kubernetes queue. In a bulk import thousands of applies queue up; a
-- domain whose certificate turned Ready waited behind all of them for its
-- await job (minutes, at 10,000 domains) instead of going live at once. River fetches by priority, then scheduled_at; the priority is
-- not part of the unique key, so River's InsertTx of the same args is still
-- a duplicate of the trigger's job.
ALTER TABLE portal_domain_stage_jobs ADD COLUMN IF NOT EXISTS priority smallint NOT NULL DEFAULT 1
    CHECK (priority BETWEEN 1 AND 4);

CREATE OR REPLACE FUNCTION portal_domains_enqueue_stages(domain_ids uuid[], stage_statuses portal_domain_status[], generations bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    enqueued integer;
    queues text[];
BEGIN
    WITH due AS (
        SELECT s.kind, s.max_attempts, s.queue, s.first_run_delay, s.priority,
               -- Compact JSON with sorted keys: the bytes River hashes.
               '{"domain_id":"' || r.domain_id::text || '","generation":' || r.generation::text || '}' AS args
        FROM unnest(domain_ids, stage_statuses, generations) AS r(domain_id, status, generation)
        JOIN portal_domain_stage_jobs s ON s.status = r.status
    ), inserted AS (
        INSERT INTO river_job (args, kind, max_attempts, priority, queue, scheduled_at, state, unique_key, unique_states)
        SELECT args::jsonb, kind, max_attempts, priority, queue, now() + first_run_delay,
               CASE WHEN first_run_delay > interval '0' THEN 'scheduled' ELSE 'available' END::river_job_state,
               sha256(convert_to('&kind=' || kind || '&args=' || args, 'UTF8')), B'11110101'
        FROM due
        ON CONFLICT (unique_key)
            WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL AND river_job_state_in_bitmask(unique_states, state)
            DO NOTHING
        RETURNING queue, state
    )
    SELECT count(*), array_agg(DISTINCT queue) FILTER (WHERE state = 'available')
    INTO enqueued, queues
    FROM inserted;
    IF queues IS NOT NULL THEN
        PERFORM pg_notify(current_schema() || '.river_insert', json_build_object('queue', q)::text)
        FROM unnest(queues) AS q;
    END IF;
    RETURN enqueued;
END $$;
ALTER FUNCTION portal_domains_enqueue_stages(uuid[], portal_domain_status[], bigint[]) SET search_path FROM CURRENT;

-- The one-row form (for operators and older callers) is the set-based one.
CREATE OR REPLACE FUNCTION portal_domains_enqueue_stage(domain_id uuid, stage_status portal_domain_status, generation bigint)
RETURNS boolean LANGUAGE sql AS $$
    SELECT coalesce(portal_domains_enqueue_stages(ARRAY[domain_id], ARRAY[stage_status], ARRAY[generation]), 0) > 0
$$;
ALTER FUNCTION portal_domains_enqueue_stage(uuid, portal_domain_status, bigint) SET search_path FROM CURRENT;
