DROP TRIGGER IF EXISTS portal_domains_after_write ON portal_domains;
DROP TRIGGER IF EXISTS portal_domains_before_write ON portal_domains;
DROP FUNCTION IF EXISTS portal_domains_after_write();
DROP FUNCTION IF EXISTS portal_domains_before_write();
DROP FUNCTION IF EXISTS portal_domains_wake(uuid);
DROP FUNCTION IF EXISTS portal_domains_enqueue_stage(uuid, portal_domain_status, bigint);
DROP FUNCTION IF EXISTS portal_domains_normalize_hostname(text);
DROP FUNCTION IF EXISTS portal_domains_check_hostname(text, text);
