-- The one-row form of portal_domains_enqueue_stages, for operators.
CREATE OR REPLACE FUNCTION portal_domains_enqueue_stage(domain_id uuid, stage_status portal_domain_status, generation bigint)
 RETURNS boolean
 LANGUAGE sql
AS $function$
    SELECT coalesce(portal_domains_enqueue_stages(ARRAY[domain_id], ARRAY[stage_status], ARRAY[generation]), 0) > 0
$function$;
