-- Stuck-certificate and stuck-domain alerts: one row per incident, opened by
-- the scan job and resolved when the certificate recovers or the domain is
-- disabled. At most one open alert per (domain, kind).
CREATE TABLE IF NOT EXISTS portal_domain_alerts (
    id bigserial PRIMARY KEY,
    domain_id uuid NOT NULL,
    tenant uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('certificate_not_ready', 'domain_stuck')),
    domain text NOT NULL,
    reason text NOT NULL DEFAULT '',
    message text NOT NULL DEFAULT '',
    failed_issuance_attempts int NOT NULL DEFAULT 0,
    last_failure_time timestamptz,
    not_ready_since timestamptz,
    details jsonb NOT NULL DEFAULT '{}',
    opened_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolution text
);
CREATE UNIQUE INDEX IF NOT EXISTS portal_domain_alerts_one_open
    ON portal_domain_alerts (domain_id, kind) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS portal_domain_alerts_opened_idx ON portal_domain_alerts (opened_at DESC);
