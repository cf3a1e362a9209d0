-- The triggers and functions that every migrate up installs, then the tables
-- of portal-domains.
DROP TRIGGER IF EXISTS portal_domains_after_delete ON portal_domains;
DROP TRIGGER IF EXISTS portal_domains_after_update ON portal_domains;
DROP TRIGGER IF EXISTS portal_domains_after_insert ON portal_domains;
DROP TRIGGER IF EXISTS portal_domains_before_write ON portal_domains;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'portal\_domains\_%'
    LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END $$;
DROP TABLE portal_domain_canonical_hosts, portal_domain_alerts, portal_domain_settings,
    portal_domain_stage_jobs, portal_domain_transitions, portal_domain_events;

-- Removes only what the up created (portal_domain_created_objects): on a
-- database whose portal_domains table was AlgaPSA's, the table, its types,
-- indexes, key and rows stay as they were before portal-domains came.
DO $$
DECLARE
    made record;
BEGIN
    IF EXISTS (SELECT 1 FROM portal_domain_created_objects WHERE kind = 'table') THEN
        DROP TABLE portal_domains;
    ELSE
        FOR made IN SELECT kind, name FROM portal_domain_created_objects
                    WHERE kind IN ('column', 'index', 'constraint') ORDER BY seq DESC
        LOOP
            CASE made.kind
            WHEN 'index' THEN EXECUTE format('DROP INDEX %I', made.name);
            WHEN 'constraint' THEN EXECUTE format('ALTER TABLE portal_domains DROP CONSTRAINT %I', made.name);
            WHEN 'column' THEN EXECUTE format('ALTER TABLE portal_domains DROP COLUMN %I', made.name);
            END CASE;
        END LOOP;
    END IF;
    FOR made IN SELECT name FROM portal_domain_created_objects WHERE kind = 'type' ORDER BY seq DESC LOOP
        EXECUTE format('DROP TYPE %I', made.name);
    END LOOP;
END $$;
DROP TABLE portal_domain_created_objects;
