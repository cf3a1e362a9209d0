-- A stage may hold its job back after its status is entered
-- (domain.Stage.FirstRunDelay): await_certificate is woken by the
-- Certificate watch, so running it the moment apply finishes only finds
-- "not issued yet", at the price of a job, three API reads and a status
-- write per domain. The delayed job is inserted as River inserts a job with
-- a future ScheduledAt: state 'scheduled', same unique key.
ALTER TABLE portal_domain_stage_jobs ADD COLUMN IF NOT EXISTS first_run_delay interval NOT NULL DEFAULT '0'
    CHECK (first_run_delay >= interval '0');

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

-- portal_domains_wake now says what it found, so the Certificate watch knows
-- whether trying again later can help:
--   'woken': the current stage's job was waiting and runs now, or is due
--            and has not started (it will read the change);
--   'busy':  the stage's job is running or about to retry (it may have read
--            the Certificate before the change): try again shortly;
--   'none':  the status has no stage job (active, failed) or none exists.
DROP FUNCTION IF EXISTS portal_domains_wake(uuid);
CREATE FUNCTION portal_domains_wake(wake_domain_id uuid)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    key bytea;
    woken_queue text;
    job_state river_job_state;
BEGIN
    SELECT sha256(convert_to('&kind=' || s.kind || '&args={"domain_id":"' || d.id::text
                             || '","generation":' || d.pipeline_generation::text || '}', 'UTF8'))
    INTO key
    FROM portal_domains d JOIN portal_domain_stage_jobs s ON s.status = d.status
    WHERE d.id = wake_domain_id;
    IF key IS NULL THEN
        RETURN 'none';
    END IF;
    -- The predicate repeats river_job_unique_idx's, so the lookup by key
    -- uses that partial index instead of scanning river_job (which cost a
    -- millisecond per wake at a few thousand jobs). Every state matched
    -- here is one of the stage jobs' unique states.
    UPDATE river_job SET state = 'available', scheduled_at = now()
    WHERE unique_key = key
      AND unique_key IS NOT NULL AND unique_states IS NOT NULL AND river_job_state_in_bitmask(unique_states, state)
      AND (state = 'scheduled' OR (state = 'available' AND scheduled_at > now()))
    RETURNING queue INTO woken_queue;
    IF woken_queue IS NOT NULL THEN
        PERFORM pg_notify(current_schema() || '.river_insert', json_build_object('queue', woken_queue)::text);
        RETURN 'woken';
    END IF;
    SELECT state INTO job_state FROM river_job
    WHERE unique_key = key
      AND unique_key IS NOT NULL AND unique_states IS NOT NULL AND river_job_state_in_bitmask(unique_states, state)
      AND state IN ('available', 'pending', 'running', 'retryable');
    RETURN CASE job_state
        WHEN 'available' THEN 'woken'
        WHEN 'pending' THEN 'woken'
        WHEN 'running' THEN 'busy'
        WHEN 'retryable' THEN 'busy'
        ELSE 'none' END;
END $$;
ALTER FUNCTION portal_domains_wake(uuid) SET search_path FROM CURRENT;
