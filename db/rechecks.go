package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portal-domains/portal-domains/domain"
)

// Recheck is one portal_domain_rechecks row: the live re-check of an active
// domain in one pipeline generation.
type Recheck struct {
	DomainID       string     `json:"-"`
	Generation     int64      `json:"generation"`
	NextCheckAt    time.Time  `json:"next_check_at"`
	LastCheckedAt  *time.Time `json:"last_checked_at,omitempty"`
	LastOutcome    string     `json:"last_outcome,omitempty"`
	ProblemKind    string     `json:"problem_kind,omitempty"`
	ProblemSince   *time.Time `json:"problem_since,omitempty"`
	ServedNotAfter *time.Time `json:"served_not_after,omitempty"`
	Checks         int64      `json:"checks"`
	// OpenAlerts are the re-check's unresolved alerts of the domain (ids
	// and kinds), at most one per kind.
	OpenAlerts []RecheckAlert `json:"open_alerts,omitempty"`
}

// RecheckAlert is an open alert of the re-check's kinds.
type RecheckAlert struct {
	ID   int64  `json:"id"`
	Kind string `json:"kind"`
}

const recheckColumns = `r.domain_id::text, r.generation, r.next_check_at, r.last_checked_at, coalesce(r.last_outcome, ''),
	coalesce(r.problem_kind, ''), r.problem_since, r.served_not_after, r.checks,
	coalesce((SELECT jsonb_agg(jsonb_build_object('id', a.id, 'kind', a.kind) ORDER BY a.id) FROM portal_domain_alerts a
		WHERE a.domain_id = r.domain_id AND a.resolved_at IS NULL AND a.kind IN ('dns_drift', 'https_failed')), '[]')`

func scanRecheck(row pgx.CollectableRow) (Recheck, error) {
	var r Recheck
	var alerts []byte
	err := row.Scan(&r.DomainID, &r.Generation, &r.NextCheckAt, &r.LastCheckedAt, &r.LastOutcome, &r.ProblemKind,
		&r.ProblemSince, &r.ServedNotAfter, &r.Checks, &alerts)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(alerts, &r.OpenAlerts); err != nil {
		return r, fmt.Errorf("read open alerts of %s: %w", r.DomainID, err)
	}
	return r, nil
}

