-- The alerts of the re-check's kinds were all made by it.
DELETE FROM portal_domain_alerts WHERE kind IN ('dns_drift', 'https_failed');
ALTER TABLE portal_domain_alerts DROP CONSTRAINT portal_domain_alerts_kind_check;
ALTER TABLE portal_domain_alerts ADD CONSTRAINT portal_domain_alerts_kind_check
    CHECK (kind IN ('certificate_not_ready', 'domain_stuck'));
DROP TABLE portal_domain_rechecks;
