-- Back to 008: the after-write work once per row.
DROP TRIGGER IF EXISTS portal_domains_after_insert ON portal_domains;
DROP TRIGGER IF EXISTS portal_domains_after_update ON portal_domains;
DROP FUNCTION IF EXISTS portal_domains_after_insert();
DROP FUNCTION IF EXISTS portal_domains_after_update();
DROP FUNCTION IF EXISTS portal_domains_enqueue_stages(uuid[], portal_domain_status[], bigint[]);

CREATE OR REPLACE FUNCTION portal_domains_after_write()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.status_message IS DISTINCT FROM OLD.status_message
       OR NEW.pipeline_generation <> OLD.pipeline_generation THEN
        INSERT INTO portal_domain_events (domain_id, tenant, generation, from_status, to_status, message, details)
        VALUES (NEW.id, NEW.tenant, NEW.pipeline_generation,
                CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status, NEW.status_message,
                jsonb_build_object('domain', NEW.domain));
    END IF;
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.pipeline_generation <> OLD.pipeline_generation THEN
        PERFORM portal_domains_enqueue_stage(NEW.id, NEW.status, NEW.pipeline_generation);
    END IF;
    RETURN NULL;
END $$;
ALTER FUNCTION portal_domains_after_write() SET search_path FROM CURRENT;

DROP TRIGGER IF EXISTS portal_domains_after_write ON portal_domains;
CREATE TRIGGER portal_domains_after_write AFTER INSERT OR UPDATE ON portal_domains
    FOR EACH ROW EXECUTE FUNCTION portal_domains_after_write();
