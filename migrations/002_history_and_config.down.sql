DROP TABLE IF EXISTS portal_domain_settings;
DROP TABLE IF EXISTS portal_domain_stage_jobs;
DROP TABLE IF EXISTS portal_domain_transitions;
DROP TABLE IF EXISTS portal_domain_events;
