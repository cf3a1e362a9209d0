-- Makes the current stage job of a domain run now (the Certificate watch
-- calls it when Ready changes), found by its unique key: 'woken' when it was
-- waiting (snoozed, including River's short snoozes stored as 'available'
-- with a future scheduled_at, or held back), 'busy' when it is running or
-- retryable, 'none' when the domain has no stage job.
CREATE OR REPLACE FUNCTION portal_domains_wake(wake_domain_id uuid)
 RETURNS text
 LANGUAGE plpgsql
AS $function$
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
END $function$;
