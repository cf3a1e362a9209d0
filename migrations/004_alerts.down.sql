DROP TABLE IF EXISTS portal_domain_alerts;
