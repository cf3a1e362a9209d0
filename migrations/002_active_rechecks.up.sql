-- Live re-verification of active domains. One row per active domain (and
-- pipeline generation) that the re-check has seen: when it is next due, what
-- the last check found, since when a problem has lasted, and the expiry of
-- the certificate HTTPS served. AlgaPSA's portal_domains gets no column; the
-- state lives here. No foreign key, as for the history: AlgaPSA may drop and
-- recreate its table, and rows of domains that are gone or no longer active
-- are removed by the scheduler when they come due.
CREATE TABLE portal_domain_rechecks (
    domain_id uuid PRIMARY KEY,
    generation bigint NOT NULL,
    next_check_at timestamptz NOT NULL,
    last_checked_at timestamptz,
    last_outcome text,
    problem_kind text CHECK (problem_kind IN ('dns_drift', 'https_failed')),
    problem_since timestamptz,
    served_not_after timestamptz,
    checks bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((problem_kind IS NULL) = (problem_since IS NULL))
);
-- "Which checks are due" is a range scan of this index, however many
-- domains there are.
CREATE INDEX portal_domain_rechecks_due_idx ON portal_domain_rechecks (next_check_at);
-- The metrics count current problems and soon-expiring certificates at
-- scrape time through these.
CREATE INDEX portal_domain_rechecks_problem_idx ON portal_domain_rechecks (problem_kind, problem_since)
    WHERE problem_kind IS NOT NULL;
CREATE INDEX portal_domain_rechecks_not_after_idx ON portal_domain_rechecks (served_not_after)
    WHERE served_not_after IS NOT NULL;

-- A problem the re-check found and that outlasted its grace period is an
-- alert like the stuck scan's.
ALTER TABLE portal_domain_alerts DROP CONSTRAINT portal_domain_alerts_kind_check;
ALTER TABLE portal_domain_alerts ADD CONSTRAINT portal_domain_alerts_kind_check
    CHECK (kind IN ('certificate_not_ready', 'domain_stuck', 'dns_drift', 'https_failed'));
