-- The working index as 001 made it.
DROP INDEX portal_domains_working_idx;
CREATE INDEX portal_domains_working_idx ON portal_domains (status_changed_at)
    WHERE status NOT IN ('active', 'disabled', 'dns_failed', 'certificate_failed');
