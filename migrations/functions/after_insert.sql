-- Statement-level, after INSERT: one history row and one stage job per new
-- row, set-based, with one notify per queue.
CREATE OR REPLACE FUNCTION portal_domains_after_insert()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO portal_domain_events (domain_id, tenant, generation, from_status, to_status, message, details)
    SELECT n.id, n.tenant, n.pipeline_generation, NULL, n.status, n.status_message, jsonb_build_object('domain', n.domain)
    FROM new_rows n;
    PERFORM portal_domains_enqueue_stages(array_agg(n.id), array_agg(n.status), array_agg(n.pipeline_generation))
    FROM new_rows n;
    RETURN NULL;
END $function$;