// GetRecheck reads a domain's re-check row with its open alerts; ErrNotFound
// when the domain has none.
func GetRecheck(ctx context.Context, q Querier, domainID string) (Recheck, error) {
	rows, err := q.Query(ctx, `SELECT `+recheckColumns+` FROM portal_domain_rechecks r WHERE r.domain_id = $1`, domainID)
	if err != nil {
		return Recheck{}, fmt.Errorf("read re-check of %s: %w", domainID, err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanRecheck)
	if errors.Is(err, pgx.ErrNoRows) {
		return Recheck{}, ErrNotFound
	}
	if err != nil {
		return Recheck{}, fmt.Errorf("read re-check of %s: %w", domainID, err)
	}
	return r, nil
}

// RechecksByID reads the re-check rows of the given domains; domains without
// one are absent.
func RechecksByID(ctx context.Context, q Querier, ids []string) (map[string]Recheck, error) {
	out := make(map[string]Recheck, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT `+recheckColumns+` FROM portal_domain_rechecks r WHERE r.domain_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("read re-checks: %w", err)
	}
	all, err := pgx.CollectRows(rows, scanRecheck)
	if err != nil {
		return nil, fmt.Errorf("read re-checks: %w", err)
	}
	for _, r := range all {
		out[r.DomainID] = r
	}
	return out, nil
}

// UnscheduledActiveSQL finds active domains the re-check has not seen in
// their current generation ($1: at most this many).
const UnscheduledActiveSQL = `SELECT d.id::text, d.pipeline_generation FROM portal_domains d
	WHERE d.status = 'active'
	  AND NOT EXISTS (SELECT 1 FROM portal_domain_rechecks r WHERE r.domain_id = d.id AND r.generation = d.pipeline_generation)
	LIMIT $1`

// NewRecheck is the first check of a domain the re-check has not seen.
type NewRecheck struct {
	DomainID   string
	Generation int64
}

// UnscheduledActive returns up to limit active domains without a re-check
// row for their current generation.
func UnscheduledActive(ctx context.Context, q Querier, limit int) ([]NewRecheck, error) {
	rows, err := q.Query(ctx, UnscheduledActiveSQL, limit)
	if err != nil {
		return nil, fmt.Errorf("find active domains without a re-check: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (NewRecheck, error) {
		var n NewRecheck
		return n, row.Scan(&n.DomainID, &n.Generation)
	})
}

// AddRechecks gives each domain its first check at the matching time. A row
// left from an earlier generation starts over: its problem and expiry were
// about a pipeline run that has been replaced.
func AddRechecks(ctx context.Context, q Querier, domains []NewRecheck, at []time.Time) error {
	if len(domains) != len(at) {
		return fmt.Errorf("add re-checks: %d domains but %d times", len(domains), len(at))
	}
	ids := make([]string, len(domains))
	gens := make([]int64, len(domains))
	for i, d := range domains {
		ids[i], gens[i] = d.DomainID, d.Generation
	}
	_, err := q.Exec(ctx, `INSERT INTO portal_domain_rechecks (domain_id, generation, next_check_at)
		SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[])
		ON CONFLICT (domain_id) DO UPDATE SET generation = excluded.generation, next_check_at = excluded.next_check_at,
			last_checked_at = NULL, last_outcome = NULL, problem_kind = NULL, problem_since = NULL,
			served_not_after = NULL, checks = 0, created_at = now()
		WHERE portal_domain_rechecks.generation <> excluded.generation`, ids, gens, at)
	if err != nil {
		return fmt.Errorf("add %d re-checks: %w", len(domains), err)
	}
	return nil
}

// DueRechecksSQL locks up to $1 due re-check rows, earliest first, through
// portal_domain_rechecks_due_idx (an index range scan, however many domains
// there are), and says of each whether its domain is still active in that
// generation (one primary-key lookup per row: the LATERAL ... LIMIT 1 keeps
// the planner from hashing the whole of portal_domains for a small batch). Rows another transaction holds are skipped, so two schedulers
// never claim the same check.
const DueRechecksSQL = `WITH due AS (
		SELECT domain_id, generation, next_check_at FROM portal_domain_rechecks
		WHERE next_check_at <= now()
		ORDER BY next_check_at
		LIMIT $1
		FOR UPDATE SKIP LOCKED)
	SELECT due.domain_id::text, due.generation, due.next_check_at,
		coalesce(d.status = 'active' AND d.pipeline_generation = due.generation, false)
	FROM due LEFT JOIN LATERAL (SELECT status, pipeline_generation FROM portal_domains WHERE id = due.domain_id LIMIT 1) d ON true
	ORDER BY due.next_check_at`

// DueRecheck is a check whose time has come.
type DueRecheck struct {
	DomainID   string
	Generation int64
	Due        time.Time
	// Live: the domain is still active in Generation. A row that is not
	// (the domain was disabled, restarted or deleted) is dropped.
	Live bool
}

// ClaimDueRechecks locks up to limit due rows for the caller's transaction,
// which must move or drop each before it commits.
func ClaimDueRechecks(ctx context.Context, tx pgx.Tx, limit int) ([]DueRecheck, error) {
	rows, err := tx.Query(ctx, DueRechecksSQL, limit)
	if err != nil {
		return nil, fmt.Errorf("claim due re-checks: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (DueRecheck, error) {
		var d DueRecheck
		return d, row.Scan(&d.DomainID, &d.Generation, &d.Due, &d.Live)
	})
}

// MoveRechecks sets the next check of each domain.
func MoveRechecks(ctx context.Context, q Querier, ids []string, next []time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `UPDATE portal_domain_rechecks r SET next_check_at = u.next
		FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, next) WHERE r.domain_id = u.id`, ids, next)
	if err != nil {
		return fmt.Errorf("move %d re-checks: %w", len(ids), err)
	}
	return nil
}

// DropRechecks deletes the re-check rows of domains no longer active.
func DropRechecks(ctx context.Context, q Querier, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := q.Exec(ctx, `DELETE FROM portal_domain_rechecks WHERE domain_id = ANY($1::uuid[])`, ids); err != nil {
		return fmt.Errorf("drop %d re-checks: %w", len(ids), err)
	}
	return nil
}

// RecheckResult is what one check found, to be recorded.
type RecheckResult struct {
	DomainID   string
	Generation int64
	Outcome    string
	// ProblemKind and ProblemSince are the current incident (both empty
	// when there is none).
	ProblemKind  string
	ProblemSince *time.Time
	// ServedNotAfter, when set, is the expiry of the certificate HTTPS
	// served; nil keeps the one recorded.
	ServedNotAfter *time.Time
	// CheckBy, when set, brings the next check forward to it (a problem is
	// looked at again sooner than the regular interval).
	CheckBy *time.Time
	// Message, when set, becomes the domain's status_message and Details
	// its verification_details' "live_check", written only while the row
	// is active in Generation; otherwise the row is left alone.
	Message string
	Details map[string]any
}

