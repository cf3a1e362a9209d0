CREATE OR REPLACE FUNCTION portal_domains_wake(wake_domain_id uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    woken_queue text;
BEGIN
    UPDATE river_job j SET state = 'available', scheduled_at = now()
    FROM portal_domains d JOIN portal_domain_stage_jobs s ON s.status = d.status
    WHERE d.id = wake_domain_id
      AND j.unique_key = sha256(convert_to('&kind=' || s.kind || '&args={"domain_id":"' || d.id::text
                                           || '","generation":' || d.pipeline_generation::text || '}', 'UTF8'))
      AND j.state = 'scheduled'
    RETURNING j.queue INTO woken_queue;
    IF woken_queue IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_notify(current_schema() || '.river_insert', json_build_object('queue', woken_queue)::text);
    RETURN true;
END $$;
ALTER FUNCTION portal_domains_wake(uuid) SET search_path FROM CURRENT;
