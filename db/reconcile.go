package db

import (
	"context"
	"fmt"
)

// MissingStageJobsSQL enqueues the stage job of every row in a working
// status whose current generation has no live job ($1 rows at most, oldest
// status first), through the same set-based function as the trigger, so the
// job is the one the trigger would have made. Live means what River's unique
// key counts (any state but cancelled and discarded). The working rows come
// from portal_domains_working_idx and each job from River's unique-key index,
// so a run costs one index probe per working row, not a scan of the table.
//
// Disabled rows are left out: the orphan sweep removes what a lost disable
// job would have, and a completed disable job that River has pruned would
// otherwise be enqueued again on every run.
const MissingStageJobsSQL = `WITH missing AS (
	SELECT d.id, d.status, d.pipeline_generation
	FROM portal_domains d
	JOIN portal_domain_stage_jobs s ON s.status = d.status
	WHERE d.status NOT IN ('active', 'disabled', 'dns_failed', 'certificate_failed')
	  AND NOT EXISTS (
		SELECT 1 FROM river_job j
		WHERE j.unique_key = sha256(convert_to('&kind=' || s.kind || '&args={"domain_id":"' || d.id::text
		                                       || '","generation":' || d.pipeline_generation::text || '}', 'UTF8'))
		  AND j.unique_key IS NOT NULL AND j.unique_states IS NOT NULL
		  AND river_job_state_in_bitmask(j.unique_states, j.state))
	ORDER BY d.status_changed_at
	LIMIT $1)
SELECT coalesce(portal_domains_enqueue_stages(array_agg(id), array_agg(status), array_agg(pipeline_generation)), 0)
FROM missing`

// EnqueueMissingStageJobs is the level-triggered side of the one enqueue
// path: rows whose job was never made (an adopted AlgaPSA table, a Temporal
// cutover, a trigger that is disabled or not allowed) or was lost get it now.
// It returns how many jobs it enqueued.
func EnqueueMissingStageJobs(ctx context.Context, q Querier, limit int) (int, error) {
	var n int
	if err := q.QueryRow(ctx, MissingStageJobsSQL, limit).Scan(&n); err != nil {
		return 0, fmt.Errorf("enqueue missing stage jobs: %w", err)
	}
	return n, nil
}
