-- Back to 005: jobs enqueued at once, wake answers true/false.
CREATE OR REPLACE FUNCTION portal_domains_enqueue_stage(domain_id uuid, stage_status portal_domain_status, generation bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    stage portal_domain_stage_jobs%ROWTYPE;
    args text;
    inserted_id bigint;
BEGIN
    SELECT * INTO stage FROM portal_domain_stage_jobs WHERE status = stage_status;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Compact JSON with sorted keys: the bytes River hashes for its unique key.
    args := '{"domain_id":"' || domain_id::text || '","generation":' || generation::text || '}';
    INSERT INTO river_job (args, kind, max_attempts, queue, unique_key, unique_states)
    VALUES (args::jsonb, stage.kind, stage.max_attempts, stage.queue,
            sha256(convert_to('&kind=' || stage.kind || '&args=' || args, 'UTF8')), B'11110101')
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL AND river_job_state_in_bitmask(unique_states, state)
        DO NOTHING
    RETURNING id INTO inserted_id;
    IF inserted_id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_notify(current_schema() || '.river_insert', json_build_object('queue', stage.queue)::text);
    RETURN true;
END $$;
ALTER FUNCTION portal_domains_enqueue_stage(uuid, portal_domain_status, bigint) SET search_path FROM CURRENT;

DROP FUNCTION IF EXISTS portal_domains_wake(uuid);
CREATE FUNCTION portal_domains_wake(wake_domain_id uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    woken_queue text;
BEGIN
    UPDATE river_job j SET state = 'available', scheduled_at = now()
    FROM portal_domains d JOIN portal_domain_stage_jobs s ON s.status = d.status
    WHERE d.id = wake_domain_id
      AND j.unique_key = sha256(convert_to('&kind=' || s.kind || '&args={"domain_id":"' || d.id::text
                                           || '","generation":' || d.pipeline_generation::text || '}', 'UTF8'))
      AND (j.state = 'scheduled' OR (j.state = 'available' AND j.scheduled_at > now()))
    RETURNING j.queue INTO woken_queue;
    IF woken_queue IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_notify(current_schema() || '.river_insert', json_build_object('queue', woken_queue)::text);
    RETURN true;
END $$;
ALTER FUNCTION portal_domains_wake(uuid) SET search_path FROM CURRENT;

ALTER TABLE portal_domain_stage_jobs DROP COLUMN IF EXISTS first_run_delay;
