-- The after-write work (a history row, the next stage's River job, a
-- notify) runs once per statement over all the rows it wrote, instead of
-- once per row: a row trigger ran two plpgsql calls and two single-row
-- INSERTs through SPI per row, which cost more than the UPDATE itself;
-- set-based, the statement shares that cost. The worker writes a group of
-- transitions as one UPDATE (db.TransitionGroup), and bulk imports as one
-- INSERT get the same saving. Every writer still gets the same history, job and notify, in its
-- own transaction: nothing changes for the app's SQL.

-- Inserts the River job of each row's stage, exactly as River's InsertTx
-- does for unique-by-args jobs (same args bytes, unique_key, unique_states
-- and ON CONFLICT; 'scheduled' after the stage's first-run delay), and
-- notifies each queue that got a job it can run now.
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

-- After an INSERT: every new row gets its first event and its first job.
CREATE OR REPLACE FUNCTION portal_domains_after_insert()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO portal_domain_events (domain_id, tenant, generation, from_status, to_status, message, details)
    SELECT n.id, n.tenant, n.pipeline_generation, NULL, n.status, n.status_message, jsonb_build_object('domain', n.domain)
    FROM new_rows n;
    PERFORM portal_domains_enqueue_stages(array_agg(n.id), array_agg(n.status), array_agg(n.pipeline_generation))
    FROM new_rows n;
    RETURN NULL;
END $$;
ALTER FUNCTION portal_domains_after_insert() SET search_path FROM CURRENT;

-- After an UPDATE: an event where the status, message or generation
-- changed, and the new stage's job where the status or generation did.
CREATE OR REPLACE FUNCTION portal_domains_after_update()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO portal_domain_events (domain_id, tenant, generation, from_status, to_status, message, details)
    SELECT n.id, n.tenant, n.pipeline_generation, o.status, n.status, n.status_message, jsonb_build_object('domain', n.domain)
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status
       OR n.status_message IS DISTINCT FROM o.status_message
       OR n.pipeline_generation <> o.pipeline_generation;
    -- (No row due gives NULL arrays, which enqueue nothing.)
    PERFORM portal_domains_enqueue_stages(array_agg(n.id), array_agg(n.status), array_agg(n.pipeline_generation))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status OR n.pipeline_generation <> o.pipeline_generation;
    RETURN NULL;
END $$;
ALTER FUNCTION portal_domains_after_update() SET search_path FROM CURRENT;

DROP TRIGGER IF EXISTS portal_domains_after_write ON portal_domains;
DROP FUNCTION IF EXISTS portal_domains_after_write();
DROP TRIGGER IF EXISTS portal_domains_after_insert ON portal_domains;
CREATE TRIGGER portal_domains_after_insert AFTER INSERT ON portal_domains
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION portal_domains_after_insert();
DROP TRIGGER IF EXISTS portal_domains_after_update ON portal_domains;
CREATE TRIGGER portal_domains_after_update AFTER UPDATE ON portal_domains
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION portal_domains_after_update();
