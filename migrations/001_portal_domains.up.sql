-- The tables of portal-domains, as they stand. The functions and triggers
-- are in functions/, re-applied by every migrate up.
--
-- The AlgaPSA-compatible portal_domains table. Written to be a drop-in: on a
-- database that already has AlgaPSA's table and enums this only adds what
-- portal-domains needs, reusing AlgaPSA's indexes and key, and the app's own
-- SQL keeps working unchanged.
-- What this migration creates, so that `down` removes exactly that and
-- never an object AlgaPSA made (its table, types, indexes, key, rows).
CREATE TABLE IF NOT EXISTS portal_domain_created_objects (
    seq serial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('type', 'table', 'column', 'index', 'constraint')),
    name text NOT NULL UNIQUE
);

DO $$
BEGIN
    IF to_regtype('portal_domain_status') IS NULL THEN
        CREATE TYPE portal_domain_status AS ENUM (
            'pending_dns', 'verifying_dns', 'dns_failed', 'pending_certificate',
            'certificate_issuing', 'certificate_failed', 'deploying', 'active', 'disabled');
        INSERT INTO portal_domain_created_objects (kind, name) VALUES ('type', 'portal_domain_status');
    END IF;
    IF to_regtype('portal_domain_verification_method') IS NULL THEN
        CREATE TYPE portal_domain_verification_method AS ENUM ('cname');
        INSERT INTO portal_domain_created_objects (kind, name) VALUES ('type', 'portal_domain_verification_method');
    END IF;
    IF to_regclass('portal_domains') IS NULL THEN
        CREATE TABLE portal_domains (
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
        INSERT INTO portal_domain_created_objects (kind, name) VALUES ('table', 'portal_domains');
    END IF;
END $$;

-- One domain per tenant; domains and canonical hosts unique case-insensitively.
-- An equal unique index that already exists (AlgaPSA's knex names them
-- portal_domains_tenant_unique, _domain_unique_idx, _canonical_unique_idx) is
-- used as it is instead of adding a second one beside it.
DO $$
DECLARE
    wanted record;
BEGIN
    FOR wanted IN SELECT * FROM (VALUES
            ('portal_domains_tenant_key', 'tenant'),
            ('portal_domains_domain_lower_key', 'lower(domain)'),
            ('portal_domains_canonical_host_lower_key', 'lower(canonical_host)')) AS w(name, expr)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_index i
                       WHERE i.indrelid = 'portal_domains'::regclass AND i.indisunique AND i.indpred IS NULL
                         AND pg_get_indexdef(i.indexrelid) LIKE '% USING btree (' || wanted.expr || ')') THEN
            EXECUTE format('CREATE UNIQUE INDEX %I ON portal_domains (%s)', wanted.name, wanted.expr);
            INSERT INTO portal_domain_created_objects (kind, name) VALUES ('index', wanted.name);
        END IF;
    END LOOP;
END $$;

-- What portal-domains adds. pipeline_generation numbers each start of the
-- pipeline: jobs carry it, and a job from an older generation does nothing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM portal_domain_created_objects WHERE kind = 'table') THEN
        INSERT INTO portal_domain_created_objects (kind, name)
        VALUES ('column', 'pipeline_generation'), ('column', 'status_changed_at'), ('index', 'portal_domains_working_idx');
    END IF;
END $$;
ALTER TABLE portal_domains
    ADD COLUMN pipeline_generation bigint NOT NULL DEFAULT 1,
    ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();

-- The stuck-domain scan reads only non-terminal rows, oldest first.
CREATE INDEX portal_domains_working_idx ON portal_domains (status_changed_at)
    WHERE status NOT IN ('active', 'disabled', 'dns_failed', 'certificate_failed');

