-- The reconcile job walks the working rows in windows ordered by
-- (status_changed_at, id), each window starting after the last row of the
-- one before. id breaks the ties a bulk INSERT leaves (every row gets the
-- same now()), so a window is one index range however many rows tie.
-- The index keeps its name, which portal_domain_created_objects records.
DROP INDEX portal_domains_working_idx;
CREATE INDEX portal_domains_working_idx ON portal_domains (status_changed_at, id)
    WHERE status NOT IN ('active', 'disabled', 'dns_failed', 'certificate_failed');
