-- Row-level, before every INSERT and UPDATE: normalises and checks what the
-- writer set (names, the canonical host claim, the status move against
-- portal_domain_transitions, the generation bump when the pipeline restarts),
-- so every writer (the SaaS app in plain SQL, the Go API, a worker) meets the
-- same rules with the same messages.
--
-- enable_seqscan is off inside it: PL/pgSQL keeps one plan per query for the
-- whole statement, and when that plan was made while the table looked empty
-- (freshly analyzed, or a bulk import into a new table) it is a sequential
-- scan, so a multi-row INSERT would rescan the table for every row it adds.
-- Every lookup here has an index.
CREATE OR REPLACE FUNCTION portal_domains_before_write()
 RETURNS trigger
 LANGUAGE plpgsql
 SET enable_seqscan = off
AS $function$
DECLARE
    tenant_hex text;
    suffix text;
    prefix text;
    prefix_len int;
    candidate text;
    restart boolean := false;
    writer_host text;
    appliance boolean;
    default_message text;
BEGIN
    IF NEW.tenant IS NULL THEN
        RAISE EXCEPTION 'portal_domains.tenant must not be null' USING ERRCODE = 'not_null_violation';
    END IF;
    IF NEW.domain IS NULL THEN
        RAISE EXCEPTION 'portal_domains.domain must not be null' USING ERRCODE = 'not_null_violation';
    END IF;
    NEW.domain := portal_domains_normalize_hostname(NEW.domain);
    IF TG_OP = 'INSERT' OR NEW.domain IS DISTINCT FROM OLD.domain THEN
        PERFORM portal_domains_check_hostname(NEW.domain, 'domain');
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.domain <> OLD.domain)
       AND EXISTS (SELECT 1 FROM portal_domains WHERE lower(domain) = NEW.domain AND tenant <> NEW.tenant) THEN
        RAISE EXCEPTION 'portal_domains.domain % is already registered by another tenant', quote_literal(NEW.domain)
            USING ERRCODE = 'unique_violation';
    END IF;

    -- Canonical host: the tenant's first 7 hex digits under the suffix, or a
    -- longer prefix when another tenant already has those 7 characters.
    IF TG_OP = 'INSERT' OR NEW.tenant IS DISTINCT FROM OLD.tenant
       OR NEW.canonical_host IS DISTINCT FROM OLD.canonical_host THEN
        tenant_hex := replace(NEW.tenant::text, '-', '');
        writer_host := NEW.canonical_host;
        IF NEW.canonical_host IS NULL OR btrim(NEW.canonical_host) = '' THEN
            SELECT value INTO suffix FROM portal_domain_settings WHERE key = 'canonical_suffix';
            suffix := coalesce(suffix, 'portal.algapsa.com');
            prefix_len := 7;
        ELSE
            NEW.canonical_host := portal_domains_normalize_hostname(NEW.canonical_host);
            writer_host := NEW.canonical_host;
            PERFORM portal_domains_check_hostname(NEW.canonical_host, 'canonical_host');
            prefix := split_part(NEW.canonical_host, '.', 1);
            suffix := substr(NEW.canonical_host, length(prefix) + 2);
            IF length(prefix) < 7 OR left(tenant_hex, length(prefix)) <> prefix THEN
                RAISE EXCEPTION 'portal_domains.canonical_host % must start with at least the first 7 hex digits of tenant % (%)',
                    quote_literal(NEW.canonical_host), NEW.tenant, left(tenant_hex, 7) || '.' || suffix
                    USING ERRCODE = 'check_violation';
            END IF;
            prefix_len := length(prefix);
        END IF;
        -- Claiming the host in portal_domain_canonical_hosts makes a
        -- concurrent tenant with the same prefix wait for this transaction
        -- (its claim of the same key blocks), then move on to a longer one.
        LOOP
            candidate := left(tenant_hex, prefix_len) || '.' || suffix;
            INSERT INTO portal_domain_canonical_hosts (canonical_host, tenant) VALUES (candidate, NEW.tenant)
                ON CONFLICT (canonical_host) DO NOTHING;
            EXIT WHEN (FOUND OR EXISTS (SELECT 1 FROM portal_domain_canonical_hosts
                                        WHERE canonical_host = candidate AND tenant = NEW.tenant))
                  AND NOT EXISTS (SELECT 1 FROM portal_domains
                                  WHERE lower(canonical_host) = candidate AND tenant <> NEW.tenant);
            prefix_len := prefix_len + 1;
            IF prefix_len > 32 THEN
                RAISE EXCEPTION 'portal_domains.canonical_host: no free prefix for tenant %', NEW.tenant USING ERRCODE = 'unique_violation';
            END IF;
        END LOOP;
        NEW.canonical_host := candidate;
        -- The CNAME target the worker checks and the tenant is told is the
        -- host chosen here. A writer that computed the 7-character host
        -- itself (AlgaPSA does, and says so in its message) is corrected
        -- where a longer prefix was needed.
        NEW.verification_details := coalesce(NEW.verification_details, '{}'::jsonb)
            || jsonb_build_object('expected_cname', candidate);
        IF writer_host IS DISTINCT FROM candidate AND writer_host IS NOT NULL AND NEW.status_message IS NOT NULL THEN
            NEW.status_message := replace(NEW.status_message, writer_host, candidate);
        END IF;
    END IF;

    -- AlgaPSA's appliance edition provisions nothing: it inserts rows active
    -- and deletes them to disable. In appliance mode its statuses stand as
    -- written and no pipeline runs (portal_domains_enqueue_stages enqueues
    -- nothing).
    SELECT value = 'true' INTO appliance FROM portal_domain_settings WHERE key = 'appliance';
    IF coalesce(appliance, false) THEN
        IF TG_OP = 'UPDATE' THEN
            IF NEW.status IS DISTINCT FROM OLD.status THEN
                NEW.status_changed_at := now();
            END IF;
            NEW.updated_at := now();
        END IF;
        NEW.verification_details := coalesce(NEW.verification_details, '{}'::jsonb);
        NEW.status_message := left(NEW.status_message, 1024);
        RETURN NEW;
    END IF;

    IF TG_OP = 'INSERT' THEN
        IF NEW.status NOT IN ('pending_dns', 'disabled') THEN
            RAISE EXCEPTION 'portal_domains: a new domain starts in pending_dns (or disabled), not %; AlgaPSA''s appliance edition, which inserts active rows and runs no pipeline, needs PORTAL_DOMAIN_APPLIANCE=true', NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.pipeline_generation := 1;
        restart := true;
    ELSE
        IF NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'portal_domains.id cannot change' USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.pipeline_generation < OLD.pipeline_generation THEN
            RAISE EXCEPTION 'portal_domains.pipeline_generation cannot go back (% to %)', OLD.pipeline_generation, NEW.pipeline_generation
                USING ERRCODE = 'check_violation';
        END IF;
        -- A new domain starts over, whatever the writer set the status to
        -- (unless it is disabling the row at the same time).
        IF NEW.domain <> OLD.domain AND NEW.status <> 'disabled' THEN
            NEW.status := 'pending_dns';
            NEW.certificate_secret_name := OLD.certificate_secret_name;
        END IF;
        -- Asking again for a DNS check of the same domain while one is
        -- already running (the app re-running its upsert) changes nothing.
        IF NEW.domain = OLD.domain AND NEW.status = 'pending_dns' AND OLD.status = 'verifying_dns'
           AND NEW.pipeline_generation = OLD.pipeline_generation THEN
            NEW.status := OLD.status;
            NEW.status_message := OLD.status_message;
            NEW.verification_details := OLD.verification_details;
        END IF;
        IF NEW.status IS DISTINCT FROM OLD.status THEN
            SELECT message INTO default_message FROM portal_domain_transitions
            WHERE from_status = OLD.status AND to_status = NEW.status;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'portal_domains: status cannot move from % to % (domain %, %)', OLD.status, NEW.status, OLD.id, OLD.domain
                    USING ERRCODE = 'check_violation',
                          HINT = 'allowed moves are listed in portal_domain_transitions';
            END IF;
            NEW.status_changed_at := now();
            IF NEW.status_message IS NOT DISTINCT FROM OLD.status_message THEN
                NEW.status_message := default_message;
            END IF;
        END IF;
        -- Starting over: a new domain, pending_dns (retry or the app's upsert),
        -- disabled, or a certificate retry from anywhere but DNS success
        -- (which verify_dns now writes from pending_dns too, when the first
        -- check passes).
        restart := NEW.domain <> OLD.domain
            OR (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('pending_dns', 'disabled'))
            OR (NEW.status IS DISTINCT FROM OLD.status AND NEW.status = 'pending_certificate'
                AND OLD.status NOT IN ('pending_dns', 'verifying_dns'));
        -- The DNS deadline survives writers that replace verification_details.
        IF NOT restart AND OLD.verification_details ? 'dns_check_started_at'
           AND NOT (coalesce(NEW.verification_details, '{}'::jsonb) ? 'dns_check_started_at') THEN
            NEW.verification_details := coalesce(NEW.verification_details, '{}'::jsonb)
                || jsonb_build_object('dns_check_started_at', OLD.verification_details -> 'dns_check_started_at');
        END IF;
        IF restart AND NEW.pipeline_generation = OLD.pipeline_generation THEN
            NEW.pipeline_generation := OLD.pipeline_generation + 1;
        END IF;
        NEW.updated_at := now();
    END IF;

    IF NEW.verification_details IS NULL THEN
        NEW.verification_details := '{}'::jsonb;
    END IF;
    -- A writer that replaces verification_details keeps the CNAME target.
    IF NOT (NEW.verification_details ? 'expected_cname') THEN
        NEW.verification_details := NEW.verification_details || jsonb_build_object('expected_cname',
            CASE WHEN TG_OP = 'UPDATE' AND OLD.verification_details ? 'expected_cname'
                 THEN OLD.verification_details -> 'expected_cname' ELSE to_jsonb(NEW.canonical_host) END);
    END IF;

    IF restart AND NEW.status = 'pending_dns' THEN
        -- The DNS deadline counts from here; retry and a new domain reset it.
        NEW.verification_details := coalesce(NEW.verification_details, '{}'::jsonb)
            - 'observation' || jsonb_build_object('dns_check_started_at', now());
        IF NEW.status_message IS NULL THEN
            NEW.status_message := format('Waiting for the DNS check: point a CNAME record for %s to %s.',
                NEW.domain, NEW.verification_details ->> 'expected_cname');
        END IF;
    END IF;

    NEW.status_message := left(NEW.status_message, 1024);
    RETURN NEW;
END $function$;
