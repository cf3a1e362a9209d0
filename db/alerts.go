package db

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portal-domains/portal-domains/domain"
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

// Alert kinds (portal_domain_alerts.kind).
const (
	AlertCertificateNotReady = "certificate_not_ready"
	AlertDomainStuck         = "domain_stuck"
	// The re-check of active domains: their DNS stopped leading here, or
	// HTTPS stopped serving a certificate that covers them.
	AlertDNSDrift    = "dns_drift"
	AlertHTTPSFailed = "https_failed"
	// Renewal of an active domain's certificate failing, or its expiry near.
	AlertCertificateRenewalFailed = "certificate_renewal_failed"
	AlertCertificateExpiring      = "certificate_expiring"
)

// NewAlert is an alert the stuck scan wants open. Tenant and host are read
// from the domain row when the alert is inserted, not trusted from the
// caller.
type NewAlert struct {
	DomainID               string
	Kind                   string
	Reason                 string
	Message                string
	FailedIssuanceAttempts int
	LastFailureTime        *time.Time
	NotReadySince          *time.Time
	Details                map[string]any
	// WhileStatus and WhileSince, when set, open the alert only if the row
	// is still in that status since that instant: a scan acting on a read
	// that is a few seconds old never alerts about a domain that moved on.
	WhileStatus string
	WhileSince  *time.Time
}

// OpenAlert opens an alert unless one of the same kind is already open for
// the domain, and only while the row exists and is not disabled. The partial
// unique index (domain_id, kind) WHERE resolved_at IS NULL makes this
// idempotent across scans that race: exactly one INSERT wins, and opened
// tells the caller whether it was this one (and so whether to notify).
func OpenAlert(ctx context.Context, q Querier, a NewAlert) (alert Alert, opened bool, err error) {
	details := a.Details
	if details == nil {
		details = map[string]any{}
	}
	detailsJSON, err := json.Marshal(details)
	if err != nil {
		return Alert{}, false, fmt.Errorf("encode alert details: %w", err)
	}
	rows, err := q.Query(ctx, `INSERT INTO portal_domain_alerts (domain_id, tenant, kind, domain, reason, message,
			failed_issuance_attempts, last_failure_time, not_ready_since, details)
		SELECT d.id, d.tenant, $2::text, d.domain, $3::text, $4::text, $5::int, $6::timestamptz, $7::timestamptz, $8::jsonb
		FROM portal_domains d
		WHERE d.id = $1 AND d.status <> 'disabled'
		  AND ($9::text = '' OR d.status::text = $9::text)
		  AND ($10::timestamptz IS NULL OR d.status_changed_at = $10)
		ON CONFLICT (domain_id, kind) WHERE resolved_at IS NULL DO NOTHING
		RETURNING `+alertColumns,
		a.DomainID, a.Kind, a.Reason, a.Message, a.FailedIssuanceAttempts, a.LastFailureTime, a.NotReadySince,
		detailsJSON, a.WhileStatus, a.WhileSince)
	if err != nil {
		return Alert{}, false, fmt.Errorf("open %s alert for %s: %w", a.Kind, a.DomainID, err)
	}
	inserted, err := pgx.CollectRows(rows, scanAlert)
	if err != nil {
		return Alert{}, false, fmt.Errorf("open %s alert for %s: %w", a.Kind, a.DomainID, classify(err))
	}
	if len(inserted) == 0 {
		return Alert{}, false, nil
	}
	return inserted[0], true, nil
}

// ResolveAlert closes an open alert with a resolution saying why. resolved
// is false when it was resolved already (another scan got there first), so
// only one caller notifies.
func ResolveAlert(ctx context.Context, q Querier, id int64, resolution string) (alert Alert, resolved bool, err error) {
	rows, err := q.Query(ctx, `UPDATE portal_domain_alerts SET resolved_at = now(), resolution = $2
		WHERE id = $1 AND resolved_at IS NULL RETURNING `+alertColumns, id, resolution)
	if err != nil {
		return Alert{}, false, fmt.Errorf("resolve alert %d: %w", id, err)
	}
	updated, err := pgx.CollectRows(rows, scanAlert)
	if err != nil {
		return Alert{}, false, fmt.Errorf("resolve alert %d: %w", id, err)
	}
	if len(updated) == 0 {
		return Alert{}, false, nil
	}
	return updated[0], true, nil
}

// OpenAlerts returns every unresolved alert. The set is small (at most one
// per domain and kind) and is read through the partial unique index, however
// many resolved alerts history holds.
func OpenAlerts(ctx context.Context, q Querier) ([]Alert, error) {
	rows, err := q.Query(ctx, openAlertsSQL)
	if err != nil {
		return nil, fmt.Errorf("list open alerts: %w", err)
	}
	return pgx.CollectRows(rows, scanAlert)
}

const openAlertsSQL = `SELECT ` + alertColumns + ` FROM portal_domain_alerts WHERE resolved_at IS NULL`

// stuckDomainsSQL reads the non-terminal rows whose status is older than its
// status's cutoff. The NOT IN list repeats portal_domains_working_idx's
// predicate word for word so the planner can use that partial index, and
// $1 (the latest cutoff) bounds the index range; the per-status cutoffs
// ($2 statuses, $3 cutoffs) then filter within it. Statuses without a cutoff
// are never returned.
const stuckDomainsSQL = `SELECT ` + recordColumns + ` FROM portal_domains
	WHERE status NOT IN ('active', 'disabled', 'dns_failed', 'certificate_failed')
	  AND status_changed_at < $1
	  AND status_changed_at < ($3::timestamptz[])[array_position($2::text[], status::text)]
	ORDER BY status_changed_at
	LIMIT $4`

// stuckDomainsArgs turns per-status cutoffs into stuckDomainsSQL's arguments.
func stuckDomainsArgs(cutoffs map[domain.Status]time.Time, limit int) []any {
	var latest time.Time
	statuses := make([]string, 0, len(cutoffs))
	times := make([]time.Time, 0, len(cutoffs))
	for s, c := range cutoffs {
		statuses = append(statuses, string(s))
		times = append(times, c)
		if c.After(latest) {
			latest = c
		}
	}
	if limit <= 0 {
		limit = 1000
	}
	return []any{latest, statuses, times, limit}
}

// StuckDomains returns up to limit rows in a non-terminal status that they
// entered before that status's cutoff, oldest first. It reads only
// portal_domains_working_idx, so it stays cheap however many domains are
// active.
func StuckDomains(ctx context.Context, q Querier, cutoffs map[domain.Status]time.Time, limit int) ([]domain.Record, error) {
	if len(cutoffs) == 0 {
		return nil, nil
	}
	return queryRecords(ctx, q, "list stuck domains", stuckDomainsSQL, stuckDomainsArgs(cutoffs, limit)...)
}

// DomainsByID reads the rows with the given ids (by primary key); ids with
// no row are simply absent, which is how the scan learns a row is gone.
func DomainsByID(ctx context.Context, q Querier, ids []string) (map[string]domain.Record, error) {
	out := make(map[string]domain.Record, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, err := domain.ParseDomainID(id); err == nil {
			valid = append(valid, id)
		}
	}
	recs, err := queryRecords(ctx, q, "read domains by id", `SELECT `+recordColumns+` FROM portal_domains WHERE id = ANY($1::uuid[])`, valid)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		out[r.ID] = r
	}
	return out, nil
}
