-- Renewal of active domains' certificates is watched: the stuck scan opens
-- certificate_renewal_failed (cert-manager's last issuance failed) and
-- certificate_expiring (the certificate expires within
-- PORTAL_DOMAIN_EXPIRY_WARN) alerts beside the existing kinds.
ALTER TABLE portal_domain_alerts DROP CONSTRAINT portal_domain_alerts_kind_check;
ALTER TABLE portal_domain_alerts ADD CONSTRAINT portal_domain_alerts_kind_check
    CHECK (kind IN ('certificate_not_ready', 'domain_stuck', 'dns_drift', 'https_failed',
                    'certificate_renewal_failed', 'certificate_expiring'));
