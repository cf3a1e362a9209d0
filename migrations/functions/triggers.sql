-- The triggers that make every writer of portal_domains take the one
-- enqueue path. Re-created by every migrate up, after the functions.
CREATE OR REPLACE TRIGGER portal_domains_before_write BEFORE INSERT OR UPDATE ON portal_domains
    FOR EACH ROW EXECUTE FUNCTION portal_domains_before_write();
CREATE OR REPLACE TRIGGER portal_domains_after_insert AFTER INSERT ON portal_domains
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_domains_after_insert();
CREATE OR REPLACE TRIGGER portal_domains_after_update AFTER UPDATE ON portal_domains
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_domains_after_update();
CREATE OR REPLACE TRIGGER portal_domains_after_delete AFTER DELETE ON portal_domains
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_domains_after_delete();
