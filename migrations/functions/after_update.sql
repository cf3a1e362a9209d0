-- Statement-level, after UPDATE: a history row for each row whose status or
-- message changed, and the stage job of each row that entered a status or a
-- new generation, set-based, with one notify per queue; and the git_record
-- job of each manifest change when the record is on.
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
    -- The manifest record: objects applied, or removed by the disable job.
    PERFORM portal_domains_enqueue_git_records(array_agg(n.id),
        array_agg(CASE WHEN n.status = 'certificate_issuing' THEN 'apply' ELSE 'remove' END), array_agg(n.pipeline_generation))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.pipeline_generation = o.pipeline_generation
      AND ((o.status = 'pending_certificate' AND n.status = 'certificate_issuing')
        OR (o.status = 'disabled' AND n.status = 'disabled'
            AND o.certificate_secret_name IS NOT NULL AND n.certificate_secret_name IS NULL));
    RETURN NULL;
END $function$;
