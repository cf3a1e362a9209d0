-- The AlgaPSA-compatible portal_domains table. Written to be a drop-in: on a
-- database that already has AlgaPSA's table and enums this only adds what
-- portal-domains needs, and the app's own SQL keeps working unchanged.
DO $$
BEGIN
    IF to_regtype('portal_domain_status') IS NULL THEN
        CREATE TYPE portal_domain_status AS ENUM (
            'pending_dns', 'verifying_dns', 'dns_failed', 'pending_certificate',
            'certificate_issuing', 'certificate_failed', 'deploying', 'active', 'disabled');
    END IF;
    IF to_regtype('portal_domain_verification_method') IS NULL THEN
        CREATE TYPE portal_domain_verification_method AS ENUM ('cname');
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS portal_domains (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL,
    domain text NOT NULL,
    canonical_host text NOT NULL,
    status portal_domain_status NOT NULL DEFAULT 'pending_dns',
    status_message text,
    last_checked_at timestamptz,
    verification_method portal_domain_verification_method NOT NULL DEFAULT 'cname',
    verification_details jsonb NOT NULL DEFAULT '{}',
    certificate_secret_name text,
    last_synced_resource_version text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One domain per tenant; domains and canonical hosts unique case-insensitively.
CREATE UNIQUE INDEX IF NOT EXISTS portal_domains_tenant_key ON portal_domains (tenant);
CREATE UNIQUE INDEX IF NOT EXISTS portal_domains_domain_lower_key ON portal_domains (lower(domain));
CREATE UNIQUE INDEX IF NOT EXISTS portal_domains_canonical_host_lower_key ON portal_domains (lower(canonical_host));

-- What portal-domains adds. pipeline_generation numbers each start of the
-- pipeline: jobs carry it, and a job from an older generation does nothing.
ALTER TABLE portal_domains
    ADD COLUMN IF NOT EXISTS pipeline_generation bigint NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS status_changed_at timestamptz NOT NULL DEFAULT now();

-- The stuck-domain scan reads only non-terminal rows, oldest first.
CREATE INDEX IF NOT EXISTS portal_domains_working_idx ON portal_domains (status_changed_at)
    WHERE status NOT IN ('active', 'disabled', 'dns_failed', 'certificate_failed');

-- Backstops for writers that bypass the trigger's friendlier messages.
-- NOT VALID: rows already in an AlgaPSA database are not rechecked.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'portal_domains_domain_is_hostname'
                   AND conrelid = 'portal_domains'::regclass) THEN
        ALTER TABLE portal_domains ADD CONSTRAINT portal_domains_domain_is_hostname
            CHECK (length(domain) <= 253 AND domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$') NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'portal_domains_generation_positive'
                   AND conrelid = 'portal_domains'::regclass) THEN
        ALTER TABLE portal_domains ADD CONSTRAINT portal_domains_generation_positive
            CHECK (pipeline_generation > 0);
    END IF;
END $$;

-- AlgaPSA references tenants(tenant); here the key is added only where that
-- table exists, so the worker also runs in a database of its own.
DO $$
BEGIN
    IF to_regclass('tenants') IS NOT NULL
       AND EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'tenants' AND column_name = 'tenant')
       AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'portal_domains_tenant_fkey'
                       AND conrelid = 'portal_domains'::regclass) THEN
        ALTER TABLE portal_domains ADD CONSTRAINT portal_domains_tenant_fkey
            FOREIGN KEY (tenant) REFERENCES tenants (tenant) ON DELETE CASCADE;
    END IF;
END $$;