-- Backstops for writers that bypass the trigger's friendlier messages.
-- NOT VALID: rows already in an AlgaPSA database are not rechecked. Postgres
-- still checks every UPDATE of such a row, so a legacy row with a bad name
-- may be written when it is failed or disabled (verify_dns failing it with
-- the reason, the tenant removing it), and never re-enters the pipeline.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'portal_domains_domain_is_hostname'
                   AND conrelid = 'portal_domains'::regclass) THEN
        ALTER TABLE portal_domains ADD CONSTRAINT portal_domains_domain_is_hostname
            CHECK (status IN ('dns_failed', 'disabled')
                   OR (length(domain) <= 253 AND domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$')) NOT VALID;
        INSERT INTO portal_domain_created_objects (kind, name) VALUES ('constraint', 'portal_domains_domain_is_hostname');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'portal_domains_generation_positive'
                   AND conrelid = 'portal_domains'::regclass) THEN
        ALTER TABLE portal_domains ADD CONSTRAINT portal_domains_generation_positive
            CHECK (pipeline_generation > 0);
        INSERT INTO portal_domain_created_objects (kind, name) VALUES ('constraint', 'portal_domains_generation_positive');
    END IF;
END $$;

-- AlgaPSA references tenants(tenant); here the key is added only where that
-- table exists and no key to it is there already (knex names AlgaPSA's
-- portal_domains_tenant_foreign), so the worker also runs in a database of
-- its own.
DO $$
BEGIN
    IF to_regclass('tenants') IS NOT NULL
       AND EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'tenants' AND column_name = 'tenant')
       AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f'
                       AND conrelid = 'portal_domains'::regclass AND confrelid = to_regclass('tenants')) THEN
        ALTER TABLE portal_domains ADD CONSTRAINT portal_domains_tenant_fkey
            FOREIGN KEY (tenant) REFERENCES tenants (tenant) ON DELETE CASCADE;
        INSERT INTO portal_domain_created_objects (kind, name) VALUES ('constraint', 'portal_domains_tenant_fkey');
    END IF;
END $$;

-- Every status or message change of a domain, written by the trigger in the
-- transaction that made it. No foreign key: history outlives a deleted row.
CREATE TABLE portal_domain_events (
    id bigserial PRIMARY KEY,
    domain_id uuid NOT NULL,
    tenant uuid NOT NULL,
    generation bigint NOT NULL,
    from_status portal_domain_status,
    to_status portal_domain_status NOT NULL,
    message text,
    details jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX portal_domain_events_domain_idx ON portal_domain_events (domain_id, id);

-- Copies of domain.Transitions and domain.Stages, written by `migrate up`
-- from the Go tables so that the trigger enforces exactly the same rules.
CREATE TABLE portal_domain_transitions (
    from_status portal_domain_status NOT NULL,
    to_status portal_domain_status NOT NULL,
    message text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);

-- A stage may hold its job back after its status is entered
-- (first_run_delay: await_certificate is woken by the Certificate watch), and
-- its jobs carry a River priority (apply jobs run after the await_certificate
-- and disable jobs waiting on the same queue, so a bulk import of applies
-- does not hold back domains whose certificate is Ready).
CREATE TABLE portal_domain_stage_jobs (
    status portal_domain_status PRIMARY KEY,
    kind text NOT NULL,
    queue text NOT NULL,
    max_attempts smallint NOT NULL CHECK (max_attempts > 0),
    first_run_delay interval NOT NULL DEFAULT '0' CHECK (first_run_delay >= interval '0'),
    priority smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 1 AND 4)
);

-- Settings the SQL side needs (the canonical suffix), written by the worker.
CREATE TABLE portal_domain_settings (
    key text PRIMARY KEY,
    value text NOT NULL
);
-- It also holds this installation's identity (key installation_id), made
-- once by `migrate up` (db.InstallationID).

-- Stuck-certificate and stuck-domain alerts: one row per incident, opened by
-- the scan job and resolved when the certificate recovers or the domain is
-- disabled. At most one open alert per (domain, kind).
CREATE TABLE portal_domain_alerts (
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
CREATE UNIQUE INDEX portal_domain_alerts_one_open
    ON portal_domain_alerts (domain_id, kind) WHERE resolved_at IS NULL;
CREATE INDEX portal_domain_alerts_opened_idx ON portal_domain_alerts (opened_at DESC);

-- A tenant's canonical host is claimed in its own table: a concurrent tenant
-- with the same first 7 hex digits waits on the claim's key, sees it taken,
-- and picks a longer prefix (an advisory lock per tenant would be held to the
-- end of the transaction, and one INSERT of thousands of tenants would run
-- out of the shared lock table). Claims outlive their domain, so a deleted
-- tenant's host is not handed to another.
CREATE TABLE portal_domain_canonical_hosts (
    canonical_host text PRIMARY KEY CHECK (canonical_host = lower(canonical_host)),
    tenant uuid NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO portal_domain_canonical_hosts (canonical_host, tenant)
SELECT lower(canonical_host), tenant FROM portal_domains
ON CONFLICT (canonical_host) DO NOTHING;
