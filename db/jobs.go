package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DomainJob is one River job of a domain, as an operator reads it.
type DomainJob struct {
	ID          int64      `json:"id"`
	Kind        string     `json:"kind"`
	Queue       string     `json:"queue"`
	State       string     `json:"state"`
	Generation  int64      `json:"generation"`
	Attempt     int        `json:"attempt"`
	MaxAttempts int        `json:"max_attempts"`
	CreatedAt   time.Time  `json:"created_at"`
	ScheduledAt time.Time  `json:"scheduled_at"`
	FinalizedAt *time.Time `json:"finalized_at,omitempty"`
	// LastError is the newest of the job's recorded errors, "" when none.
	LastError string `json:"last_error,omitempty"`
}

// DomainJobs returns a domain's River jobs, newest first, at most limit.
// It matches args with @>, which River's GIN index on args serves.
func DomainJobs(ctx context.Context, q Querier, domainID string, limit int) ([]DomainJob, error) {
	rows, err := q.Query(ctx, `SELECT id, kind, queue, state::text, coalesce((args->>'generation')::bigint, 0), attempt, max_attempts,
		created_at, scheduled_at, finalized_at, coalesce(errors[array_length(errors, 1)]->>'error', '')
		FROM river_job WHERE args @> jsonb_build_object('domain_id', $1::text)
		ORDER BY id DESC LIMIT $2`, domainID, limit)
	if err != nil {
		return nil, fmt.Errorf("list jobs of domain %s: %w", domainID, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (DomainJob, error) {
		var j DomainJob
		err := row.Scan(&j.ID, &j.Kind, &j.Queue, &j.State, &j.Generation, &j.Attempt, &j.MaxAttempts,
			&j.CreatedAt, &j.ScheduledAt, &j.FinalizedAt, &j.LastError)
		return j, err
	})
}

// DomainAlerts returns a domain's open alerts, newest first.
func DomainAlerts(ctx context.Context, q Querier, domainID string) ([]Alert, error) {
	rows, err := q.Query(ctx, `SELECT `+alertColumns+` FROM portal_domain_alerts
		WHERE domain_id = $1 AND resolved_at IS NULL ORDER BY opened_at DESC, id DESC`, domainID)
	if err != nil {
		return nil, fmt.Errorf("list alerts of domain %s: %w", domainID, err)
	}
	return pgx.CollectRows(rows, scanAlert)
}
