-- Lower case, no surrounding blanks, no trailing dot: the form every name is
-- stored and compared in.
CREATE OR REPLACE FUNCTION portal_domains_normalize_hostname(name text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT regexp_replace(lower(btrim(name)), '\.$', '')
$function$;
