-- Inserts the River job of each (domain, status, generation)'s stage exactly
-- as River's InsertTx does for unique-by-args jobs (same args bytes, unique
-- key, unique_states, ON CONFLICT; 'scheduled' with a future scheduled_at
-- for a stage that holds its job back), with the stage's priority, and
-- notifies each queue once so an idle worker starts within milliseconds.
-- The after-write triggers and the reconcile job both enqueue through it;
-- in appliance mode it enqueues nothing.
CREATE OR REPLACE FUNCTION portal_domains_enqueue_stages(domain_ids uuid[], stage_statuses portal_domain_status[], generations bigint[])
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    enqueued integer;
    queues text[];
BEGIN
    -- In appliance mode no pipeline runs.
    IF EXISTS (SELECT 1 FROM portal_domain_settings WHERE key = 'appliance' AND value = 'true') THEN
        RETURN 0;
    END IF;
    WITH due AS (
        SELECT s.kind, s.max_attempts, s.queue, s.first_run_delay, s.priority,
               -- Compact JSON with sorted keys: the bytes River hashes.
               '{"domain_id":"' || r.domain_id::text || '","generation":' || r.generation::text || '}' AS args,
               -- domain.JobTags: River UI finds a domain's jobs by these. Not
               -- part of the unique key.
               array_remove(ARRAY[
                   CASE WHEN length(d.domain) <= 248 THEN 'domain_' || replace(d.domain, '.', '_') END,
                   'tenant_' || d.tenant::text], NULL)::varchar(255)[] AS tags
        FROM unnest(domain_ids, stage_statuses, generations) AS r(domain_id, status, generation)
        JOIN portal_domain_stage_jobs s ON s.status = r.status
        JOIN portal_domains d ON d.id = r.domain_id
    ), inserted AS (
        INSERT INTO river_job (args, kind, max_attempts, priority, queue, scheduled_at, state, tags, unique_key, unique_states)
        SELECT args::jsonb, kind, max_attempts, priority, queue, now() + first_run_delay,
               CASE WHEN first_run_delay > interval '0' THEN 'scheduled' ELSE 'available' END::river_job_state, tags,
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
END $function$;
