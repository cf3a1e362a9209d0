package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/portal-domains/portal-domains/domain"
)

// MissingStageJobsSQL examines one window of rows in a working status ($1
// rows at most, in (status_changed_at, id) order after the cursor $2, $3)
// and enqueues the stage job of each whose current generation has no live
// job, through the same set-based function as the trigger, so the job is the
// one the trigger would have made. Live means what River's unique key counts
// (any state but cancelled and discarded). The window is one range of
// portal_domains_working_idx and each job one probe of River's unique-key
// index, so a run costs the window, not the table: at 100,000 working rows
// (a bulk import) one query would otherwise hash every row's unique key.
// OFFSET 0 keeps the probe per examined row: pulled up into an anti-join,
// the planner may hash all of river_job's unique keys instead.
//
// Disabled rows are left out: the orphan sweep removes what a lost disable
// job would have, and a completed disable job that River has pruned would
// otherwise be enqueued again on every run.
const MissingStageJobsSQL = `WITH examined AS (
	SELECT d.id, d.status, d.pipeline_generation, d.status_changed_at
	FROM portal_domains d
	WHERE d.status NOT IN ('active', 'disabled', 'dns_failed', 'certificate_failed')
	  AND (d.status_changed_at, d.id) > ($2::timestamptz, $3::uuid)
	ORDER BY d.status_changed_at, d.id
	LIMIT $1),
missing AS (
	SELECT e.id, e.status, e.pipeline_generation
	FROM examined e
	JOIN portal_domain_stage_jobs s ON s.status = e.status
	WHERE NOT EXISTS (
		SELECT 1 FROM river_job j
		WHERE j.unique_key = sha256(convert_to('&kind=' || s.kind || '&args={"domain_id":"' || e.id::text
		                                       || '","generation":' || e.pipeline_generation::text || '}', 'UTF8'))
		  AND j.unique_key IS NOT NULL AND j.unique_states IS NOT NULL
		  AND river_job_state_in_bitmask(j.unique_states, j.state)
		OFFSET 0)),
last AS (
	SELECT status_changed_at, id FROM examined ORDER BY status_changed_at DESC, id DESC LIMIT 1)
SELECT (SELECT coalesce(portal_domains_enqueue_stages(array_agg(id), array_agg(status), array_agg(pipeline_generation)), 0)
        FROM missing),
       (SELECT count(*) FROM examined),
       (SELECT status_changed_at FROM last),
       (SELECT id::text FROM last)`

// MissingStageJobsArgs are MissingStageJobsSQL's parameters for one window.
func MissingStageJobsArgs(after domain.ReconcileCursor, window int) []any {
	if after.IsZero() { // before every row: -infinity and the nil UUID
		return []any{window, pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true},
			"00000000-0000-0000-0000-000000000000"}
	}
	return []any{window, pgtype.Timestamptz{Time: after.StatusChangedAt, Valid: true}, after.ID}
}

// EnqueueMissingStageJobs is the level-triggered side of the one enqueue
// path: rows whose job was never made (an adopted AlgaPSA table, a Temporal
// cutover, a trigger that is disabled or not allowed) or was lost get it.
// It examines at most window working rows after the cursor, oldest status
// first, and returns how many jobs it enqueued and the cursor to pass next:
// zero when this window reached the last working row, so the next call
// starts the pass over.
func EnqueueMissingStageJobs(ctx context.Context, q Querier, after domain.ReconcileCursor, window int) (int, domain.ReconcileCursor, error) {
	if window < 1 {
		return 0, domain.ReconcileCursor{}, fmt.Errorf("enqueue missing stage jobs: window %d, want at least 1", window)
	}
	var (
		enqueued, examined int
		lastAt             pgtype.Timestamptz
		lastID             pgtype.Text
	)
	if err := q.QueryRow(ctx, MissingStageJobsSQL, MissingStageJobsArgs(after, window)...).Scan(&enqueued, &examined, &lastAt, &lastID); err != nil {
		return 0, domain.ReconcileCursor{}, fmt.Errorf("enqueue missing stage jobs: %w", err)
	}
	if examined < window || !lastID.Valid {
		return enqueued, domain.ReconcileCursor{}, nil
	}
	return enqueued, domain.ReconcileCursor{StatusChangedAt: lastAt.Time, ID: lastID.String}, nil
}
