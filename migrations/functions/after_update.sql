-- Statement-level, after UPDATE: a history row for each row whose status or
-- message changed, and the stage job of each row that entered a status or a
-- new generation, set-based, with one notify per queue.
CREATE OR REPLACE FUNCTION portal_domains_after_update()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
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
END $function$;
