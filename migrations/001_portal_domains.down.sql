-- Removes only what 001's up created (portal_domain_created_objects): on a
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
