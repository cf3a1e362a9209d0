-- Checks host name syntax with messages a person can act on. The full policy
-- (apex, public suffix) needs the public suffix list and runs in the
-- verify_dns job, which fails the domain with the reason.
CREATE OR REPLACE FUNCTION portal_domains_check_hostname(name text, field text)
 RETURNS void
 LANGUAGE plpgsql
 IMMUTABLE
AS $function$
DECLARE
    label text;
BEGIN
    IF name = '' THEN
        RAISE EXCEPTION 'portal_domains.%: must not be empty', field USING ERRCODE = 'check_violation';
    END IF;
    IF name !~ '^[\x21-\x7e]+$' THEN
        RAISE EXCEPTION 'portal_domains.%: % contains spaces or non-ASCII characters; store internationalised names in punycode (xn--...)', field, quote_literal(name)
            USING ERRCODE = 'check_violation';
    END IF;
    IF length(name) > 253 THEN
        RAISE EXCEPTION 'portal_domains.%: % is % characters long; the limit is 253', field, quote_literal(name), length(name)
            USING ERRCODE = 'check_violation';
    END IF;
    IF left(name, 1) = '*' THEN
        RAISE EXCEPTION 'portal_domains.%: % is a wildcard; enter one host name', field, quote_literal(name) USING ERRCODE = 'check_violation';
    END IF;
    IF name ~ '^[0-9.]+$' OR position(':' IN name) > 0 THEN
        RAISE EXCEPTION 'portal_domains.%: % is an IP address; enter a domain name', field, quote_literal(name) USING ERRCODE = 'check_violation';
    END IF;
    IF position('.' IN name) = 0 THEN
        RAISE EXCEPTION 'portal_domains.%: % is a single label; enter a full domain name such as portal.example.com', field, quote_literal(name)
            USING ERRCODE = 'check_violation';
    END IF;
    FOREACH label IN ARRAY string_to_array(name, '.') LOOP
        IF label = '' THEN
            RAISE EXCEPTION 'portal_domains.%: % has an empty label', field, quote_literal(name) USING ERRCODE = 'check_violation';
        ELSIF length(label) > 63 THEN
            RAISE EXCEPTION 'portal_domains.%: label % is longer than 63 characters', field, quote_literal(label) USING ERRCODE = 'check_violation';
        ELSIF label !~ '^[a-z0-9-]+$' THEN
            RAISE EXCEPTION 'portal_domains.%: label % may contain only letters, digits and hyphens', field, quote_literal(label)
                USING ERRCODE = 'check_violation';
        ELSIF left(label, 1) = '-' OR right(label, 1) = '-' THEN
            RAISE EXCEPTION 'portal_domains.%: label % starts or ends with a hyphen', field, quote_literal(label) USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
END $function$;
