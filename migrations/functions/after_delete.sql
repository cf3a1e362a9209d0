-- Statement-level, after DELETE: a history row for each deleted row (the
-- disable job's delete, AlgaPSA's appliance disable, a tenant's deletion),
-- so a domain's history outlives it.
CREATE OR REPLACE FUNCTION portal_domains_after_delete()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO portal_domain_events (domain_id, tenant, generation, from_status, to_status, message, details)
    SELECT o.id, o.tenant, o.pipeline_generation, o.status, o.status, 'The portal domain was deleted.',
           jsonb_build_object('domain', o.domain, 'deleted', true)
    FROM old_rows o;
    RETURN NULL;
END $function$;
