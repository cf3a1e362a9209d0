package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// StatusCount is a status's row count and when its oldest row entered it.
type StatusCount struct {
	Status      string
	Count       int
	OldestSince time.Time
}

// CountByStatus counts rows per status for the metrics gauges.
func CountByStatus(ctx context.Context, q Querier) ([]StatusCount, error) {
	rows, err := q.Query(ctx, `SELECT status::text, count(*), min(status_changed_at) FROM portal_domains GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count domains by status: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (StatusCount, error) {
		var c StatusCount
		err := row.Scan(&c.Status, &c.Count, &c.OldestSince)
		return c, err
	})
}

// CountOpenAlerts counts unresolved alerts.
func CountOpenAlerts(ctx context.Context, q Querier) (int, error) {
	var n int
	if err := q.QueryRow(ctx, `SELECT count(*) FROM portal_domain_alerts WHERE resolved_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count open alerts: %w", err)
	}
	return n, nil
}

// CountOpenAlertsByKind counts unresolved alerts per kind.
func CountOpenAlertsByKind(ctx context.Context, q Querier) (map[string]int, error) {
	rows, err := q.Query(ctx, `SELECT kind, count(*) FROM portal_domain_alerts WHERE resolved_at IS NULL GROUP BY kind`)
	if err != nil {
		return nil, fmt.Errorf("count open alerts by kind: %w", err)
	}
	out := map[string]int{}
	var kind string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&kind, &n}, func() error {
		out[kind] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count open alerts by kind: %w", err)
	}
	return out, nil
}
