-- Inserts the git_record job of each manifest change when the record is on
-- (portal_domain_settings 'git_record'): 'apply' when a row's objects were
-- applied (pending_certificate → certificate_issuing), 'remove' when the
-- disable job removed them (disabled, certificate_secret_name cleared). As
-- River's InsertTx would for unique-by-args jobs: compact JSON args with
-- sorted keys, the unique key over kind and args, so one change is one job
-- however often the statement is repeated. Queue 'git', worked one job at a
-- time; its own retries never hold the pipeline.
CREATE OR REPLACE FUNCTION portal_domains_enqueue_git_records(domain_ids uuid[], changes text[], generations bigint[])
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    enqueued integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM portal_domain_settings WHERE key = 'git_record' AND value = 'true') THEN
        RETURN 0;
    END IF;
    WITH due AS (
        SELECT '{"change":' || to_json(r.change)::text
               || ',"domain":' || to_json(d.domain)::text
               || ',"domain_id":"' || r.domain_id::text
               || '","generation":' || r.generation::text
               || ',"slug":' || to_json(split_part(d.canonical_host, '.', 1))::text
               || ',"tenant":"' || d.tenant::text || '"}' AS args,
               array_remove(ARRAY[
                   CASE WHEN length(d.domain) <= 248 THEN 'domain_' || replace(d.domain, '.', '_') END,
                   'tenant_' || d.tenant::text], NULL)::varchar(255)[] AS tags
        FROM unnest(domain_ids, changes, generations) AS r(domain_id, change, generation)
        JOIN portal_domains d ON d.id = r.domain_id
    ), inserted AS (
        INSERT INTO river_job (args, kind, max_attempts, priority, queue, state, tags, unique_key, unique_states)
        SELECT args::jsonb, 'git_record', 100, 1, 'git', 'available', tags,
               sha256(convert_to('&kind=git_record&args=' || args, 'UTF8')), B'11110101'
        FROM due
        ON CONFLICT (unique_key)
            WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL AND river_job_state_in_bitmask(unique_states, state)
            DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO enqueued FROM inserted;
    IF enqueued > 0 THEN
        PERFORM pg_notify(current_schema() || '.river_insert', '{"queue":"git"}');
    END IF;
    RETURN enqueued;
END $function$;
