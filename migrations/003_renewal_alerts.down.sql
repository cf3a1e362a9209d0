-- The kinds before renewal was watched (those of 002); alerts of the two renewal kinds
-- cannot be kept under that rule and are removed with it.
DELETE FROM portal_domain_alerts WHERE kind IN ('certificate_renewal_failed', 'certificate_expiring');
ALTER TABLE portal_domain_alerts DROP CONSTRAINT portal_domain_alerts_kind_check;
ALTER TABLE portal_domain_alerts ADD CONSTRAINT portal_domain_alerts_kind_check
    CHECK (kind IN ('certificate_not_ready', 'domain_stuck', 'dns_drift', 'https_failed'));
