-- Every status or message change of a domain, written by the trigger in the
-- transaction that made it. No foreign key: history outlives a deleted row.
CREATE TABLE IF NOT EXISTS portal_domain_events (
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
CREATE INDEX IF NOT EXISTS portal_domain_events_domain_idx ON portal_domain_events (domain_id, id);

-- Copies of domain.Transitions and domain.Stages, written by `migrate up`
-- from the Go tables so that the trigger enforces exactly the same rules.
CREATE TABLE IF NOT EXISTS portal_domain_transitions (
    from_status portal_domain_status NOT NULL,
    to_status portal_domain_status NOT NULL,
    message text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);

CREATE TABLE IF NOT EXISTS portal_domain_stage_jobs (
    status portal_domain_status PRIMARY KEY,
    kind text NOT NULL,
    queue text NOT NULL,
    max_attempts smallint NOT NULL CHECK (max_attempts > 0)
);

-- Settings the SQL side needs (the canonical suffix), written by the worker.
CREATE TABLE IF NOT EXISTS portal_domain_settings (
    key text PRIMARY KEY,
    value text NOT NULL
);
