-- The least a portal-domains worker's role needs, granted by the schema's
-- owner after `portal-domains migrate up` (which must run as the owner):
--
--   psql -v schema=public -v worker_role=portal_domains_worker -f deploy/postgres/worker-grants.sql
--
-- The worker moves domains and deletes disabled rows (the triggers write the
-- history, canonical-host claims and next jobs with their owner's rights),
-- stores its settings, opens and resolves alerts, keeps the re-check schedule
-- of active domains, records the objects it healed in the history, and runs
-- River: fetching,
-- completing and rescuing jobs, electing a leader, pausing queues.
GRANT USAGE ON SCHEMA :"schema" TO :"worker_role";
GRANT SELECT, UPDATE, DELETE ON :"schema".portal_domains TO :"worker_role";
GRANT SELECT ON :"schema".portal_domain_events, :"schema".portal_domain_transitions,
    :"schema".portal_domain_stage_jobs TO :"worker_role";
-- The heal job records, in the history, what it changed back.
GRANT INSERT ON :"schema".portal_domain_events TO :"worker_role";
GRANT USAGE ON SEQUENCE :"schema".portal_domain_events_id_seq TO :"worker_role";
GRANT SELECT, INSERT, UPDATE ON :"schema".portal_domain_settings, :"schema".portal_domain_alerts TO :"worker_role";
GRANT USAGE ON SEQUENCE :"schema".portal_domain_alerts_id_seq TO :"worker_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".portal_domain_rechecks TO :"worker_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".river_job, :"schema".river_leader, :"schema".river_queue,
    :"schema".river_notification TO :"worker_role";
GRANT SELECT ON :"schema".river_migration TO :"worker_role";
GRANT USAGE ON SEQUENCE :"schema".river_job_id_seq, :"schema".river_notification_id_seq TO :"worker_role";