// RecordRecheck writes a check's result in the caller's transaction. With a
// message, the domain row is updated only while it is active in the check's
// generation (the trigger records the new message in the history; updating
// an active row restarts nothing). ErrStale when the domain is no longer
// active in that generation (a disable or refresh got there first) or its
// re-check row is gone: the caller rolls back, so nothing is written.
func RecordRecheck(ctx context.Context, tx pgx.Tx, r RecheckResult) error {
	tag, err := tx.Exec(ctx, `UPDATE portal_domain_rechecks SET last_checked_at = now(), last_outcome = $3,
			problem_kind = nullif($4, ''), problem_since = $5, served_not_after = coalesce($6, served_not_after),
			checks = checks + 1,
			next_check_at = CASE WHEN $7::timestamptz IS NULL THEN next_check_at ELSE least(next_check_at, $7) END
		WHERE domain_id = $1 AND generation = $2`,
		r.DomainID, r.Generation, r.Outcome, r.ProblemKind, r.ProblemSince, r.ServedNotAfter, r.CheckBy)
	if err != nil {
		return fmt.Errorf("record re-check of %s: %w", r.DomainID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s has no re-check row for generation %d", ErrStale, r.DomainID, r.Generation)
	}
	if r.Message == "" {
		return nil
	}
	details, err := json.Marshal(r.Details)
	if err != nil {
		return fmt.Errorf("encode live check details: %w", err)
	}
	tag, err = tx.Exec(ctx, `UPDATE portal_domains SET status_message = $3, last_checked_at = now(),
			verification_details = coalesce(verification_details, '{}'::jsonb) || jsonb_build_object('live_check', $4::jsonb)
		WHERE id = $1 AND status = 'active' AND pipeline_generation = $2`,
		r.DomainID, r.Generation, domain.TruncateMessage(r.Message), details)
	if err != nil {
		return fmt.Errorf("record live check of %s: %w", r.DomainID, classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s is no longer active at generation %d", ErrStale, r.DomainID, r.Generation)
	}
	return nil
}

// RecheckStats are the re-check's scrape-time gauges.
type RecheckStats struct {
	// Problems counts active domains with a current problem, by kind.
	Problems map[string]int
	// OldestDue is the earliest next check (zero without rows): far in
	// the past means the scheduler is not running or cannot keep up.
	OldestDue time.Time
	// ExpiringSoon counts active domains whose served certificate expires
	// before ExpiringBefore.
	ExpiringSoon int
	// EarliestNotAfter is the soonest expiry served by an active domain
	// (zero when none was recorded).
	EarliestNotAfter time.Time
}

// RecheckStatsSQL reads the gauges through the re-check table's indexes.
const RecheckStatsSQL = `SELECT
	(SELECT count(*) FILTER (WHERE r.problem_kind = 'dns_drift') FROM portal_domain_rechecks r JOIN portal_domains d
		ON d.id = r.domain_id AND d.status = 'active' AND d.pipeline_generation = r.generation WHERE r.problem_kind IS NOT NULL),
	(SELECT count(*) FILTER (WHERE r.problem_kind = 'https_failed') FROM portal_domain_rechecks r JOIN portal_domains d
		ON d.id = r.domain_id AND d.status = 'active' AND d.pipeline_generation = r.generation WHERE r.problem_kind IS NOT NULL),
	(SELECT min(next_check_at) FROM portal_domain_rechecks),
	(SELECT count(*) FROM portal_domain_rechecks r JOIN portal_domains d
		ON d.id = r.domain_id AND d.status = 'active' AND d.pipeline_generation = r.generation
		WHERE r.served_not_after IS NOT NULL AND r.served_not_after < $1),
	(SELECT r.served_not_after FROM portal_domain_rechecks r JOIN portal_domains d
		ON d.id = r.domain_id AND d.status = 'active' AND d.pipeline_generation = r.generation
		WHERE r.served_not_after IS NOT NULL ORDER BY r.served_not_after LIMIT 1)`

// ReadRecheckStats reads the gauges; expiringBefore bounds ExpiringSoon.
func ReadRecheckStats(ctx context.Context, q Querier, expiringBefore time.Time) (RecheckStats, error) {
	var drift, https, expiring int
	var oldest, earliest *time.Time
	if err := q.QueryRow(ctx, RecheckStatsSQL, expiringBefore).Scan(&drift, &https, &oldest, &expiring, &earliest); err != nil {
		return RecheckStats{}, fmt.Errorf("read re-check stats: %w", err)
	}
	s := RecheckStats{Problems: map[string]int{AlertDNSDrift: drift, AlertHTTPSFailed: https}, ExpiringSoon: expiring}
	if oldest != nil {
		s.OldestDue = *oldest
	}
	if earliest != nil {
		s.EarliestNotAfter = *earliest
	}
	return s, nil
}
