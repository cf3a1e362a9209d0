DROP TABLE IF EXISTS portal_domains;
DROP TYPE IF EXISTS portal_domain_verification_method;
DROP TYPE IF EXISTS portal_domain_status;
