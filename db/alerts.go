package db

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Alert is one portal_domain_alerts row.
type Alert struct {
	ID                     int64           `json:"id"`
	DomainID               string          `json:"domain_id"`
	Tenant                 string          `json:"tenant"`
	Kind                   string          `json:"kind"`
	Domain                 string          `json:"domain"`
	Reason                 string          `json:"reason"`
	Message                string          `json:"message"`
	FailedIssuanceAttempts int             `json:"failed_issuance_attempts"`
	LastFailureTime        *time.Time      `json:"last_failure_time,omitempty"`
	NotReadySince          *time.Time      `json:"not_ready_since,omitempty"`
	Details                json.RawMessage `json:"details"`
	OpenedAt               time.Time       `json:"opened_at"`
	ResolvedAt             *time.Time      `json:"resolved_at,omitempty"`
	Resolution             string          `json:"resolution,omitempty"`
}

const alertColumns = `id, domain_id::text, tenant::text, kind, domain, reason, message, failed_issuance_attempts,
	last_failure_time, not_ready_since, details, opened_at, resolved_at, coalesce(resolution, '')`

func scanAlert(row pgx.CollectableRow) (Alert, error) {
	var a Alert
	err := row.Scan(&a.ID, &a.DomainID, &a.Tenant, &a.Kind, &a.Domain, &a.Reason, &a.Message, &a.FailedIssuanceAttempts,
		&a.LastFailureTime, &a.NotReadySince, &a.Details, &a.OpenedAt, &a.ResolvedAt, &a.Resolution)
	return a, err
}

// ListAlerts returns open alerts (and resolved ones with all), newest first.
func ListAlerts(ctx context.Context, q Querier, all bool) ([]Alert, error) {
	rows, err := q.Query(ctx, `SELECT `+alertColumns+` FROM portal_domain_alerts
		WHERE $1 OR resolved_at IS NULL ORDER BY opened_at DESC, id DESC LIMIT 1000`, all)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	return pgx.CollectRows(rows, scanAlert)
}
