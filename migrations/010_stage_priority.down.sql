-- Back to 009: jobs without a stage priority, and 006's one-row function.
CREATE OR REPLACE FUNCTION portal_domains_enqueue_stages(domain_ids uuid[], stage_statuses portal_domain_status[], generations bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    enqueued integer;
    queues text[];
BEGIN
    WITH due AS (
        SELECT s.kind, s.max_attempts, s.queue, s.first_run_delay,
               -- Compact JSON with sorted keys: the bytes River hashes.
               '{"domain_id":"' || r.domain_id::text || '","generation":' || r.generation::text || '}' AS args
        FROM unnest(domain_ids, stage_statuses, generations) AS r(domain_id, status, generation)
        JOIN portal_domain_stage_jobs s ON s.status = r.status
    ), inserted AS (
        INSERT INTO river_job (args, kind, max_attempts, queue, scheduled_at, state, unique_key, unique_states)
        SELECT args::jsonb, kind, max_attempts, queue, now() + first_run_delay,
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

CREATE OR REPLACE FUNCTION portal_domains_enqueue_stage(domain_id uuid, stage_status portal_domain_status, generation bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    stage portal_domain_stage_jobs%ROWTYPE;
    args text;
    inserted_id bigint;
    delayed boolean;
BEGIN
    SELECT * INTO stage FROM portal_domain_stage_jobs WHERE status = stage_status;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    delayed := stage.first_run_delay > interval '0';
    -- Compact JSON with sorted keys: the bytes River hashes for its unique key.
    args := '{"domain_id":"' || domain_id::text || '","generation":' || generation::text || '}';
    INSERT INTO river_job (args, kind, max_attempts, queue, scheduled_at, state, unique_key, unique_states)
    VALUES (args::jsonb, stage.kind, stage.max_attempts, stage.queue,
            now() + stage.first_run_delay,
            CASE WHEN delayed THEN 'scheduled' ELSE 'available' END::river_job_state,
            sha256(convert_to('&kind=' || stage.kind || '&args=' || args, 'UTF8')), B'11110101')
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL AND river_job_state_in_bitmask(unique_states, state)
        DO NOTHING
    RETURNING id INTO inserted_id;
    IF inserted_id IS NULL THEN
        RETURN false;
    END IF;
    IF NOT delayed THEN
        PERFORM pg_notify(current_schema() || '.river_insert', json_build_object('queue', stage.queue)::text);
    END IF;
    RETURN true;
END $$;
ALTER FUNCTION portal_domains_enqueue_stage(uuid, portal_domain_status, bigint) SET search_path FROM CURRENT;

ALTER TABLE portal_domain_stage_jobs DROP COLUMN IF EXISTS priority;
